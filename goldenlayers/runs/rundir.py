"""The run directory: the unit of reproducibility (docs/design.md "House style" 7).

    <root>/<config.name>/
      config.yaml          the resolved config (every default filled in), headed by the command that runs it
      meta.json            versions (python, torch, transformers, goldenlayers, numpy, platform, GPUs), seeds,
                           created_at, and one entry per session (start time and versions of every resume)
      store.sqlite         the run store (goldenlayers.runs.store): results, selectors, failures, jobs
      shards/shard-i.sqlite  per-worker stores, merged into store.sqlite by `merge_shards()`
      exports/, report/    written on request
      run.lock             held (an OS file lock) by the process that runs the directory; says which one it is

`RunDir.create_or_resume(config, root)` creates it, or resumes it when it exists: a config that differs from the
stored one (output_dir aside; settings added to the schema since the run was created count at their defaults) is
refused with the differing keys listed, unless force=True, which keeps the old config as config.<timestamp>.yaml
and records the forced change in meta.json.

Only one process runs a directory at a time: `create_or_resume` takes an exclusive lock on run.lock (released by
`close()`, or by the OS when the process ends, even killed) and writes its pid, host, command and start time
there; a second process gets a `RunLockedError` naming the first. The ranks of one torchrun launch share it: rank
0 creates/resumes (and holds the lock) and the other ranks `open` the directory, which takes no lock.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from dataclasses import dataclass, field
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


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock; the message names it."""


def _lock(path: Path, command: str | None):
    """An exclusive, non-blocking OS lock on path/run.lock (POSIX record lock: released when the process ends),
    with the holder's description written into the file; RunLockedError when another process holds it. None
    where the platform has no fcntl."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    fd = os.open(path / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        os.close(fd)
        try:
            h = json.loads(holder)
            who = (f"process {h['pid']} on {h['host']} ({h.get('command') or 'goldenlayers'}, since "
                   f"{h['since']})")
        except (ValueError, KeyError, TypeError):
            who = "another process"
        raise RunLockedError(f"run directory {path} is in use by {who}; wait for it to finish or stop it, then "
                             "run again") from None
    info = json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), command=command, since=now())).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return fd


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
    lock: int | None = field(default=None, repr=False)  # the run.lock descriptor while this process runs it
    repaired: dict[str, int] | None = None  # rows kept per table when create_or_resume(repair=True) repaired it

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    @classmethod
    def create_or_resume(cls, config: ExperimentConfig, root: str | Path | None = None, force: bool = False,
                         command: str | None = None, repair: bool = False) -> RunDir:
        """Create <root>/<config.name> (root defaults to config.output_dir) or resume it, holding its lock until
        close(); see the module doc. A damaged store raises StoreDamagedError, unless repair=True, which first
        replaces it by the rows that can still be read (goldenlayers.runs.repair; counts in `.repaired`)."""
        from goldenlayers.runs.repair import check_store, repair_store

        path = Path(root if root is not None else config.output_dir) / config.name
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path, command)
        try:
            store_file = path / "store.sqlite"
            repaired = repair_store(store_file) if repair and store_file.exists() else None
            check_store(store_file)
            run = cls._create_or_resume(config, path, force, command, lock)
            run.repaired = repaired
            return run
        except BaseException:
            if lock is not None:
                os.close(lock)
            raise

    @classmethod
    def _create_or_resume(cls, config: ExperimentConfig, path: Path, force: bool, command: str | None,
                          lock: int | None) -> RunDir:
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
        return cls(path, config, Store(path / "store.sqlite"), lock)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (for reports and exports); records no session."""
        path = Path(path)
        if not (path / "config.yaml").is_file() or not (path / "store.sqlite").is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no config.yaml and store.sqlite)")
        from goldenlayers.runs.repair import check_store

        check_store(path / "store.sqlite")
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
        if self.lock is not None:
            os.close(self.lock)  # releases the lock
            self.lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *_) -> None:
        self.close()
