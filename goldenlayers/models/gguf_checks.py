"""Checks of a GGUF conversion against the GGUF file itself, with the corrections of known deviations
(docs/models.md, "GGUF conversion checks").

transformers' GGUF support differs between the versions we accept, so after it has dequantised a file and built
its tokenizer, `check_conversion` compares what it made with what the file says, read with the `gguf` package:
- weights: every tensor a row of WEIGHT_RELATIONS names must equal the file's tensor minus the offset the
  architecture stores (Gemma's RMSNorm multiplies by 1 + w and llama.cpp stores 1 + w; everyone else stores the
  weight itself). A difference that is one constant for the whole tensor (an offset applied twice or not at all)
  is corrected to the file's value; any other difference is an error naming the tensor.
- tokenizer (as it loads back from the saved copy): the bos/eos/unk/pad tokens must be the ids the file names, a
  BOS must be added exactly when the file says so, and the vocabulary's own common words (tokens spelling a space
  and three or more letters, written one after the other) must encode as those tokens. Special tokens and the
  BOS flag are set from the file; a tokenizer that splits the words is rebuilt from the file where
  TOKENIZER_REBUILDERS has a builder for its vocabulary type and architecture (Gemma: SentencePiece BPE whose
  merges follow the file's token order), else it is an error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The version of these checks: part of the cache key of a converted GGUF (goldenlayers.models.gguf), so a copy
# converted before a check existed is converted again.
CONVERSION_VERSION = 2

# GGUF architecture -> ((pattern of the transformers parameter name, offset the file adds), ...).
_STORED_AS_IS = ((r"norm\.weight$", 0.0),)
_GEMMA_NORMS = ((r"norm\.weight$", 1.0),)
WEIGHT_RELATIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "gemma": _GEMMA_NORMS,
    "gemma2": _GEMMA_NORMS,
    "gemma3": _GEMMA_NORMS,
}
PROBE_WORDS = 64  # vocabulary words checked to encode as their own tokens
_CONTROL, _USER_DEFINED = 3, 4  # GGUF token types


class GGUFConversionError(ValueError):
    """transformers converted a GGUF file in a way the checks cannot correct; the message names what."""


@dataclass
class GGUFFacts:
    """What the checks need from the GGUF file: its architecture, layer count, tokenizer metadata and a reader
    for its tensors."""

    path: Path
    architecture: str
    blocks: int
    tokenizer_type: str | None
    tokens: list[str]
    token_types: list[int]
    special_ids: dict[str, int]  # bos_token / eos_token / unk_token / pad_token -> id, those the file names
    add_bos: bool
    reader: object = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> GGUFFacts:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        value = lambda key, default=None: _field(reader, key, default)  # noqa: E731
        tokenizer_type = value("tokenizer.ggml.model")
        arch = value("general.architecture")
        names = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
                 "pad_token": "padding_token_id"}
        special = {name: int(v) for name, key in names.items()
                   if (v := value(f"tokenizer.ggml.{key}")) is not None}
        # llama.cpp adds a BOS to a SentencePiece vocabulary unless the file says otherwise
        add_bos = bool(value("tokenizer.ggml.add_bos_token", tokenizer_type == "llama"))
        return cls(Path(path), arch, int(value(f"{arch}.block_count", 0)), tokenizer_type,
                   value("tokenizer.ggml.tokens", []), [int(t) for t in value("tokenizer.ggml.token_type", [])],
                   special, add_bos, reader)

    def tensor(self, name: str):
        """The file's tensor `name` as float32 numpy values (dequantised), None when the file has none."""
        import numpy as np
        from gguf.quants import dequantize

        for t in self.reader.tensors:
            if t.name == name:
                return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        return None


