"""Fluency: seeded top-k sampling and weighted n-gram entropy (docs/equations.md "Metrics"; ROME/EasyEdit's measure).

Generation: the prompt is continued until the sequence holds `max_tokens` tokens IN TOTAL, prompt included (100 by
default, capped at the model's context; a prompt already that long gets no new token), by top-k sampling (k = 5)
without an end-of-text stop. Each case draws from its own torch.Generator seeded by `case_seed(seed, case_id)`, and
a draw is made by inverse CDF over the top-k probabilities, so a text depends only on (model, prompt, seed, case id),
never on which other cases ran or in what order. One row at a time, with the model's key/value cache when it
returns one (a model without a cache re-reads the whole sequence each step).

Entropy: the decoded text (prompt + continuation, special tokens dropped) is split into word tokens (runs of word
characters, or single punctuation marks: close to nltk's word_tokenize on plain text); for n in (2, 3),
H_n = -sum_g p_g log2 p_g over the relative frequencies of its n-grams (0 when there are none), and
fluency = (2/3 * H_2 + 4/3 * H_3) / 2 bits. EasyEdit prints this value x 100.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import torch

from goldenlayers.datasets.split import hash_unit
from goldenlayers.models.kv_cache import cache_kwargs, output_cache
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length

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


@torch.no_grad()
def sample_text(model, tok, prompt: str, seed: int, max_tokens: int = 100, top_k: int = 5) -> str:
    """Continue `prompt` by seeded top-k sampling to `max_tokens` tokens in total; return the decoded full text."""
    ids = list(tok(prompt)["input_ids"])
    ctx = model_max_length(model)
    limit = min(max_tokens, ctx) if ctx else max_tokens
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    step_input = torch.tensor([ids], device=device)
    past = None
    while len(ids) < limit:
        kwargs = cache_kwargs(model, past)
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=device)  # (1, T so far): no padding, one row
        out = model(input_ids=step_input, attention_mask=mask, use_cache=True, **kwargs)
        logits = out.logits[0, -1].float().cpu()  # (V,)
        top = logits.topk(min(top_k, logits.numel()))
        cdf = torch.softmax(top.values, -1).cumsum(-1)
        u = torch.rand((), generator=gen, dtype=torch.float64).item() * float(cdf[-1])
        pick = min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=cdf.dtype), right=True)), len(cdf) - 1)
        ids.append(int(top.indices[pick]))
        past = output_cache(out)
        step_input = torch.tensor([[ids[-1]]] if past is not None else [ids], device=device)
    return tok.decode(ids, skip_special_tokens=True)


def fluency(model, tok, prompt: str, case_id: str, seed: int = 0, max_tokens: int = 100, top_k: int = 5) -> float:
    """Fluency of one case: weighted n-gram entropy (bits) of its seeded sample."""
    return fluency_entropy(sample_text(model, tok, prompt, case_seed(seed, case_id), max_tokens, top_k))
