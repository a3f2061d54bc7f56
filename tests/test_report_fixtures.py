"""TEST FIXTURES ONLY (no tests here): fabricated run-store rows for testing the report's rendering.

The numbers below are made up by a seeded generator so that the report code has something with a known answer
to render; they are never results of goldenlayers and are never shipped. The report tests recompute every
expected number independently from `Fabricated.bf` (plain numpy / scipy), not through goldenlayers.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dataclasses import dataclass, field

import numpy as np

from goldenlayers.runs import RunDir, plan, validate_config

DATASET_METRICS = {"zsre": ("rewrite", "rephrase", "locality", "portability"),
                   "wikibio": ("rewrite", "locality", "fluency")}


@dataclass
class Fabricated:
    run: RunDir
    layers: list[int]
    # (model, dataset, metric) -> {case_id: (L,) values}; split[(model, dataset)][case_id] = "proxy" | "test"
    bf: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    picks: dict = field(default_factory=dict)  # (model, dataset, method, selector) -> layer


def fabricate_run(root, models=("tiny-a", "tiny-b"), n_cases=20, n_layers=6, seed=0, selectors=True) -> Fabricated:
    """A run directory whose store holds fabricated brute-force rows (r-rome, every layer and case), selector
    rows (lga fast, cma slow) and rows edited at the selectors' layers (r-rome and rome); every job of its plan is
    marked done."""
    cfg = validate_config(dict(
        name="fabricated", models=[dict(name=m) for m in models],
        datasets=[dict(name=d, file=f"{d}.json") for d in DATASET_METRICS],
        methods=[dict(name="r-rome"), dict(name="rome")],
        selectors=dict(lga={}, cma={}, bruteforce=dict(methods=["r-rome"]))))
    run = RunDir.create_or_resume(cfg, root)
    rng = np.random.default_rng(seed)
    fab = Fabricated(run, list(range(n_layers)))
    layers = np.arange(n_layers)
    results, sel_rows = [], []
    for mi, model in enumerate(models):
        for ds, metrics in DATASET_METRICS.items():
            centre = 2 + mi  # each model has its own golden region
            ids = [f"{ds}-{i}" for i in range(n_cases)]
            split = {c: ("proxy" if i < max(2, n_cases // 5) else "test") for i, c in enumerate(ids)}
            fab.split[(model, ds)] = split
            for metric in metrics:
                vals = {}
                for c in ids:
                    shift = rng.integers(-1, 2)
                    if metric == "fluency":
                        v = 5.0 + 0.1 * np.abs(layers - 1) + rng.normal(0, 0.05, n_layers)
                    elif metric == "locality":
                        v = np.clip(0.6 + 0.06 * layers + rng.normal(0, 0.03, n_layers), 0, 1)
                    else:
                        v = np.clip(1.0 - 0.15 * np.abs(layers - centre - shift) + rng.normal(0, 0.02, n_layers),
                                    0, 1)
                    vals[c] = v
                    results += [dict(model=model, dataset=ds, case_id=c, method="r-rome", selector="bruteforce",
                                     layer=int(layer), metric=metric, value=float(v[layer]), split=split[c],
                                     seconds=2.0 + 0.1 * layer) for layer in layers]
                fab.bf[(model, ds, metric)] = vals
            if not selectors:
                continue
            for sel, secs, layer in (("lga", 0.4, centre), ("cma-mlp-w10", 30.0, centre + 2)):
                sel_rows += [dict(selector=sel, dataset=ds, model=model, layer=int(x), score=float(-abs(x - layer)),
                                  cases=len(ids) // 5, seconds=secs) for x in layers]
                for method, bump in (("r-rome", 0.0), ("rome", -0.05)):
                    fab.picks[(model, ds, method, sel)] = layer
                    for metric in metrics:
                        for c in ids:
                            if split[c] == "test":
                                results.append(dict(model=model, dataset=ds, case_id=c, method=method, selector=sel,
                                                    layer=layer, metric=metric, split="test", seconds=1.0,
                                                    value=float(fab.bf[(model, ds, metric)][c][layer] + bump)))
    run.store.add(results=results, selectors=sel_rows)
    for job in plan(cfg):  # a finished run: every job of its plan done
        run.store.mark_job(job.key, "done")
    return fab
