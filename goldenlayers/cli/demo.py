"""`goldenlayers demo`: the main job on the embedded default (README quick start), as a resumable run; with
`--model smollm2-135m` (or another real model) the same comparison on the real facts the model knows.

For each default model (GPT-2 and LLaMA architectures trained on the synthetic world): the world's statistics and
the model's greedy recall per relation; then the paper's experiment in small as a run directory
(`<output-dir>/demo`, the config of configs/demo.yaml, goldenlayers.runs): LGA and CMA choose a layer on a 10% proxy
set of world edits (paper section 5), brute force edits every proxy case at every layer with R-ROME (section 4;
`--truth`: every case, the ground truth), R-ROME edits the test set at each selector's layer and at brute force's
proxy golden layer; then, from the store's rows, the brute-force per-layer rewrite curve on the proxy set and
Table 2 (goldenlayers.report.tables.comparison: rewrite, rephrase, locality, portability, fluency, Overall, each
selector's wall time), and the full report (`<run>/report/report.html`).
Running it again resumes the run (nothing finished is redone). Options other than the defaults give a run
named `demo-<hash of the config>`, so they never clash with the default run.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import typer

from goldenlayers.cli.common import console, fail, world_of_model

DEFAULTS = dict(models="default-gpt2,default-llama", cases=80, editor="r-rome", fluency=True, seed=0, truth=False)


def demo_config(models: str = DEFAULTS["models"], cases: int = DEFAULTS["cases"], editor: str = DEFAULTS["editor"],
                fluency: bool = DEFAULTS["fluency"], seed: int = DEFAULTS["seed"], output_dir: str = "runs",
                dataset: str = "world", truth: bool = DEFAULTS["truth"]) -> dict:
    """The demo's experiment config (configs/demo.yaml for the defaults). Brute force sweeps the proxy cases and
    picks its golden layer of rewrite, where the test cases are then edited, like the selectors' layers (the
    paper's Table 2); truth=True sweeps every case instead (the test sweep gives the report's golden-layer
    tables and figures and every selector's regret). It scores every metric but fluency (100 sampled tokens per
    cell would dominate the run); the test edits at the chosen layers score all of them.
    dataset: "world" (the default models' synthetic world) or "realfacts" (the real facts a real model knows)."""
    metrics = ["rewrite", "rephrase", "locality", "portability"] + (["fluency"] if fluency else [])
    what = "the default models on world edits" if dataset == "world" else f"{models} on the real facts it knows"
    cfg = dict(
        name="demo", description=f"goldenlayers demo: {what}, LGA vs CMA vs brute force",
        models=[dict(name=m.strip()) for m in models.split(",") if m.strip()],
        datasets=[dict(name=dataset, limit=cases)], split=dict(proxy_fraction=0.1, seed=seed),
        methods=[dict(name=editor)],
        selectors=dict(lga=dict(variant="dot", k=1.5), cma=dict(kind="mlp", window=10, noise_samples=10),
                       bruteforce=dict(layers="all", metrics=metrics[:4], split="all" if truth else "proxy",
                                       pick="rewrite")),
        metrics=metrics, seeds=dict(torch=seed, templates=seed, fluency=seed), output_dir=output_dir)
    if (models, cases, editor, fluency, seed, truth) != tuple(DEFAULTS.values()) or dataset != "world":
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


def _curve_table(data, model: str, dataset: str, editor: str):
    """Brute force's proxy-set mean rewrite per layer, from the store."""
    from rich.table import Table

    m = data.matrix(model, dataset, editor, "rewrite", "proxy")
    if m is None:
        return f"{model}: no brute-force rows on the proxy set"
    means = m.scores  # the layer means of the per-case values
    golden = m.layers[int(means.argmax())]
    t = Table(title=f"brute force on the proxy set: mean rewrite accuracy per layer (golden layer {golden})")
    for layer in m.layers:
        t.add_column(str(layer), justify="right")
    t.add_row(*(f"{v:.2f}" for v in means))
    return t


def demo_command(
    models: str = typer.Option(DEFAULTS["models"], "--models", "--model",
                               help="comma-separated models to run: the embedded defaults (world edits), or real "
                                    "models such as smollm2-135m (the real facts each knows, docs/realfacts.md)"),
    cases: int = typer.Option(DEFAULTS["cases"], min=1, help="edit cases per model (exactly 10% proxy, rounded; the rest test)"),
    recall_sample: int = typer.Option(3000, min=0, help="recall queries to check per model (0: all of them)"),
    editor: str = typer.Option(DEFAULTS["editor"], help="editing method"),
    fluency: bool = typer.Option(DEFAULTS["fluency"], help="measure fluency of the selectors' test edits"),
    compare: bool = typer.Option(True, help="run the LGA / CMA / brute-force experiment and its report"),
    truth: bool = typer.Option(DEFAULTS["truth"], help="brute force on every case, not only the proxy set: the "
                               "report then has the test-set golden layers and each selector's regret (slower)"),
    seed: int = typer.Option(DEFAULTS["seed"], help="seed of the case sample, the proxy/test split and torch"),
    output_dir: Path = typer.Option(Path("runs"), help="where the run directory goes (<output-dir>/demo)"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Run the toolkit end to end on the embedded default models (no download, CPU is fine), or on a real model
    with the real facts it knows."""
    import torch

    from goldenlayers.cli.common import load_model_or_fail, model_folder
    from goldenlayers.datasets.synthetic.recall import measure_recall

    start = time.perf_counter()
    torch.manual_seed(seed)
    names = [m.strip() for m in models.split(",") if m.strip()]
    worlds = {n: (model_folder(n) / "world.json").exists() for n in names}
    if len(set(worlds.values())) > 1:
        fail(f"mix of models with a synthetic world ({', '.join(n for n, w in worlds.items() if w)}) and without "
             f"({', '.join(n for n, w in worlds.items() if not w)}); give the two kinds in separate demos",
             option="--models")
    dataset = "world" if all(worlds.values()) else "realfacts"
    console.print("models: " + ", ".join(f"[bold]{n}[/bold]" for n in names), soft_wrap=True)
    for i, name in enumerate(names):
        lm = load_model_or_fail(name)
        console.print(f"[bold]{name}[/bold]: {type(lm.model).__name__}, {lm.adapter.n_layers(lm.model)} layers, "
                      f"{sum(p.numel() for p in lm.model.parameters()) / 1e6:.2f}M parameters")
        if dataset == "realfacts":  # the run keeps the real facts the model knows (docs/realfacts.md)
            del lm
            continue
        world = world_of_model(name)
        if i == 0:
            console.print(world.stats())
        queries = world.recall_queries()
        if recall_sample and recall_sample < len(queries):
            queries = random.Random(seed).sample(queries, recall_sample)
        with console.status(f"recall on {len(queries)} queries"):
            recall = measure_recall(lm.model, lm.tokenizer, world, queries=queries)
        console.print(_recall_table(name, recall))
        del lm
    if compare:
        _experiment(names, dataset, cases, editor, fluency, seed, truth, output_dir, progress)
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s", soft_wrap=True)


def _experiment(names, dataset, cases, editor, fluency, seed, truth, output_dir, progress) -> None:
    from goldenlayers.cli.compare import render_comparison, split_sizes
    from goldenlayers.cli.run import execute_config
    from goldenlayers.report import report
    from goldenlayers.report.data import RunData
    from goldenlayers.report.tables import comparison
    from goldenlayers.runs import RunDir, validate_config

    cfg = validate_config(demo_config(",".join(names), cases, editor, fluency, seed, str(output_dir), dataset,
                                      truth), "demo")
    run, _ = execute_config(cfg, make_run=lambda: RunDir.create_or_resume(cfg, command="goldenlayers demo"),
                            progress=progress)
    with RunDir.open(run.path) as run:
        data = RunData(run.store)
        what = "world edits" if dataset == "world" else "real facts it knows"
        for name in names:
            proxy, test = split_sizes(run.store, name, dataset)
            console.print(_curve_table(data, name, dataset, editor))
            console.print(render_comparison(comparison(data, name, dataset, editor),
                                            f"{name}: {editor} on {proxy} proxy / {test} test {what}"))
        out = report(run)
    console.print(f"report: {out.html} ({len(out.tables)} tables, {len(out.figures)} figures)", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
