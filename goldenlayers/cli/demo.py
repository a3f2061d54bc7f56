"""`goldenlayers demo`: the main job on the embedded default (README quick start).

For each default model (GPT-2 and LLaMA architectures trained on the synthetic world): the world's statistics,
the model's greedy recall per relation, then the paper's experiment in small: LGA, CMA and brute force choose a
layer on a 10% proxy set of world edits, R-ROME edits the test set at each chosen layer, and a Table-2-shaped
table reports rewrite, rephrase, locality, portability, fluency, Overall and each selector's wall time (with the
brute-force per-layer rewrite curve, the ground truth LGA and CMA try to predict). A thin shell over
goldenlayers.datasets.synthetic, goldenlayers.selection.compare and goldenlayers.evaluation.
"""

from __future__ import annotations

import random
import time

import typer

from goldenlayers.cli.common import console, world_of_model


def _recall_table(model_name: str, recall: dict[str, float]):
    from rich.table import Table

    t = Table(title=f"{model_name}: greedy recall of the world's facts")
    for rel in recall:
        t.add_column(rel, justify="right")
    t.add_row(*(f"{v:.3f}" for v in recall.values()))
    return t


def _curve_table(sel):
    from rich.table import Table

    t = Table(title=f"brute force on the proxy set: mean rewrite accuracy per layer (golden layer {sel.layer})")
    for layer in sel.table.layers:
        t.add_column(str(layer), justify="right")
    t.add_row(*(f"{sel.table.score_of(layer):.2f}" for layer in sel.table.layers))
    return t


def demo_command(
    models: str = typer.Option("default-gpt2,default-llama", help="comma-separated models to run"),
    cases: int = typer.Option(100, help="world edit cases per model (about 10% proxy, 90% test)"),
    recall_sample: int = typer.Option(3000, help="recall queries to check per model (0: all of them)"),
    editor: str = typer.Option("r-rome", help="editing method"),
    fluency: bool = typer.Option(True, help="measure fluency (100 sampled tokens per case, before and after)"),
    compare: bool = typer.Option(True, help="run the LGA / CMA / brute-force comparison"),
    seed: int = typer.Option(0, help="seed of the case sample and the proxy/test split"),
) -> None:
    """Run the toolkit end to end on the embedded default models (no download, CPU is fine)."""
    import torch

    from goldenlayers.cli.select import render_comparison
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.datasets.synthetic.recall import measure_recall
    from goldenlayers.models.loader import load_model
    from goldenlayers.selection.compare import compare_selectors

    start = time.perf_counter()
    torch.manual_seed(seed)
    for i, name in enumerate(m.strip() for m in models.split(",")):
        world = world_of_model(name)
        if i == 0:
            console.print(world.stats())
        lm = load_model(name)
        console.print(f"[bold]{name}[/bold]: {type(lm.model).__name__}, {lm.adapter.n_layers(lm.model)} layers, "
                      f"{sum(p.numel() for p in lm.model.parameters()) / 1e6:.2f}M parameters")
        queries = world.recall_queries()
        if recall_sample and recall_sample < len(queries):
            queries = random.Random(seed).sample(queries, recall_sample)
        with console.status(f"recall on {len(queries)} queries"):
            recall = measure_recall(lm.model, lm.tokenizer, world, queries=queries)
        console.print(_recall_table(name, recall))
        if not compare:
            continue
        split = split_cases(world.edit_cases(cases, seed=seed), proxy_fraction=0.1, seed=seed)
        cmp = compare_selectors(lm.model, lm.tokenizer, split.proxy, split.test, editor=editor, fluency=fluency,
                                model_name=name)
        console.print(_curve_table(cmp.selections["bruteforce"]))
        console.print(render_comparison(cmp, f"{name}: {editor} on {len(split.proxy)} proxy / {len(split.test)} "
                                              f"test world edits"))
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
