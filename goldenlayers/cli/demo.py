"""`goldenlayers demo`: the main job on the embedded default (README quick start), as a resumable run.

For each default model (GPT-2 and LLaMA architectures trained on the synthetic world): the world's statistics and
the model's greedy recall per relation; then the paper's experiment in small as a run directory
(`<output-dir>/demo`, the config of configs/demo.yaml, goldenlayers.runs): LGA and CMA choose a layer on a 10% proxy
set of world edits (paper section 5), brute force edits every case at every layer with R-ROME (section 4: the
ground truth), R-ROME edits the test set at each selector's layer; then, from the store's rows, the brute-force
per-layer rewrite curve on the proxy set and a Table-2-shaped comparison (rewrite, rephrase, locality,
portability, fluency, Overall, each selector's wall time), and the full report (`<run>/report/report.html`).
Running it again resumes the run (nothing finished is redone). Options other than the defaults give a run
named `demo-<hash of the config>`, so they never clash with the default run.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import typer

from goldenlayers.cli.common import console, world_of_model

DEFAULTS = dict(models="default-gpt2,default-llama", cases=80, editor="r-rome", fluency=True, seed=0)


def demo_config(models: str = DEFAULTS["models"], cases: int = DEFAULTS["cases"], editor: str = DEFAULTS["editor"],
                fluency: bool = DEFAULTS["fluency"], seed: int = DEFAULTS["seed"], output_dir: str = "runs") -> dict:
    """The demo's experiment config (configs/demo.yaml for the defaults). Brute force scores every metric but
    fluency (100 sampled tokens per cell would dominate the run); the selectors' test edits score all of them."""
    metrics = ["rewrite", "rephrase", "locality", "portability"] + (["fluency"] if fluency else [])
    cfg = dict(
        name="demo", description="goldenlayers demo: the default models on world edits, LGA vs CMA vs brute force",
        models=[dict(name=m.strip()) for m in models.split(",") if m.strip()],
        datasets=[dict(name="world", limit=cases)], split=dict(proxy_fraction=0.1, seed=seed),
        methods=[dict(name=editor)],
        selectors=dict(lga=dict(variant="dot", k=1.5), cma=dict(kind="mlp", window=10, samples=10),
                       bruteforce=dict(layers="all", metrics=metrics[:4])),
        metrics=metrics, seeds=dict(torch=seed, templates=seed, fluency=seed), output_dir=output_dir)
    if (models, cases, editor, fluency, seed) != tuple(DEFAULTS.values()):
        digest = hashlib.sha1(json.dumps({k: v for k, v in cfg.items() if k != "output_dir"},
                                         sort_keys=True).encode()).hexdigest()[:8]
        cfg["name"] = f"demo-{digest}"
    return cfg


def _recall_table(model_name: str, recall: dict[str, float]):
    from rich.table import Table

    t = Table(title=f"{model_name}: greedy recall of the world's facts")
    for rel in recall:
        t.add_column(rel, justify="right")
    t.add_row(*(f"{v:.3f}" for v in recall.values()))
    return t


def _curve_table(data, model: str, editor: str):
    """Brute force's proxy-set mean rewrite per layer, from the store."""
    from rich.table import Table

    m = data.matrix(model, "world", editor, "rewrite", "proxy")
    if m is None:
        return f"{model}: no brute-force rows on the proxy set"
    means = m.means()
    golden = m.layers[int(means.argmax())]
    t = Table(title=f"brute force on the proxy set: mean rewrite accuracy per layer (golden layer {golden})")
    for layer in m.layers:
        t.add_column(str(layer), justify="right")
    t.add_row(*(f"{v:.2f}" for v in means))
    return t


