"""The three job kinds of a run, executed for real (paper section 4 and Appendix A; docs/equations.md "Layer selection").

- `run_select`: a configured selector (any registered one: the race, LGA (paper section 5.1) and its readings, CMA
  (ROME's causal tracing, the paper's baseline), ...; goldenlayers.selection.registry) scores every layer on the
  proxy split; one selector row per layer (score, cases, seconds of the whole selector run).
- `run_cells`: the brute-force sweep (section 4: every case at every configured layer, the ground truth of Tables 1
  and 3-8) and the evaluation at a selector's chosen layer (Tables 2, 9, 10) are the same loop over (case, layer)
  cells: the package's cell loop (`goldenlayers.evaluation.cells.edit_cells`, v* batched) with the real editor
  and `CaseScorer`, each finished cell
  written at once in one `store.add` call (its metric rows with pre-edit values, or its failure), cells already in
  the store skipped (resume), and, with several workers, only this worker's share of the remaining cells.
- key statistics: when the method's settings need C (mom2_adjustment), the engine passes `run_cells` C of the
  layers that still have cells to do (`method_settings`, then goldenlayers.editing.stats.resolve_key_stats;
  collected once into the shared cache, then read back).
- `chosen_layer`: the layer a selector chose, recomputed from its stored rows with the selector's own choice (LGA:
  the Tukey-fenced pick with the config's k and top; otherwise the argmax), so it is the same in every process and
  after any resume;
  `bruteforce_pick`: likewise brute force's proxy golden layer of `selectors.bruteforce.pick`.
- `shared_cells`: an evaluation job does not edit again a test cell that another selector's evaluation already
  edited at the same layer (same model, dataset, method, case and layer: the edit and its scores do not depend on
  which selector chose the layer); that cell's rows are copied under this job's selector, seconds included.
"""

from __future__ import annotations

import torch

from goldenlayers.runs.config import ExperimentConfig
from goldenlayers.runs.plan import Job
from goldenlayers.runs.store import Store
from goldenlayers.selection.table import LayerScores


def selector_name(config: ExperimentConfig, family: str) -> str:
    """The selector label of rows written by the configured selector `family`: its settings' name ("lga",
    "lga-cosine", "cma-mlp-w10", "race"; goldenlayers.selection.registry.Selector.store_name); "bruteforce" ->
    "bruteforce-<pick>" for the test rows edited at its proxy pick."""
    from goldenlayers.selection.registry import get_selector

    if family == "bruteforce":  # the test rows edited at brute force's proxy pick (the sweep's own rows: "bruteforce")
        return f"bruteforce-{config.selectors.bruteforce.pick}"
    if family not in config.selectors:
        raise ValueError(f"layer selector {family!r} is not configured (configured: {config.selectors.names()})")
    return get_selector(family).store_name(config.selectors.settings(family))


def run_select(config: ExperimentConfig, job: Job, model, tok, proxy: list, store: Store, progress: bool) -> None:
    """Score every layer with the job's selector (any registered one, looked up in the registry, with its
    configured settings) on the proxy cases and store the rows (skipped when stored). A selector that edits (the
    race) edits with its `method` (default: the first configured method, with that method's hparams), C = I."""
    from dataclasses import replace

    from goldenlayers.selection.registry import SelectionInput, get_selector

    name = selector_name(config, job.selector)
    if any(True for _ in store.rows("selectors", selector=name, dataset=job.dataset, model=job.model)):
        return
    if not proxy:
        raise ValueError(f"{job.model} / {job.dataset}: the proxy split is empty; raise split.proxy_fraction")
    torch.manual_seed(config.seeds.torch)
    method = config.selectors[job.selector].method or config.methods[0].name
    inp = SelectionInput(model, tok, proxy, model_name=job.model, progress=progress, batch_size=config.batch.edit,
                         select_batch=config.batch.select, seed=config.seeds.torch, editor=method,
                         hparams=method_hparams(config, replace(job, method=method)))
    table = get_selector(job.selector).scores_fn(inp, config.selectors.settings(job.selector))
    rows = [dict(r, selector=name, dataset=job.dataset, model=job.model) for r in table.to_rows()]
    store.add(selectors=rows)


def chosen_layer(config: ExperimentConfig, store: Store, model: str, dataset: str, family: str) -> tuple[str, int]:
    """(selector name, chosen layer) of the configured selector `family` for model/dataset, recomputed from the
    store's selector rows with the selector's own choice and settings (LGA: the Tukey-fenced pick with its k and
    top; otherwise the argmax of the stored scores)."""
    from goldenlayers.selection.registry import get_selector

    name = selector_name(config, family)
    rows = list(store.rows("selectors", selector=name, dataset=dataset, model=model))
    if not rows:
        raise RuntimeError(f"no selector rows of {name!r} for {model} / {dataset}: its select job has not "
                           "finished (or failed; see the jobs table)")
    rows.sort(key=lambda r: r["layer"])
    table = LayerScores(name, dataset, model, [r["layer"] for r in rows], [r["score"] for r in rows],
                        cases=rows[0]["cases"])
    return name, get_selector(family).choose_layer(table, config.selectors.settings(family))[0]