def gguf_block_count(path: str | Path) -> int | None:
    """The number of transformer blocks a GGUF file's metadata records (`<architecture>.block_count`), read
    without its tensors or vocabulary; None when it records none."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    n = _field(reader, f"{arch}.block_count") if arch else None
    return int(n) if n else None


def _field(reader, key: str, default=None):
    """A metadata value of the GGUF file: a number, bool, string, or a list of them."""
    from gguf import GGUFValueType

    f = reader.fields.get(key)
    if f is None:
        return default
    kind = f.types[-1]

    def one(i):
        part = f.parts[i]
        return bytes(part).decode("utf-8", errors="replace") if kind == GGUFValueType.STRING else part[0].item()

    if f.types[0] == GGUFValueType.ARRAY:
        return [one(i) for i in f.data]
    return one(f.data[0])


@dataclass
class ConversionReport:
    """What the checks corrected (one line each), for source.json."""

    corrected: list[str] = field(default_factory=list)


def check_conversion(path: str | Path, model, tok, folder: Path, transformers_version: str = "?") -> list[str]:
    """Check `model` and `tok` (as transformers built them from the GGUF file `path`) against the file and save
    the tokenizer to `folder`: the weights are corrected in place, the tokenizer is checked as it loads back from
    `folder` (what every later load gets) and saved again when corrected. Returns what was corrected, one line
    each; raises GGUFConversionError for a deviation that cannot be corrected."""
    from transformers import AutoTokenizer

    facts = GGUFFacts.read(path)
    report = ConversionReport()
    check_weights(facts, model, report, transformers_version)
    tok.save_pretrained(folder)
    before = len(report.corrected)
    tok = check_tokenizer(facts, AutoTokenizer.from_pretrained(folder), report, transformers_version)
    if len(report.corrected) > before:
        tok.save_pretrained(folder)
        again = ConversionReport()
        check_tokenizer(facts, AutoTokenizer.from_pretrained(folder), again, transformers_version)
        if again.corrected:
            raise GGUFConversionError(f"{facts.path.name}: the corrected tokenizer does not load back as saved "
                                      f"({'; '.join(again.corrected)})")
    return report.corrected


def check_weights(facts: GGUFFacts, model, report: ConversionReport, transformers_version: str = "?") -> None:
    import gguf
    import numpy as np
    import torch

    relations = WEIGHT_RELATIONS.get(facts.architecture, _STORED_AS_IS)
    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == facts.architecture), None)
    if arch is None:
        raise GGUFConversionError(f"{facts.path.name}: the gguf package does not know the architecture "
                                  f"{facts.architecture!r}, so its conversion cannot be checked")
    names = gguf.get_tensor_name_map(arch, facts.blocks)
    for key, param in model.named_parameters():
        offset = next((off for pattern, off in relations if re.search(pattern, key)), None)
        if offset is None:
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        stored = facts.tensor(name) if name is not None else None
        if stored is None or stored.size != param.numel():
            raise GGUFConversionError(f"{facts.path.name}: {key} has no tensor of {param.numel()} values in the "
                                      f"file to check it against (looked for {name})")
        expected = torch.from_numpy(stored.reshape(tuple(param.shape)) - np.float32(offset))
        got = param.detach().to(torch.float32).cpu()
        if torch.equal(got, expected):
            continue
        diff = got - expected
        shift = diff.flatten()[0].item()
        if not torch.all(diff == shift):
            raise GGUFConversionError(
                f"{facts.path.name}: transformers {transformers_version} converted {key} (GGUF {name}) to values "
                f"that differ from the file's value - {offset:g} by up to {diff.abs().max().item():.4g}, not by "
                "one constant; this conversion cannot be corrected")
        with torch.no_grad():
            param.copy_(expected.to(param.dtype))
        report.corrected.append(f"{key}: was GGUF {name} - {offset:g} {shift:+g}, set to GGUF - {offset:g}")


def check_tokenizer(facts: GGUFFacts, tok, report: ConversionReport, transformers_version: str = "?"):
    """The tokenizer, corrected where it deviates from the file (see the module docstring)."""
    if not facts.tokens:
        return tok
    split = _split_words(facts, tok)
    if split:
        rebuild = TOKENIZER_REBUILDERS.get((facts.tokenizer_type, facts.architecture))
        if rebuild is None:
            raise GGUFConversionError(
                f"{facts.path.name}: transformers {transformers_version} built a tokenizer that splits the "
                f"vocabulary's own words ({_examples(split)}) and there is no rebuild for a "
                f"{facts.tokenizer_type!r} vocabulary of {facts.architecture!r}; try another transformers version")
        tok = rebuild(facts)
        report.corrected.append(f"tokenizer: split {len(split)} of the vocabulary's words into pieces "
                                f"({_examples(split)}), rebuilt from the file's vocabulary")
        if still := _split_words(facts, tok):
            raise GGUFConversionError(f"{facts.path.name}: the rebuilt tokenizer still splits the vocabulary's "
                                      f"words ({_examples(still)})")
    for name, i in facts.special_ids.items():
        if 0 <= i < len(facts.tokens) and getattr(tok, f"{name}_id", None) != i:
            was = getattr(tok, name, None)
            setattr(tok, name, facts.tokens[i])
            report.corrected.append(f"tokenizer: {name} was {was!r}, set to {facts.tokens[i]!r} (id {i})")
    bos = facts.special_ids.get("bos_token")
    if bos is not None and _adds_bos(tok, bos) != facts.add_bos:
        tok.add_bos_token = facts.add_bos
        report.corrected.append(f"tokenizer: add_bos_token set to {facts.add_bos} as the file says")
        if _adds_bos(tok, bos) != facts.add_bos:
            raise GGUFConversionError(f"{facts.path.name}: the tokenizer cannot be made to "
                                      f"{'add' if facts.add_bos else 'leave out'} the BOS token the file asks for")
    return tok


def _adds_bos(tok, bos: int) -> bool:
    ids = tok("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def _examples(split: list[tuple[str, int]]) -> str:
    return ", ".join(f"{text!r} -> {n} token{'s' * (n != 1)}" for text, n in split[:3])


def _word_text(facts: GGUFFacts, token: str) -> str | None:
    """The text a vocabulary token spells when it is a space and three or more ASCII letters, else None."""
    if facts.tokenizer_type == "llama":
        text = token.replace("\u2581", " ")
    elif facts.tokenizer_type == "gpt2":
        text = token.replace("\u0120", " ")  # the byte-level spelling of a space
    else:
        return None
    return text if re.fullmatch(r" [A-Za-z]{3,}", text) else None


def _split_words(facts: GGUFFacts, tok) -> list[tuple[str, int]]:
    """The probe words (the first PROBE_WORDS ordinary vocabulary words, written one after the other as one text)
    whose token `tok` does not give for that text, with how many tokens it gave for the word alone; empty when
    at least half of them come out as their token."""
    probes = []
    for i, token in enumerate(facts.tokens):
        if facts.token_types and facts.token_types[i] != 1:
            continue
        if (text := _word_text(facts, token)) is not None:
            probes.append((text, i))
            if len(probes) == PROBE_WORDS:
                break
    found = Counter(tok("".join(text for text, _ in probes), add_special_tokens=False)["input_ids"])
    split = []
    for text, i in probes:
        if found[i] > 0:
            found[i] -= 1
        else:
            split.append((text, len(tok(text, add_special_tokens=False)["input_ids"])))
    return split if probes and len(split) * 2 > len(probes) else []


def sentencepiece_merges(tokens: list[str]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary listed in merge order (Gemma's files list no merges):
    every split of a token into two vocabulary tokens, ranked by the token's place in the file (a repeated token
    by its last place) and, among one token's splits, the longer left piece first (as transformers 5.24 ranks
    them)."""
    rank = {t: i for i, t in enumerate(tokens)}
    return [(t[:k], t[k:]) for t in sorted(rank, key=rank.__getitem__)
            for k in range(len(t) - 1, 0, -1) if t[:k] in rank and t[k:] in rank]


def gemma_tokenizer(facts: GGUFFacts):
    """Gemma's tokenizer from the file: SentencePiece BPE (byte fallback) with merges in the file's token order;
    tokens of two or more spaces respelled with the SentencePiece space, control tokens special, user-defined
    tokens added whole."""
    from tokenizers import AddedToken
    from transformers import GemmaTokenizer

    tokens = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in facts.tokens]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab[t] = i
    specials = {name: tokens[i] for name, i in facts.special_ids.items()}
    tok = GemmaTokenizer(vocab=vocab, merges=sentencepiece_merges(tokens), **specials)
    types = facts.token_types or [1] * len(tokens)
    control = [AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types) if k == _CONTROL]
    user = [AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types) if k == _USER_DEFINED]
    if control:
        tok.add_tokens(control, special_tokens=True)
    if user:
        tok.add_tokens(user)
    tok.add_bos_token = facts.add_bos
    return tok


TOKENIZER_REBUILDERS: dict[tuple[str | None, str], Callable[[GGUFFacts], object]] = {
    ("llama", "gemma"): gemma_tokenizer,
    ("llama", "gemma2"): gemma_tokenizer,
    ("llama", "gemma3"): gemma_tokenizer,
}