def _comparison(data, model: str, editor: str) -> SimpleNamespace:
    """Table-2 rows (one per selector) from the store, in the shape render_comparison prints."""
    from goldenlayers.evaluation.metrics import METRICS
    from goldenlayers.evaluation.overall import overall, overall_metrics, overall_note
    from goldenlayers.report.data import selector_family
    from goldenlayers.report.tables import selector_means

    means = {sel: (layers, m) for (meth, sel), (layers, m) in selector_means(data, model, "world").items()
             if meth == editor}
    times = data.runtimes(model).get("world", {})
    bf = times.get("bruteforce")
    rows = []
    for sel in sorted(means, key=lambda s: ("lga", "cma", "bruteforce").index(selector_family(s))):
        layers, m = means[sel]
        sec = times.get(selector_family(sel))
        rows.append(dict(method=editor, selector=sel, layer=layers, overall=overall(m), seconds=sec,
                         speedup_vs_bruteforce=bf / sec if bf and sec else None,
                         **{k: m.get(k) for k in ("rewrite", "rephrase", "locality", "portability", "fluency")}))
    used = [k for k in METRICS if any(k in overall_metrics(m) for _, m in means.values())]
    partial = any(len(overall_metrics(m)) < len(used) for _, m in means.values())
    return SimpleNamespace(rows=rows, normalisation=overall_note(used) + (
        "; a row without a metric averages the others" if partial else ""))


def demo_command(
    models: str = typer.Option(DEFAULTS["models"], help="comma-separated models to run"),
    cases: int = typer.Option(DEFAULTS["cases"], min=1, help="world edit cases per model (exactly 10% proxy, rounded; the rest test)"),
    recall_sample: int = typer.Option(3000, min=0, help="recall queries to check per model (0: all of them)"),
    editor: str = typer.Option(DEFAULTS["editor"], help="editing method"),
    fluency: bool = typer.Option(DEFAULTS["fluency"], help="measure fluency of the selectors' test edits"),
    compare: bool = typer.Option(True, help="run the LGA / CMA / brute-force experiment and its report"),
    seed: int = typer.Option(DEFAULTS["seed"], help="seed of the case sample, the proxy/test split and torch"),
    output_dir: Path = typer.Option(Path("runs"), help="where the run directory goes (<output-dir>/demo)"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Run the toolkit end to end on the embedded default models (no download, CPU is fine)."""
    import torch

    from goldenlayers.cli.common import load_model_or_fail
    from goldenlayers.datasets.synthetic.recall import measure_recall

    start = time.perf_counter()
    torch.manual_seed(seed)
    names = [m.strip() for m in models.split(",") if m.strip()]
    console.print("models: " + ", ".join(f"[bold]{n}[/bold]" for n in names), soft_wrap=True)
    for i, name in enumerate(names):
        world = world_of_model(name)
        if i == 0:
            console.print(world.stats())
        lm = load_model_or_fail(name)
        console.print(f"[bold]{name}[/bold]: {type(lm.model).__name__}, {lm.adapter.n_layers(lm.model)} layers, "
                      f"{sum(p.numel() for p in lm.model.parameters()) / 1e6:.2f}M parameters")
        queries = world.recall_queries()
        if recall_sample and recall_sample < len(queries):
            queries = random.Random(seed).sample(queries, recall_sample)
        with console.status(f"recall on {len(queries)} queries"):
            recall = measure_recall(lm.model, lm.tokenizer, world, queries=queries)
        console.print(_recall_table(name, recall))
        del lm
    if compare:
        _experiment(names, cases, editor, fluency, seed, output_dir, progress)
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s", soft_wrap=True)


def _experiment(names, cases, editor, fluency, seed, output_dir, progress) -> None:
    from goldenlayers.cli.run import execute_config
    from goldenlayers.cli.select import render_comparison
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.report import report
    from goldenlayers.report.data import RunData
    from goldenlayers.runs import RunDir, validate_config

    cfg = validate_config(demo_config(",".join(names), cases, editor, fluency, seed, str(output_dir)), "demo")
    run, _ = execute_config(cfg, make_run=lambda: RunDir.create_or_resume(cfg, command="goldenlayers demo"),
                            progress=progress)
    with RunDir.open(run.path) as run:
        data = RunData(run.store)
        for name in names:
            split = split_cases(world_of_model(name).edit_cases(cases, seed=seed), proxy_fraction=0.1, seed=seed)
            console.print(_curve_table(data, name, editor))
            console.print(render_comparison(_comparison(data, name, editor),
                                            f"{name}: {editor} on {len(split.proxy)} proxy / {len(split.test)} "
                                            "test world edits"))
        out = report(run)
    console.print(f"report: {out.html} ({len(out.tables)} tables, {len(out.figures)} figures)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