def bruteforce_pick(config: ExperimentConfig, store: Store, model: str, dataset: str, method: str) -> tuple[str, int]:
    """("bruteforce-<pick>", the proxy golden layer of `selectors.bruteforce.pick`) from the stored brute-force
    rows of `method` on the proxy split (goldenlayers.selection.golden.golden_layers, Overall with the config's
    `selectors.bruteforce.overall` weights)."""
    from goldenlayers.evaluation.overall import OverallSpec
    from goldenlayers.selection.golden import golden_layers

    bf = config.selectors.bruteforce
    rows = list(store.rows("results", model=model, dataset=dataset, method=method, selector="bruteforce",
                           split="proxy"))
    if not rows:
        raise RuntimeError(f"no brute-force rows of {method} on the proxy split of {model} / {dataset}: its "
                           "bruteforce job has not finished (or failed; see the jobs table)")
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    golden = golden_layers({m: LayerScores.from_rows(rows, m) for m in metrics}, OverallSpec.parse(bf.overall))
    if bf.pick not in golden:
        raise RuntimeError(f"brute force scored no {bf.pick!r} on the proxy split (it scored {', '.join(metrics)})")
    return f"bruteforce-{bf.pick}", golden[bf.pick]


def method_hparams(config: ExperimentConfig, job: Job) -> dict:
    """The job's method overrides: the config's `hparams`, with template_seed = seeds.templates unless given."""
    method = next(m for m in config.methods if m.name == job.method)
    return {"template_seed": config.seeds.templates, **method.hparams}


def method_settings(config: ExperimentConfig, job: Job, model, name: str):
    """The job's typed editing settings (goldenlayers.editing.resolve_settings, once per job): the method's named
    `preset`, else the model's own, with the config's overrides; invalid hparams raise here, failing the job once
    instead of every cell. `mom2_adjustment` on them says whether the job needs key statistics C."""
    from goldenlayers.editing import resolve_settings

    method = next(m for m in config.methods if m.name == job.method)
    return resolve_settings(model, job.method, method.preset, method_hparams(config, job), name=name)


def shared_cells(store: Store, job: Job, selector: str, layer: int, cases: list, done: set) -> list[dict]:
    """Result rows of cells (case, layer) of this evaluation job that another selector's evaluation (never the
    brute-force sweep, whose metrics differ) already stored, relabelled as this job's selector; one source per case.
    Empty for a brute-force job."""
    if job.kind == "bruteforce":
        return []
    wanted = {c.case_id for c in cases if (c.case_id, layer) not in done}
    q = ("SELECT selector, case_id FROM results WHERE model=? AND dataset=? AND method=? AND layer=? AND split='test' "
         "AND selector NOT IN (?, 'bruteforce') GROUP BY selector, case_id ORDER BY selector, case_id")
    source: dict[str, str] = {}
    for other, case_id in store.query(q, (job.model, job.dataset, job.method, layer, selector)):
        if case_id in wanted:
            source.setdefault(case_id, other)
    rows = []
    for other in sorted(set(source.values())):
        rows += [dict(r, selector=selector) for r in store.rows("results", model=job.model, dataset=job.dataset,
                                                                  method=job.method, selector=other, layer=layer)
                 if source.get(r["case_id"]) == other]
    return rows


def cell_owner(todo: list[tuple[str, int]], rank: int, world: int) -> set[tuple[str, int]]:
    """The cells (case_id, layer) worker `rank` of `world` does: every world-th of the remaining cells."""
    return {cell for i, cell in enumerate(todo) if i % world == rank}


def run_cells(config: ExperimentConfig, job: Job, model, tok, cases: list, proxy_ids: set[str], layers: list[int],
              selector: str, done: set[tuple[str, int]], out: Store, *, rank: int = 0, world: int = 1,
              cache=None, key_stats=None, settings=None, progress: bool = True) -> dict:
    """Edit `cases` at `layers` with the job's method, score, and write each cell to `out` (see module doc).
    `done`: cells finished before (skipped). key_stats: {layer: C} for the editor (settings with
    mom2_adjustment need them; the engine gets them with goldenlayers.editing.stats.resolve_key_stats).
    settings: the job's typed settings (`method_settings`, resolved by the engine; resolved here when None).
    Returns {"cells": done now, "failures": n, "skipped": n}."""
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.metric_names import ALL_METRICS
    from goldenlayers.selection.bruteforce import make_default_fns

    spec = next(m for m in config.models if m.name == job.model)
    settings = settings or method_settings(config, job, model, spec.source)
    bf = config.selectors.bruteforce
    metrics = bf.metrics if job.kind == "bruteforce" and bf and bf.metrics is not None else config.metrics
    fns = make_default_fns(model, tok, job.method, settings, stats=key_stats, name=spec.source,
                           metrics=tuple(m for m in metrics if m in ALL_METRICS), cache=cache,
                           batch_size=config.batch.evaluate, seed=config.seeds.fluency)
    todo = [(c.case_id, layer) for layer in layers for c in cases if (c.case_id, layer) not in done]
    mine = cell_owner(todo, rank, world)
    skip = done | (set(todo) - mine)
    stats = dict(cells=0, failures=0)

    def on_cell(cell) -> None:
        split = "proxy" if cell.case_id in proxy_ids else "test"
        base = dict(model=job.model, dataset=job.dataset, case_id=cell.case_id, method=job.method)
        if cell.failure is not None:
            f = cell.failure
            out.add(failures=[dict(base, layer=f.layer, stage=f.stage, reason=f.reason)])
            stats["failures"] += 1
            return
        out.add(results=[dict(r.record(), **base, selector=selector, split=split) for r in cell.rows])
        stats["cells"] += 1

    torch.manual_seed(config.seeds.torch)
    res = edit_cells(cases, layers, batch_size=config.batch.edit, on_cell=on_cell, skip=skip, progress=progress,
                     desc=f"{job.kind} {job.model}/{job.dataset} {job.method} ({selector})", **fns.kwargs())
    return dict(stats, skipped=res.skipped)
