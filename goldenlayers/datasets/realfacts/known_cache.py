"""The known-fact filter's results on disk (docs/realfacts.md, "Known-fact filter"), so that a command after the
first does not run the model over every fact again.

One JSON file per (model identity, fact set, filter settings) under `<cache root>/realfacts/known/`:
- the model identity hashes its config (without the volatile name and transformers version), its tokenizer and
  the bytes, dtype and shape of every parameter and buffer (about a second for Gemma-3-270M in float32; the
  filter itself takes minutes), so a fine-tuned or edited model, another dtype or another tokenizer is another
  entry; a model without parameters (a test stub) has no identity and is not cached;
- the fact set's fingerprint hashes every fact's relation, subject, prompts and answer aliases in order (they come
  from the data packages' versions and the templates) and `FILTER_VERSION`, the version of the filter's rule;
- the batch size and the device type, since another batch composition or device can move a near-tie argmax.
Files are written atomically (a temporary file beside it, then a rename): a reader sees the old file, the new
one or none, never half of one. An unreadable file counts as missing and is computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from goldenlayers.cache import cache_root
from goldenlayers.datasets.realfacts.facts import Fact
from goldenlayers.datasets.realfacts.known import Known

FILTER_VERSION = 1  # bump when the rule of find_known changes (what counts as known, which alias/template is kept)


@torch.no_grad()
def model_identity(model, tok) -> str | None:
    """Hex digest of the model's config, tokenizer and every parameter and buffer; None for a model with none."""
    tensors = list(model.state_dict().items()) if hasattr(model, "state_dict") else []
    if not tensors:
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(type(model).__name__.encode())
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
        for volatile in ("transformers_version", "_name_or_path"):
            d.pop(volatile, None)
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    backend = getattr(tok, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else repr(sorted(tok.get_vocab().items()))).encode())
    for name, t in tensors:
        t = t.detach()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.cpu().contiguous().flatten().view(torch.uint8).numpy())
    return h.hexdigest()


def facts_fingerprint(facts: list[Fact]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"filter-v{FILTER_VERSION}".encode())
    for f in facts:
        h.update(json.dumps([f.relation, f.subject, f.prompts(), list(f.answers)]).encode())
    return h.hexdigest()


def known_path(model, tok, facts: list[Fact], batch_size: int, root: str | Path | None = None) -> Path | None:
    """The cache file of the filter's result for this model and fact set (None: the model has no identity)."""
    ident = model_identity(model, tok)
    if ident is None:
        return None
    dev = next(iter(model.parameters()), torch.empty(0)).device.type
    return (cache_root(root) / "realfacts" / "known"
            / f"{ident[:20]}-{facts_fingerprint(facts)[:16]}-b{batch_size}-{dev}.json")


def read_known(path: Path) -> tuple[dict[str, Known], dict[str, str]] | None:
    try:
        d = json.loads(path.read_text())
        return {k: Known(*v) for k, v in d["known"].items()}, dict(d["said"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_known(path: Path, known: dict[str, Known], said: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"known": {k: [v.template, v.alias] for k, v in known.items()}, "said": said})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
