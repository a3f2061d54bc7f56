"""Key statistics C_l = E[k k^T] of the edited layers (docs/equations.md "Editing methods"; ROME eq. 2, MEMIT eq. 14).

k is the down-proj input (d_ff) at one token; C_l is the uncentred second moment over every non-pad token of a
text corpus, one (d_ff, d_ff) matrix per layer. `collect_key_stats` gathers MANY layers in ONE pass: a forward
hook on each requested down-proj adds K^T K of the batch's real tokens (K: (n_tokens, d_ff), cast to `dtype`)
to an accumulator on that module's device, and the forward is cut short after the deepest requested layer.
Only the upper triangle of 4 x 4 blocks of K^T K is accumulated (10/16 of the products; the matrix is
symmetric), and mirrored at the end; results come back to the CPU through a reused page-locked buffer.
Texts are truncated to `max_length` tokens; collection stops at exactly `max_tokens` tokens.
Accumulator memory: len(layers) * d_ff^2 * bytes(dtype) on the device (GPT-2 XL, 48 layers, float64: 15.7 GB).

`StatsCache` keeps results on disk (safetensors) keyed by model identity (name, config, tokenizer and a hash of
every down-proj weight, so an edited model never reads a stale entry), layer, source fingerprint, token budget,
max_length and dtype. Processes that fill the same entry at once (the ranks of a torchrun launch, two runs)
take a file lock, so the first collects and the others then read its files; every file is written to a
temporary name and renamed, so a reader never sees half of one. `resolve_key_stats(model, settings, stats)` is
the one place C is resolved for an edit: None (C = I) unless the settings' `mom2_adjustment` asks for C, else
`key_stats` of the `StatsSettings` source (default: the model's own world); `lazy=True` returns `CachedStats`,
which reads each layer's file when the editor asks for it (a sweep over 48 layers of GPT-2 XL would otherwise
hold 15.7 GB of float64 matrices). `check_stats` (goldenlayers.editing.solve.check_key_cov, the one validator)
refuses NaN/inf or (near-)singular C naming the layer;
C is only ever factorised or inverted in float64 (goldenlayers.editing.solve), never in reduced precision.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from goldenlayers.cache import cache_root
from goldenlayers.editing.hparams import EditHParams, StatsSettings
from goldenlayers.editing.solve import check_key_cov
from goldenlayers.editing.sources import TextSource, open_source, token_batches
from goldenlayers.models.adapters import ArchAdapter
from goldenlayers.models.loader import model_device
from goldenlayers.text import model_max_length

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


PANELS = 4  # K^T K is accumulated on the upper triangle of PANELS x PANELS blocks: 10/16 of the products


def _accumulate(acc: torch.Tensor, k: torch.Tensor) -> None:
    """acc += K^T K on its upper block triangle only (row panel i: K_i^T K[:, i:]); `_symmetric` completes it."""
    d = k.shape[1]
    b = -(-d // PANELS)
    for i in range(0, d, b):
        acc[i:i + b, i:].addmm_(k[:, i:i + b].T, k[:, i:])


def _symmetric(acc: torch.Tensor) -> torch.Tensor:
    """The whole matrix from the upper block triangle `_accumulate` fills: its upper triangle, mirrored."""
    return torch.triu(acc) + torch.triu(acc, 1).T


def _to_host(t: torch.Tensor, stage: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(t on the CPU, the pinned staging buffer to reuse). A GPU tensor goes through one reused page-locked buffer:
    a plain `.cpu()` copies through pageable memory, 1.2-1.3 GB/s on the lent H100 (6.4 s for GPT-2 XL's 48
    float32 matrices), against 4-8 GB/s this way (benchmarks/bench_kernels.py, docs/benchmarks.md)."""
    if t.device.type != "cuda":
        return t, stage
    if stage is None or stage.shape != t.shape or stage.dtype != t.dtype:
        try:
            stage = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        except RuntimeError:  # no page-locked memory to be had: the plain copy
            return t.cpu(), None
    stage.copy_(t)
    return stage.clone(), stage


class _Stop(Exception):
    """Raised by the deepest hook: nothing after it is needed."""


