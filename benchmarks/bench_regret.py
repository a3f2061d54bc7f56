"""Every layer selector scored against brute force (issue 14; docs/selection.md "Selectors against brute force").

One brute-force sweep of every case (proxy and test) at every layer is the ground truth; it is read from a run
directory (`--run`, what `goldenlayers run` stored: the bruteforce rows of --editor) or swept here and kept in
`--rows` (JSON lines, one finished (case, layer) cell per line: a killed sweep resumes where it stopped). Then for
each split seed (`--seeds`): the selectors choose a layer on the proxy split (timed here, on this device), and
each choice is scored on the test split (goldenlayers.selection.regret): test Overall at the chosen layer, regret
against the test golden layer, Spearman's rho of the selector's layer scores with the per-layer test Overall, and
cost = selector seconds / the sweep seconds of the test cells (the sweep's own per-cell times, same device).
It also writes the per-layer test means of every metric, Table 1 (golden vs sample-wise optimal, paired t-test) and
the proxy vs test golden layer of every metric.

    python benchmarks/bench_regret.py --model default-gpt2 --dataset world --limit 300 --rows /tmp/gpt2.jsonl \
        --out benchmarks/data/regret-default-gpt2.json
    python benchmarks/bench_regret.py --model smollm2-135m --dataset realfacts --limit 200 \
        --run runs/truth-smollm2 --out regret-smollm2.json      # the GPU run's sweep, selectors timed here
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

SELECTORS = "race,lga,lga-neg,lga-abs,lga-cosine,lga-cosine-neg,lga-max,lga-zscore,lga-nofence,lga-neg-nofence,cma"


def sweep_rows(lm, cases, editor, hp, path: Path | None, batch_size: int, stats=None) -> list[dict]:
    """Every case at every layer (rows with seconds), resumed from / appended to `path` (JSON lines)."""
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.selection.bruteforce import make_default_fns

    rows, done = [], set()
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            cell = json.loads(line)
            done.add((cell["case_id"], cell["layer"]))
            rows += cell["rows"]
    n = lm.adapter.n_layers(lm.model)
    fns = make_default_fns(lm.model, lm.tokenizer, editor, hp, name=lm.name, stats=stats)
    out = path.open("a") if path is not None else None

    def keep(cell):
        records = [dict(r.record(), seconds=cell.seconds) for r in cell.rows]
        rows.extend(records)
        if out is not None:
            out.write(json.dumps(dict(case_id=cell.case_id, layer=cell.layer, rows=records)) + "\n")
            out.flush()

    edit_cells(cases, range(n), skip=done, batch_size=batch_size, on_cell=keep, desc="ground truth sweep",
               **fns.kwargs())
    return rows


def retime_sweep(lm, test, editor, hp, stats, k: int) -> dict:
    """Seconds of a brute-force sweep of `test` at every layer, estimated on this device now: the unedited model's
    scores of every case once, then every case at `k` evenly spaced layers, one batch per layer as the sweep edits
    them; sweep = unedited + mean layer time x layers."""
    import torch

    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.selection.bruteforce import make_default_fns

    def now():
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    n = lm.adapter.n_layers(lm.model)
    layers = sorted({int(x) for x in np.linspace(0, n - 1, k).round()})
    fns = make_default_fns(lm.model, lm.tokenizer, editor, hp, name=lm.name, stats=stats)
    edit_cells(test[:1], [layers[0]], batch_size=1, progress=False, **fns.kwargs())  # warm-up (kernels, graphs)
    t = now()
    for case in test:
        fns.pre_fn(case)
    pre = now() - t
    per = []
    for layer in layers:
        t = now()
        edit_cells(test, [layer], batch_size=len(test), progress=False, **fns.kwargs())
        per.append(now() - t)
    return dict(layers=layers, layer_seconds=per, pre_seconds=pre, sweep_seconds=pre + float(np.mean(per)) * n)


def run_rows(run: Path, model: str, editor: str) -> list[dict]:
    from goldenlayers.runs.store import Store

    store = Store(run / "store.sqlite")
    return [dict(case_id=r["case_id"], layer=r["layer"], metric=r["metric"], value=r["value"],
                 seconds=r.get("seconds") or 0.0)
            for r in store.rows("results", model=model, method=editor, selector="bruteforce")]


def analyse(rows, proxy_ids, test_ids, spec=None) -> dict:
    """Per-layer test curves, Table 1 per metric (test set) and proxy vs test golden layers per metric."""
    from goldenlayers.selection.golden import (
        OVERALL,
        compare_golden,
        higher_is_better,
        proxy_transfer,
    )
    from goldenlayers.selection.regret import GroundTruth
    from goldenlayers.selection.table import LayerScores

    test = [r for r in rows if r["case_id"] in test_ids]
    proxy = [r for r in rows if r["case_id"] in proxy_ids]
    truth, ptruth = GroundTruth.from_rows(test, spec=spec), GroundTruth.from_rows(proxy, spec=spec)
    table1, transfer = [], []
    for m in truth.means:
        tm = LayerScores.from_rows(test, m)
        table1.append(compare_golden(tm, higher_is_better=higher_is_better(m)).row())
        if m not in ptruth.means:  # no proxy case has the metric (e.g. portability on a small proxy set)
            continue
        t = proxy_transfer(LayerScores.from_rows(proxy, m), tm, higher_is_better(m))
        transfer.append(dict(metric=m, proxy_layer=t.proxy_layer, test_layer=t.test_layer,
                             at_proxy=t.proxy_score, at_test=t.test_score, gap=t.gap))
    i = truth.layers.index(ptruth.golden[OVERALL])
    transfer.append(dict(metric=OVERALL, proxy_layer=ptruth.golden[OVERALL], test_layer=truth.golden[OVERALL],
                         at_proxy=float(truth.overall[i]), at_test=float(truth.overall.max()),
                         gap=float(truth.overall.max() - truth.overall[i])))
    curves = dict(layers=truth.layers, overall=[float(x) for x in truth.overall],
                  **{m: [float(x) for x in v] for m, v in truth.means.items()})
    return dict(truth=truth, curves=curves, table1=table1, transfer=transfer)


def report(paths: list[Path]) -> str:
    """Markdown tables of result files: per model, each selector's layer / test Overall / regret / rho / cost for
    every split seed, and the mean regret, rho and cost over the seeds."""
    out = []
    for path in paths:
        r = json.loads(path.read_text())
        seeds = r["seeds"]
        first = next(iter(seeds.values()))
        out.append(f"**{r['model']}** ({r['editor']}, preset {r['preset']}, {r['cases']} {r['dataset']} cases: "
                   f"{first['proxy']} proxy / {first['test']} test; device {r['device']}; test golden layer (Overall) "
                   f"per seed: {', '.join(str(v['golden']['overall']) for v in seeds.values())})\n")
        out.append("| selector | " + " | ".join(f"seed {k}: layer, Overall, regret, rho, cost" for k in seeds)
                   + " | mean regret | mean rho | mean cost |")
        out.append("|---" * (len(seeds) + 4) + "|")
        names = list(dict.fromkeys(s["selector"] for v in seeds.values() for s in v["selectors"]))
        for name in names:
            cells, reg, rho, cost = [], [], [], []
            for v in seeds.values():
                s = next((s for s in v["selectors"] if s["selector"] == name), None)
                if s is None:
                    cells.append("-")
                    continue
                rh = s["spearman"] if s["spearman"] is not None else float("nan")
                cells.append(f"{s['layer']}, {s['overall']:.3f}, {s['regret']:.3f}, {rh:+.2f}, {s['cost']:.4f}")
                reg.append(s["regret"])
                rho.append(rh)
                cost.append(s["cost"])
            out.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(reg):.4f} | {np.nanmean(rho):+.2f} | "
                       f"{np.mean(cost):.4f} |")
        c = first["curves"]
        out.append(f"\nPer-layer test means (seed {next(iter(seeds))}), layers {c['layers'][0]}-{c['layers'][-1]}:\n")
        out += [f"- {m}: " + " ".join(f"{x:.2f}" for x in c[m]) for m in c if m != "layers"]
        out.append("\n| metric | golden layer (test) | sample-wise optimal | golden | different (paired t-test) | p |"
                   " proxy golden layer | test mean there | gap |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        transfer = {t["metric"]: t for t in first["transfer"]}
        for t1 in first["table1"]:
            t = transfer.get(t1["metric"], {})
            out.append(f"| {t1['metric']} | {t1['golden_layer']} | {t1['sample_wise_optimal']} | {t1['golden']} | "
                       f"{t1['statistical_difference']} | {t1['p']:.3g} | {t.get('proxy_layer', '-')} | "
                       f"{t.get('at_proxy', float('nan')):.4f} | {t.get('gap', float('nan')):.4f} |")
        t = transfer["overall"]
        out.append(f"| overall | {t['test_layer']} | | | | | {t['proxy_layer']} | {t['at_proxy']:.4f} | "
                   f"{t['gap']:.4f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, nargs="+", default=None, help="print markdown tables of result files")
    ap.add_argument("--model", default="default-gpt2")
    ap.add_argument("--dataset", default="world")
    ap.add_argument("--data-file", default=None)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--editor", default="r-rome")
    ap.add_argument("--preset", default=None, help="editing preset (default: the model's own)")
    ap.add_argument("--stats", default=None, help="text source of the key statistics C when the preset uses them "
                    "(e.g. wikipedia-vital); collected before any selector is timed")
    ap.add_argument("--rows", type=Path, default=None, help="JSON-lines file of the sweep (read, resumed, written)")
    ap.add_argument("--run", type=Path, default=None, help="run directory whose bruteforce rows are the sweep")
    ap.add_argument("--run-model", default=None, help="the model's name in the run (default --model)")
    ap.add_argument("--selectors", default=SELECTORS)
    ap.add_argument("--seeds", default="0", help="split seeds, comma-separated")
    ap.add_argument("--proxy-fraction", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None, help="JSON result file")
    ap.add_argument("--no-selectors", action="store_true", help="only the sweep and its analysis")
    ap.add_argument("--time-layers", type=int, default=0, help="time the test sweep again here at this many evenly "
                    "spaced layers (plus the unedited model's scores once) and use it, scaled to every layer, as the "
                    "cost denominator: for a sweep whose stored times were measured with other jobs sharing the GPU")
    a = ap.parse_args()
    if a.report:
        print(report(a.report))
        return

    from goldenlayers.cli.common import cases_and_model
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.editing import get_method, resolve_settings
    from goldenlayers.editing.hparams import preset_choice
    from goldenlayers.selection import select_layer
    from goldenlayers.selection.regret import score_selector

    cases, lm = cases_and_model(a.dataset, a.data_file, a.limit, a.model, a.device)
    hp = resolve_settings(lm.model, get_method(a.editor).family, a.preset, name=lm.name)
    preset = a.preset or preset_choice(lm.model, lm.name).preset
    print(f"{lm.name}: {len(cases)} cases, {lm.adapter.n_layers(lm.model)} layers, {a.editor} preset {preset}",
          flush=True)
    stats = None
    if hp.mom2_adjustment:  # C of every layer, before any timing (brute force's rows were edited with the same C)
        from goldenlayers.editing.hparams import StatsSettings
        from goldenlayers.editing.stats import resolve_key_stats

        stats = resolve_key_stats(lm.model, lm.tokenizer, lm.adapter, hp, StatsSettings(source=a.stats),
                                  list(range(lm.adapter.n_layers(lm.model))), model_source=a.model, name=lm.name,
                                  lazy=False, progress=False)
    t0 = time.perf_counter()
    rows = run_rows(a.run, a.run_model or a.model, a.editor) if a.run else \
        sweep_rows(lm, cases, a.editor, hp, a.rows, a.batch_size, stats)
    print(f"sweep rows: {len(rows)} ({time.perf_counter() - t0:.1f} s here)", flush=True)
    result = dict(model=lm.name, dataset=a.dataset, cases=len(cases), editor=a.editor, preset=preset,
                  hparams=hp.model_dump(), device=str(next(lm.model.parameters()).device), seeds={})
    seeds = [int(s) for s in a.seeds.split(",")]
    retimed = retime_sweep(lm, split_cases(cases, proxy_fraction=a.proxy_fraction, seed=seeds[0]).test, a.editor, hp,
                           stats, a.time_layers) if a.time_layers else None
    if retimed:
        result["retimed_sweep"] = retimed
        print(f"test sweep retimed here: {retimed['sweep_seconds']:.1f} s (layers {retimed['layers']}: "
              f"{', '.join(f'{x:.2f}' for x in retimed['layer_seconds'])} s; unedited scores "
              f"{retimed['pre_seconds']:.2f} s)", flush=True)
    for seed in seeds:
        split = split_cases(cases, proxy_fraction=a.proxy_fraction, seed=seed)
        proxy_ids, test_ids = {c.case_id for c in split.proxy}, {c.case_id for c in split.test}
        an = analyse(rows, proxy_ids, test_ids)
        truth = an.pop("truth")
        truth.seconds = retimed["sweep_seconds"] if retimed else \
            sum({(r["case_id"], r["layer"]): r["seconds"] for r in rows if r["case_id"] in test_ids}.values())
        print(f"seed {seed}: {len(split.proxy)} proxy / {len(split.test)} test; test golden (Overall) "
              f"{truth.golden['overall']} ({truth.overall.max():.4f}); test sweep {truth.seconds:.1f} s", flush=True)
        scored = []
        for name in ([] if a.no_selectors else a.selectors.split(",")):
            try:
                sel = select_layer(lm.model, lm.tokenizer, split.proxy, name, editor=a.editor, hparams=hp,
                                   model_name=lm.name, progress=False, batch_size=a.batch_size, stats=stats)
            except ValueError as e:
                print(f"  {name}: no layer ({e})", flush=True)
                continue
            s = score_selector(name, sel.layer, truth, sel.seconds, sel.table.layers, sel.table.scores).row()
            s["meta"] = {k: v for k, v in sel.table.meta.items() if k in ("rounds", "planned_cells", "budget_cells", "smooth",
                                                                         "over_budget")}
            scored.append(s)
            result["seeds"][seed] = dict(proxy=len(split.proxy), test=len(split.test), sweep_seconds=truth.seconds,
                                         golden=truth.golden, selectors=scored, **an)
            write(a.out, result)
            print(f"  {name:15s} layer {s['layer']:3d}  overall {s['overall']:.4f}  regret {s['regret']:.4f}  "
                  f"rho {s['spearman']:+.3f}  cost {s['cost']:.4f}  ({s['seconds']:.1f} s)", flush=True)
        result["seeds"][seed] = dict(proxy=len(split.proxy), test=len(split.test), sweep_seconds=truth.seconds,
                                     golden=truth.golden, selectors=scored, **an)
        write(a.out, result)


def write(path: Path | None, result: dict) -> None:
    """The result so far as JSON (NaN written as null)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (float, np.floating)):
            return None if math.isnan(x) else float(x)
        if isinstance(x, np.integer):
            return int(x)
        return x
    path.write_text(json.dumps(clean(result), indent=1, default=str))


if __name__ == "__main__":
    main()
