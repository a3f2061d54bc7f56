"""The experiment engine behind `goldenlayers run` (paper section 4 and Appendix A: models x datasets x editing
methods x layer selectors; docs/equations.md "Layer selection" for the proxy/test split).

`make_engine()` returns a `RunEngine`, whose `run_job(job, run)` executes one job of `goldenlayers.runs.plan`:
`select` (LGA / CMA on the proxy split -> selector rows), `bruteforce` (every case of the split at every configured
layer -> one result row per metric, with pre-edit values) and `evaluate` (the test cases at the layer the selector
chose, read back from the store; with a proxy-only brute force also at its proxy golden layer). Every cells job is
the package's one cell loop (goldenlayers.evaluation.cells). The job code lives in `engine_jobs.py`. Models are loaded once per process and
kept while consecutive jobs use them (the plan is model-major, so each model loads once); cases and their split
are cached per (model, dataset). Resuming is cell by cell (`store.done_keys`): a killed run redoes only the cells
that had not been written. With several workers (`goldenlayers.runs.distributed`), worker `rank` of `world` does
every world-th remaining cell and writes to its own shard store; the select jobs run on worker 0.

Key statistics: when a method's settings need C (mom2_adjustment, e.g. the EMMET/MEMIT presets of the paper
models), a cells job first makes sure C of every layer that still has cells to do is in the shared cache
(goldenlayers.editing.stats.StatsCache: $GOLDENLAYERS_CACHE, else ~/.cache/goldenlayers), collecting the missing
layers in one pass from the config's `stats.source` (default: the held-out corpus of the model's synthetic world),
and hands the editor a mapping that reads each layer's C from its file when used. Workers of a torchrun launch
ask for the same layers; the cache's file lock lets the first collect and the others read its files.
"""

from __future__ import annotations

import gc
from pathlib import Path

import torch

from goldenlayers.runs.config import DatasetSpec, ExperimentConfig, ModelSpec
from goldenlayers.runs.engine_jobs import (
    bruteforce_pick,
    chosen_layer,
    method_settings,
    run_cells,
    run_select,
    shared_cells,
)
from goldenlayers.runs.plan import Job
from goldenlayers.runs.rundir import RunDir
from goldenlayers.runs.store import Store
from goldenlayers.runs.timeline import Timeline

LOAD_METHOD = "-"  # the method of a failure row for a record skipped while loading (no method touched it)


def load_cases(config: ExperimentConfig, model: ModelSpec, dataset: DatasetSpec, base: str | Path = ".",
               lm=None, skipped: list | None = None) -> list:
    """The edit cases of a dataset: the model's synthetic world (`world` without a file: `limit` cases, default
    100, sampled with split.seed), the real facts the loaded model `lm` knows (`realfacts` without a file: the
    first `limit`, ordered by split.seed; docs/realfacts.md) or the benchmark file (relative to data_dir) through
    load_dataset. The records the loader skipped (goldenlayers.datasets.Skipped: index, case, field, reason) are
    appended to `skipped` when given."""
    if dataset.name == "realfacts" and dataset.file is None:
        from goldenlayers.datasets.realfacts import build_realfacts

        cases = build_realfacts(lm, limit=dataset.limit, seed=config.split.seed).cases
        if not cases:
            raise ValueError(f"{model.name} knows none of the real facts")
        return cases
    if dataset.name == "world" and dataset.file is None:
        from goldenlayers.datasets.synthetic.world import World
        from goldenlayers.models.loader import resolve_model_path

        path = Path(resolve_model_path(model.source)) / "world.json"
        if not path.exists():
            raise FileNotFoundError(f"dataset 'world' without a file needs a model trained on the synthetic world "
                                    f"(no {path}); give the dataset a file")
        return World.load(path).edit_cases(dataset.limit or 100, seed=config.split.seed)
    from goldenlayers.datasets import load_dataset

    data = load_dataset(dataset.name, config.dataset_file(dataset, base), limit=dataset.limit)
    if skipped is not None:
        skipped += data.report.skipped
    if not data.cases:
        raise ValueError(f"{dataset.file}: no usable case ({data.report.summary()})")
    return list(data.cases)