def _one_pass(model, tok, adapter: ArchAdapter, layers: list[int], texts: Iterable[str], max_tokens: int,
              batch_size: int, max_length: int, dtype: torch.dtype, bar) -> tuple[dict[int, torch.Tensor], int]:
    """Sums K^T K (d_ff, d_ff) per layer over the first `max_tokens` real tokens, and the token count."""
    sums: dict[int, torch.Tensor] = {}
    keep = torch.zeros(0, dtype=torch.long)  # (n,) flat indices of the current batch's tokens that count
    deepest = max(layers)

    def make_hook(layer: int):
        def hook(_mod, args, _out):
            x = args[0].reshape(-1, args[0].shape[-1])  # (B*T, d_ff): OPT already feeds it flattened
            k = x.index_select(0, keep.to(x.device)).to(dtype)  # (n, d_ff)
            if layer not in sums:
                sums[layer] = torch.zeros(k.shape[1], k.shape[1], dtype=dtype, device=k.device)
            _accumulate(sums[layer], k)
            if layer == deepest:
                raise _Stop
        return hook

    handles = [adapter.down_proj_module(model, lay).register_forward_hook(make_hook(lay)) for lay in layers]
    n, device = 0, model_device(model)
    try:
        for ids, mask in token_batches(tok, texts, batch_size, max_length):
            m = mask.bool()
            m &= m.flatten().cumsum(0).view_as(m) <= max_tokens - n  # the budget, in reading order
            rows = m.any(1)
            ids, mask, m = ids[rows], mask[rows], m[rows]
            keep = m.flatten().nonzero().squeeze(1).to(device)
            with torch.inference_mode():
                try:
                    model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
                except _Stop:
                    pass
            n += len(keep)
            bar.update(len(keep))
            if n >= max_tokens:
                break
    finally:
        for h in handles:
            h.remove()
    return sums, n


def _collect(model, tok, adapter, layers, texts, max_tokens, batch_size, max_length, dtype, progress,
             one_layer_at_a_time) -> tuple[dict[int, torch.Tensor], int]:
    layers = sorted({adapter.check_layer(model, lay) for lay in layers})
    if not layers:
        raise ValueError("no layers requested")
    limit = model_max_length(model)
    max_length = min(max_length, limit) if limit else max_length
    passes = [[lay] for lay in layers] if one_layer_at_a_time else [layers]
    seen: list[str] = []  # texts read by the first pass, replayed by the others

    def recorded(it):
        for t in it:
            seen.append(t)
            yield t

    sums, n = {}, 0
    with tqdm(total=max_tokens * len(passes), unit="tok", desc="key statistics", disable=not progress) as bar:
        for i, group in enumerate(passes):
            s, n = _one_pass(model, tok, adapter, group, recorded(texts) if i == 0 else seen, max_tokens,
                             batch_size, max_length, dtype, bar)
            sums |= s
    if n == 0:
        raise ValueError("the text source gave no tokens")
    if n < max_tokens:
        warnings.warn(f"the text source ran out after {n} of {max_tokens} requested tokens", stacklevel=3)
    out, stage = {}, None
    for lay in layers:
        out[lay], stage = _to_host(_symmetric(sums.pop(lay)) / n, stage)
    return out, n


def collect_key_stats(model: nn.Module, tok, adapter: ArchAdapter, layers: list[int], texts: Iterable[str],
                      max_tokens: int, batch_size: int = 8, max_length: int = 256, dtype: torch.dtype = torch.float64,
                      progress: bool = True, one_layer_at_a_time: bool = False) -> dict[int, torch.Tensor]:
    """{layer: C = E[k k^T]} ((d_ff, d_ff) in `dtype`, on the CPU) over the first `max_tokens` non-pad tokens.

    All layers come from one pass over `texts`; `one_layer_at_a_time` runs one pass per layer instead (the
    baseline of benchmarks/bench_stats.py; same result up to float rounding).
    """
    return _collect(model, tok, adapter, layers, texts, max_tokens, batch_size, max_length, dtype, progress,
                    one_layer_at_a_time)[0]


check_stats = check_key_cov  # the one validator of C (goldenlayers.editing.solve)


