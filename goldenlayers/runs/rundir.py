"""The run directory: the unit of reproducibility (DESIGN.md house style 7).

    <root>/<config.name>/
      config.yaml          the resolved config (every default filled in), headed by the command that runs it
      meta.json            versions (python, torch, transformers, goldenlayers, numpy, platform, GPUs), seeds,
                           created_at, and one entry per session (start time and versions of every resume)
      store.sqlite         the run store (goldenlayers.runs.store): results, selectors, failures, jobs
      shards/shard-i.sqlite  per-worker stores, merged into store.sqlite by `merge_shards()`
      exports/, report/    written on request

`RunDir.create_or_resume(config, root)` creates it, or resumes it when it exists: a config that differs from the
stored one (output_dir aside; settings added to the schema since the run was created count at their defaults) is
refused with the differing keys listed, unless force=True, which keeps the old config as config.<timestamp>.yaml
and records the forced change in meta.json.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import yaml

from goldenlayers.runs.config import ExperimentConfig, dump_config, load_config, resolved, validate_config
from goldenlayers.runs.errors import ConfigError
from goldenlayers.runs.schema import now
from goldenlayers.runs.store import Store, merge_shards, shard_path

_IGNORED = {"output_dir"}  # where the run lives does not change its results


class ConfigMismatchError(RuntimeError):
    """Resuming a run with a config that differs from the stored one; `differences` lists the keys."""

    def __init__(self, path: Path, differences: list[str]):
        self.path, self.differences = path, differences
        lines = "\n".join(f"  {d}" for d in differences)
        super().__init__(f"{path} was started with a different config:\n{lines}\n"
                         "Use a new run name, or force the resume (--force) to accept the new config.")


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """Dotted paths to leaves; list items that have a "name" are addressed by it (models[gpt2-xl].dtype)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for v in value:
            out.update(_flatten(v, f"{prefix}[{v['name']}]"))
        return out
    return {prefix: value}


def config_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two resolved configs: "key: old -> new", "+ key: new", "- key: old"."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if k.split(".")[0] in _IGNORED:
            continue
        if k not in a:
            out.append(f"+ {k}: {b[k]!r}")
        elif k not in b:
            out.append(f"- {k}: {a[k]!r}")
        elif a[k] != b[k]:
            out.append(f"{k}: {a[k]!r} -> {b[k]!r}")
    return out


def _stored(cfg_file: Path) -> dict:
    """A run's stored config, resolved again by the current schema: a setting added to the schema after the run
    was created counts at its default (such a run resumes), every stored value stays as it was."""
    data = yaml.safe_load(cfg_file.read_text())
    try:
        return resolved(validate_config(data, str(cfg_file)))
    except ConfigError:
        return data


def _write(path: Path, text: str) -> None:
    """Write a file atomically (temp file + rename): a crash leaves the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def versions() -> dict:
    """Versions of the software a session runs with, and the GPUs it sees (None without CUDA)."""
    import numpy
    import torch
    import transformers

    import goldenlayers

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else None
    return dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                goldenlayers=goldenlayers.__version__, numpy=numpy.__version__, platform=platform.platform(),
                cuda=torch.version.cuda if gpus else None, gpus=gpus)


@dataclass
class RunDir:
    path: Path
    config: ExperimentConfig
    store: Store

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    @classmethod
    def create_or_resume(cls, config: ExperimentConfig, root: str | Path | None = None, force: bool = False,
                         command: str | None = None) -> RunDir:
        """Create <root>/<config.name> (root defaults to config.output_dir) or resume it; see the module doc."""
        path = Path(root if root is not None else config.output_dir) / config.name
        cfg_file, meta_file = path / "config.yaml", path / "meta.json"
        session = dict(started_at=now(), versions=versions())
        fresh = dict(name=config.name, created_at=session["started_at"], versions=session["versions"],
                     seeds=dict(config.seeds.model_dump(), split=config.split.seed), sessions=[])
        if cfg_file.exists():
            diff = config_diff(_stored(cfg_file), resolved(config))
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else fresh
            if diff and not force:
                raise ConfigMismatchError(path, diff)
            if diff:
                stamp = session["started_at"].replace(":", "").replace("+0000", "Z")
                cfg_file.rename(path / f"config.{stamp}.yaml")
                _write(cfg_file, dump_config(config, command))
                meta.setdefault("forced", []).append(dict(at=session["started_at"], differences=diff))
        else:
            path.mkdir(parents=True, exist_ok=True)
            _write(cfg_file, dump_config(config, command))
            meta = fresh
        meta["sessions"].append(session)
        _write(meta_file, json.dumps(meta, indent=2) + "\n")
        return cls(path, config, Store(path / "store.sqlite"))

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (for reports and exports); records no session."""
        path = Path(path)
        if not (path / "config.yaml").is_file() or not (path / "store.sqlite").is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no config.yaml and store.sqlite)")
        return cls(path, load_config(path / "config.yaml"), Store(path / "store.sqlite"))

    def shard(self, worker: int) -> Store:
        """The store worker `worker` writes to (never the main store: one writer per SQLite file)."""
        return Store(shard_path(self.path, worker))

    def merge_shards(self) -> dict[str, int]:
        """Merge every shards/shard-*.sqlite into the main store (idempotent); new rows per table."""
        return merge_shards(self.store, sorted((self.path / "shards").glob("shard-*.sqlite")))

    def export(self, fmt: str = "csv", dest: str | Path | None = None) -> list[Path]:
        from goldenlayers.runs.export import export_store

        return export_store(self.store, Path(dest) if dest else self.path / "exports", fmt)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *_) -> None:
        self.close()