class RunEngine:
    """Executes jobs (see the module docstring). rank/world: this worker among `world`; device: where models go
    (None: the ModelSpec's device, else CUDA when available); progress: show progress bars."""

    def __init__(self, rank: int = 0, world: int = 1, device: str | None = None, progress: bool = True):
        self.rank, self.world, self.device, self.progress = rank, world, device, progress
        self._model: tuple[str, object] | None = None
        self._cases: dict[tuple[str, str], tuple[list, set[str]]] = {}
        self._skipped: dict[tuple[str, str], list] = {}  # records the loader skipped, per (model, dataset)
        self._recorded: set[tuple[str, str]] = set()
        self._caches: dict[str, object] = {}
        self._shards: dict[Path, Store] = {}
        self.stats_cache = None  # the StatsCache, made when first needed (its root is read from the environment)
        self.log: list[dict] = []  # one entry per cells job: what it did
        self.timeline = Timeline()  # seconds per phase of this process (printed by `goldenlayers run`)

    # ---- resources -----------------------------------------------------------------------------------------
    def model(self, spec: ModelSpec):
        """The LoadedModel of `spec`, loaded at most once while consecutive jobs use it."""
        if self._model is None or self._model[0] != spec.name:
            from goldenlayers.models.loader import load_model

            self.release()
            device = spec.device if self.device is None else self.device
            with self.timeline.phase("load model"):
                self._model = (spec.name, load_model(spec.source, dtype=spec.dtype, device=device,
                                                     device_map=spec.device_map))
        return self._model[1]

    def release(self) -> None:
        """Drop the loaded model (frees its memory before the next one loads)."""
        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def cases(self, config: ExperimentConfig, job: Job) -> tuple[list, set[str]]:
        """(cases, proxy case ids) of the job's model and dataset (cached)."""
        key = (job.model, job.dataset)
        if key not in self._cases:
            from goldenlayers.datasets.split import split_cases

            spec = next(m for m in config.models if m.name == job.model)
            ds = next(d for d in config.datasets if d.name == job.dataset)
            lm = self.model(spec) if ds.name == "realfacts" and ds.file is None else None
            skipped: list = []
            cases = load_cases(config, spec, ds, lm=lm, skipped=skipped)
            split = split_cases(cases, config.split.proxy_fraction, config.split.seed)
            self._cases[key] = (cases, {c.case_id for c in split.proxy})
            self._skipped[key] = skipped
        return self._cases[key]

    def record_skipped(self, run: RunDir, job: Job) -> None:
        """Write the records the loader skipped for the job's model and dataset as failure rows (stage "load",
        method "-", layer -1, the reason naming the record, the field and why), once per process; rank 0 only
        (the main store's one writer). Rewriting them on a resume changes nothing."""
        key = (job.model, job.dataset)
        if self.rank != 0 or key in self._recorded:
            return
        self._recorded.add(key)
        rows, seen = [], set()
        for s in self._skipped.get(key, []):
            cid = s.case_id if s.case_id not in seen else f"{s.case_id}@record{s.index}"
            seen.add(cid)
            rows.append(dict(model=job.model, dataset=job.dataset, case_id=cid, method=LOAD_METHOD, layer=-1,
                             stage="load", reason=f"record {s.index}, field {s.field!r}: {s.reason}"))
        if rows:
            run.store.add(failures=rows)

    def key_stats(self, config: ExperimentConfig, settings, spec: ModelSpec, lm, layers: list[int]):
        """(C of `layers` read lazily from the cache, or None when the job's settings use C = I or no layer is
        left; {"layers", "collected"}: what was asked for and how many layers had to be collected)."""
        if not layers or not settings.mom2_adjustment:
            return None, None
        from goldenlayers.editing.stats import StatsCache, resolve_key_stats

        self.stats_cache = self.stats_cache or StatsCache()
        before = self.stats_cache.collected
        with self.timeline.phase("key statistics"):
            C = resolve_key_stats(lm.model, lm.tokenizer, lm.adapter, settings, config.stats, layers,
                                  model_source=spec.source, name=spec.source, cache=self.stats_cache,
                                  batch_size=config.batch.stats, progress=self.progress, lazy=True)
        return C, dict(layers=layers, collected=self.stats_cache.collected - before)

    def out_store(self, run: RunDir) -> Store:
        """Where this worker writes cells: the main store alone, else its shard."""
        if self.world == 1:
            return run.store
        if run.path not in self._shards:
            self._shards[run.path] = run.shard(self.rank)
        return self._shards[run.path]

    # ---- jobs ----------------------------------------------------------------------------------------------
    def run_job(self, job: Job, run: RunDir) -> None:
        config = run.config
        spec = next(m for m in config.models if m.name == job.model)
        cases, proxy_ids = self.cases(config, job)
        _check_split(run, job, proxy_ids)
        self.record_skipped(run, job)
        lm = self.model(spec)
        if job.kind == "select":
            with self.timeline.phase("select"):
                run_select(config, job, lm.model, lm.tokenizer, [c for c in cases if c.case_id in proxy_ids],
                           run.store, self.progress)
            return
        if self.world == 1 and (run.path / "shards").is_dir():
            run.merge_shards()  # cells a crashed multi-worker session wrote count as done
        if job.kind == "bruteforce":
            n = lm.adapter.n_layers(lm.model)
            bf = config.selectors.bruteforce.layers
            layers = list(range(n)) if bf == "all" else [lm.adapter.check_layer(lm.model, x) for x in bf]
            selector = "bruteforce"
            todo = cases if job.split == "all" else [c for c in cases if c.case_id in proxy_ids]
        elif job.selector == "bruteforce":
            selector, layer = bruteforce_pick(config, run.store, job.model, job.dataset, job.method)
            layers, todo = [layer], [c for c in cases if c.case_id not in proxy_ids]
        else:
            selector, layer = chosen_layer(config, run.store, job.model, job.dataset, job.selector)
            layers, todo = [layer], [c for c in cases if c.case_id not in proxy_ids]
        # every worker reads the same done cells (shards were merged before the job), so they split alike
        done = run.store.done_keys(job.model, job.dataset, job.method, selector)
        if job.kind != "bruteforce":  # test cells another selector's evaluation edited at this layer: copied
            shared = shared_cells(run.store, job, selector, layers[0], todo, done)
            if shared and self.rank == 0:
                self.out_store(run).add(results=shared)
            done |= {(r["case_id"], r["layer"]) for r in shared}
        if self.rank == 0:
            run.store.set_planned(job.key, len(todo) * len(layers))
        out = self.out_store(run)
        cache = self._caches.setdefault(job.model, _pre_cache())
        # C of the layers with cells left (every worker asks for the same ones: one collection serves all)
        settings = method_settings(config, job, lm.model, spec.source)
        C, got = self.key_stats(config, settings, spec, lm, [x for x in layers if any((c.case_id, x) not in done
                                                                                      for c in todo)])
        with self.timeline.phase(job.kind):
            stats = run_cells(config, job, lm.model, lm.tokenizer, todo, proxy_ids, layers, selector, done, out,
                              rank=self.rank, world=self.world, cache=cache, key_stats=C, settings=settings,
                              progress=self.progress)
        self.log.append(dict(job=job.key, layers=layers, **stats, key_stats=got))

    def close(self) -> None:
        for s in self._shards.values():
            s.close()
        self._shards.clear()
        self.release()


def _pre_cache():
    from goldenlayers.evaluation.scorer import PreCache

    return PreCache()


def make_engine(rank: int = 0, world: int = 1, device: str | None = None, progress: bool = True) -> RunEngine:
    """The project's engine (what `goldenlayers run` executes jobs with)."""
    return RunEngine(rank, world, device, progress)


def _check_split(run: RunDir, job: Job, proxy_ids: set[str]) -> None:
    """Refuse to add rows to a run whose stored rows put cases on the other side of the proxy/test split (a run
    started before splits became exact, docs/evaluation.md): mixing the two splits would spoil every table."""
    stored = run.store.query("SELECT DISTINCT case_id, split FROM results WHERE model=? AND dataset=?",
                             (job.model, job.dataset))
    moved = sorted({c for c, split in stored if (split == "proxy") != (c in proxy_ids)})
    if moved:
        raise ValueError(f"{job.model} / {job.dataset}: {len(moved)} stored case(s) (e.g. {moved[0]!r}) lie on the "
                         "other side of the proxy/test split this version computes (exactly round(proxy_fraction "
                         "x N) proxy cases); the run was started with the former split: start a new run")
