"""Fluency: seeded top-k sampling and weighted n-gram entropy (docs/equations.md "Metrics"; ROME/EasyEdit's measure).

Generation: the prompt is continued until the sequence holds `max_tokens` tokens IN TOTAL, prompt included (100 by
default, capped at the model's context; a prompt already that long gets no new token), by top-k sampling (k = 5)
without an end-of-text stop. Each case draws from its own torch.Generator seeded by `case_seed(seed, case_id)`, and
a draw is made by inverse CDF over the top-k probabilities, so a text depends only on (model, prompt, seed, case id),
never on which other cases ran or in what order. `sample_texts` generates many rows together (left padding, each
row's positions counted from its first real token, one generator per row; a padded row agrees with its text alone
except at near-ties of float rounding), with the model's key/value cache when it returns one (a model without a
cache re-reads the whole sequence each step).

Entropy: the decoded text (prompt + continuation, special tokens dropped) is split into word tokens (runs of word
characters, or single punctuation marks: close to nltk's word_tokenize on plain text); for n in (2, 3),
H_n = -sum_g p_g log2 p_g over the relative frequencies of its n-grams (0 when there are none), and
fluency = (2/3 * H_2 + 4/3 * H_3) / 2 bits. EasyEdit prints this value x 100.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from goldenlayers.datasets.split import hash_unit
from goldenlayers.models.kv_cache import cache_kwargs, output_cache
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length, pad_id

NGRAM_ORDERS = (2, 3)
NGRAM_WEIGHTS = (2 / 3, 4 / 3)
_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def ngram_entropy(words: list[str], n: int) -> float:
    """Entropy in bits of the n-gram frequency distribution of `words` (0.0 when there are fewer than n words)."""
    grams = Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0


def fluency_entropy(text: str, orders: tuple[int, ...] = NGRAM_ORDERS,
                    weights: tuple[float, ...] = NGRAM_WEIGHTS) -> float:
    """Weighted n-gram entropy of `text` in bits: mean over orders of weight_n * H_n ((2/3 H2 + 4/3 H3) / 2)."""
    words = word_tokens(text)
    return sum(w * ngram_entropy(words, n) for n, w in zip(orders, weights)) / len(orders)


def case_seed(seed: int, case_id: str) -> int:
    """The generator seed of one case's fluency sample (a hash of the run seed and the case id)."""
    return int(hash_unit("fluency", seed, case_id) * 2**62)


@functools.cache
def _takes_positions(forward) -> bool:
    try:
        return "position_ids" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _pick(logits: torch.Tensor, top_k: int, gen: torch.Generator) -> int:
    """One seeded top-k draw by inverse CDF from a (V,) float row of logits."""
    top = logits.topk(min(top_k, logits.numel()))
    cdf = torch.softmax(top.values, -1).cumsum(-1)
    u = torch.rand((), generator=gen, dtype=torch.float64).item() * float(cdf[-1])
    pick = min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=cdf.dtype), right=True)), len(cdf) - 1)
    return int(top.indices[pick])


@torch.no_grad()
def _sample_rows(model, tok, prompts: Sequence[str], seeds: Sequence[int], max_tokens: int, top_k: int,
                 positioned: bool) -> list[str]:
    """Continue several prompts together: left-padded rows with explicit positions (when the model's forward takes
    them: `positioned`; else a single row) and one generator each."""
    ids = [list(tok(p)["input_ids"]) for p in prompts]
    ctx = model_max_length(model)
    limit = min(max_tokens, ctx) if ctx else max_tokens
    device = model_device(model)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    width = max(len(r) for r in ids)
    pad = pad_id(tok)
    tokens = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for b, r in enumerate(ids):
        tokens[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, width - len(r):] = 1
    tokens, mask = tokens.to(device), mask.to(device)
    # each row counts positions from its first real token; a finished row's filler positions stop at the limit
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_input, past = tokens, None
    for _ in range(limit - min(len(r) for r in ids)):
        kwargs = cache_kwargs(model, past)
        if positioned:
            kwargs["position_ids"] = positions[:, -step_input.shape[1]:]
        out = model(input_ids=step_input, attention_mask=mask, use_cache=True, **kwargs)
        logits = out.logits[:, -1].float().cpu()  # (B, V)
        new = []
        for b, row in enumerate(ids):
            if len(row) < limit:
                row.append(_pick(logits[b], top_k, gens[b]))
            new.append(row[-1])  # a finished row repeats its last token; nothing reads it back
        new_col = torch.tensor(new, dtype=torch.long, device=device)[:, None]
        tokens, mask = torch.cat([tokens, new_col], 1), torch.cat([mask, torch.ones_like(new_col)], 1)
        positions = torch.cat([positions, (positions[:, -1:] + 1).clamp(max=limit - 1)], 1)
        past = output_cache(out)
        step_input = new_col if past is not None else tokens
    return [tok.decode(r, skip_special_tokens=True) for r in ids]


def sample_texts(model, tok, prompts: Sequence[str], seeds: Sequence[int], max_tokens: int = 100, top_k: int = 5, *,
                 batch_size: int = 16, context: Callable | None = None) -> list[str]:
    """`sample_text` of each (prompt, seed), `batch_size` rows per generation. context(start, stop), if given, is a
    context manager in force while rows start..stop-1 are generated (per-row edits, goldenlayers.editing.row_edits).
    A model whose forward takes no position ids generates one row at a time."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    positioned = _takes_positions(type(model).forward)
    size = batch_size if positioned else 1
    out: list[str] = []
    for start in range(0, len(prompts), size):
        stop = min(start + size, len(prompts))
        with context(start, stop) if context is not None else nullcontext():
            out += _sample_rows(model, tok, prompts[start:stop], seeds[start:stop], max_tokens, top_k, positioned)
    return out


def sample_text(model, tok, prompt: str, seed: int, max_tokens: int = 100, top_k: int = 5) -> str:
    """Continue `prompt` by seeded top-k sampling to `max_tokens` tokens in total; return the decoded full text."""
    return sample_texts(model, tok, [prompt], [seed], max_tokens, top_k)[0]


def fluency(model, tok, prompt: str, case_id: str, seed: int = 0, max_tokens: int = 100, top_k: int = 5) -> float:
    """Fluency of one case: weighted n-gram entropy (bits) of its seeded sample."""
    return fluency_entropy(sample_text(model, tok, prompt, case_seed(seed, case_id), max_tokens, top_k))