class StatsCache:
    """On-disk cache of C per (model identity, layer, source, token budget, max_length, dtype), in safetensors.

    root: $GOLDENLAYERS_CACHE, else ~/.cache/goldenlayers; files live under root/key_stats/.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = cache_root(root) / "key_stats"
        self.collected = 0  # layers this instance collected (the others were read from files)

    @staticmethod
    def model_identity(model: nn.Module, tok, adapter: ArchAdapter) -> str:
        """Hex digest of the config, the tokenizer and every down-proj weight (bytes, dtype and shape)."""
        h = hashlib.blake2b(digest_size=16)
        cfg = model.config.to_dict()
        for volatile in ("transformers_version", "_name_or_path"):
            cfg.pop(volatile, None)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
        backend = getattr(tok, "backend_tokenizer", None)
        h.update((backend.to_str() if backend is not None else repr(sorted(tok.get_vocab().items()))).encode())
        for lay in range(adapter.n_layers(model)):
            w = adapter.weight_param(model, lay).detach()
            h.update(f"{lay}:{w.dtype}:{tuple(w.shape)}".encode())
            h.update(w.cpu().contiguous().flatten().view(torch.uint8).numpy())
        return h.hexdigest()

    def path(self, name: str, identity: str, source: TextSource, layer: int, max_tokens: int, max_length: int,
             dtype: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:] or "model"
        src = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.label).strip("_")[-40:] or "texts"
        return (self.root / f"{slug}-{identity[:16]}" / f"{src}-{source.fingerprint[:12]}"
                / f"layer{layer:03d}-tok{max_tokens}-len{max_length}-{dtype}.safetensors")

    def _entry(self, model, tok, adapter, layers, settings, texts, name):
        s = settings or StatsSettings()
        if s.source is None:
            raise ValueError("StatsSettings.source is None: pass the text source of C (resolve_key_stats fills in "
                             "the model's own world)")
        source = open_source(s.source) if texts is None else TextSource(s.source, hashlib.sha256(
            f"given:{s.source}".encode()).hexdigest(), lambda: texts)
        name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        identity = self.model_identity(model, tok, adapter)
        paths = {lay: self.path(name, identity, source, lay, s.tokens, s.max_length, s.dtype) for lay in layers}
        return s, source, name, identity, paths

    def _fill(self, model, tok, adapter, layers, settings, texts, name, progress, batch_size=8
              ) -> tuple[dict[int, Path], dict[int, torch.Tensor]]:
        """(every layer's file, the C collected now): the layers without a file are collected together in one
        pass, checked and stored, under the entry's lock (a process that waited for it finds the files there)."""
        s, source, name, identity, paths = self._entry(model, tok, adapter, layers, settings, texts, name)
        new: dict[int, torch.Tensor] = {}
        if all(p.exists() for p in paths.values()):
            return paths, new
        with _locked(next(iter(paths.values())).parent):
            missing = [lay for lay in layers if not paths[lay].exists()]
            if missing:
                new, n = _collect(model, tok, adapter, missing, source.texts(), s.tokens, batch_size,
                                  s.max_length, _DTYPES[s.dtype], progress, False)
                for lay, C in new.items():
                    check_stats(C, lay)
                    meta = dict(model=name, identity=identity, source=source.label, fingerprint=source.fingerprint,
                                layer=str(lay), tokens=str(n), max_tokens=str(s.tokens),
                                max_length=str(s.max_length), dtype=s.dtype)
                    tmp = paths[lay].with_suffix(f".tmp{os.getpid()}")
                    save_file({"C": C.contiguous()}, tmp, metadata=meta)
                    os.replace(tmp, paths[lay])
                self.collected += len(new)
        return paths, new

    def get_or_compute(self, model: nn.Module, tok, adapter: ArchAdapter, layers: list[int],
                       settings: StatsSettings | None = None, texts: Iterable[str] | None = None,
                       name: str | None = None, progress: bool = True, batch_size: int = 8
                       ) -> dict[int, torch.Tensor]:
        """{layer: C} from the cache; the missing layers are collected together in one pass, checked and stored.

        texts: the corpus itself, labelled by `settings.source` in the key (else the source spec is opened).
        name: how the model is named in the cache folder (default: its config's name_or_path).
        batch_size: texts per forward while collecting (an execution option: not in the key).
        """
        paths, new = self._fill(model, tok, adapter, layers, settings, texts, name, progress, batch_size)
        return {lay: new[lay] if lay in new else load_file(paths[lay])["C"] for lay in layers}

    def files(self, model: nn.Module, tok, adapter: ArchAdapter, layers: list[int],
              settings: StatsSettings | None = None, texts: Iterable[str] | None = None, name: str | None = None,
              progress: bool = True, batch_size: int = 8) -> dict[int, Path]:
        """{layer: file of C}, collecting the missing layers as get_or_compute does, but loading nothing."""
        return self._fill(model, tok, adapter, layers, settings, texts, name, progress, batch_size)[0]


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder/.lock (POSIX fcntl; without it, no lock: files are still written whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class CachedStats(Mapping):
    """{layer: C} backed by the cache's files: C is read when asked for, and the last one read is kept (a sweep
    edits layer by layer). What `edit(..., stats=)` takes, without every layer's matrix in memory at once."""

    def __init__(self, paths: Mapping[int, Path]):
        self.paths = dict(paths)
        self._last: tuple[int, torch.Tensor] | None = None

    def __getitem__(self, layer: int) -> torch.Tensor:
        if self._last is None or self._last[0] != layer:
            self._last = (layer, load_file(self.paths[layer])["C"])  # KeyError for a layer it does not hold
        return self._last[1]

    def __contains__(self, layer: object) -> bool:
        return layer in self.paths

    def __iter__(self) -> Iterator[int]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def key_stats(model: nn.Module, tok, adapter: ArchAdapter, layers: list[int], settings: StatsSettings | None = None,
              cache: StatsCache | None = None, texts: Iterable[str] | None = None, name: str | None = None,
              progress: bool = True, lazy: bool = False, batch_size: int = 8) -> Mapping[int, torch.Tensor]:
    """C per layer for `edit(..., stats=...)`: checked statistics from `settings.source` (or `texts`) through
    `cache` (default: StatsCache() at its default root), missing layers collected in one pass. lazy: a
    `CachedStats` that reads each layer's file when it is used, instead of a dict of every C."""
    s = settings or StatsSettings(source="world")
    cache = cache or StatsCache()
    if lazy:
        return CachedStats(cache.files(model, tok, adapter, layers, s, texts, name, progress, batch_size))
    return cache.get_or_compute(model, tok, adapter, layers, s, texts, name, progress, batch_size)


class StatsSourceError(ValueError):
    """Settings that use C for a model with no text source to take it from."""


def with_source(stats: StatsSettings, model_source: str | None) -> StatsSettings:
    """`stats` with its source filled in: as given, else the held-out corpus of the synthetic world the model at
    `model_source` was trained on ("world:<model folder>"); StatsSourceError when it has none."""
    from goldenlayers.editing.sources import model_world_source

    if stats.source is not None:
        return stats
    source = model_world_source(model_source) if model_source is not None else None
    if source is None:
        raise StatsSourceError(
            f"these settings use key statistics C (mom2_adjustment) and {model_source or 'the model'} has no "
            "synthetic world to take them from: give a text source (--stats SOURCE, or stats.source in a config: "
            "a folder of .txt files, hf:NAME, wikipedia-vital, ...), or set mom2_adjustment=false for C = I")
    return stats.model_copy(update={"source": source})


def resolve_key_stats(model: nn.Module, tok, adapter: ArchAdapter, settings: EditHParams,
                      stats: StatsSettings | None, layers: list[int] | None, *, model_source: str | None = None,
                      name: str | None = None, cache: StatsCache | None = None, batch_size: int = 8,
                      progress: bool = True, lazy: bool = True) -> Mapping[int, torch.Tensor] | None:
    """The one function from (model, editing settings, stats source) to C: None (C = I) when the settings do
    not use key statistics (`mom2_adjustment`, the one switch) or no layer is given; else {layer: C} of `layers`
    (default: the settings' layers) from the statistics cache, collected on a miss from `stats.source`, by
    default the held-out corpus of the synthetic world the model was trained on (`model_source`: the --model
    string or a config's model path). Raises StatsSourceError when there is no source to take C from."""
    layers = layers or settings.layers
    if not settings.mom2_adjustment or not layers:
        return None
    s = with_source(stats or StatsSettings(), model_source)
    return key_stats(model, tok, adapter, layers, s, cache=cache, name=name, progress=progress, lazy=lazy,
                     batch_size=batch_size)
