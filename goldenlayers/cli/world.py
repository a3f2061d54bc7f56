"""`goldenlayers world` (statistics and benchmark-format exports of the synthetic world) and `goldenlayers
train-world` (the recipe that trains the embedded default models; docs/world.md).

Both are thin shells over goldenlayers.datasets.synthetic (docs/design.md "House style" 6).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer


def world(
    people: int = typer.Option(1000, min=1, help="number of people (facts = 6 x people)"),
    seed: int = typer.Option(0, help="world seed (same seed, same world)"),
    cases: int = typer.Option(200, min=1, help="edit cases to export"),
    case_seed: int = typer.Option(0, help="seed that picks the exported edit cases"),
    export_knowedit: Path | None = typer.Option(None, help="write the cases as KnowEdit wiki_counterfact JSON"),
    export_counterfact: Path | None = typer.Option(None, help="write the cases as ROME CounterFact JSON"),
    save: Path | None = typer.Option(None, help="write the world's config (world.json) here"),
) -> None:
    """Build a synthetic world, print its statistics and optionally export edit cases."""
    from rich.table import Table

    from goldenlayers.cli.common import make_console
    from goldenlayers.datasets import synthetic as syn

    w = syn.build_world(people=people, seed=seed)
    con = make_console()
    table = Table(title=f"synthetic world (people={people}, seed={seed})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for k, v in w.stats().items():
        table.add_row(k, str(v))
    con.print(table)
    if export_knowedit or export_counterfact:
        chosen = w.edit_cases(cases, seed=case_seed)
        if export_knowedit:
            con.print(f"wrote {len(chosen)} cases to {syn.export_knowedit(chosen, export_knowedit)} (KnowEdit wiki_counterfact)")
        if export_counterfact:
            con.print(f"wrote {len(chosen)} cases to {syn.export_counterfact(w, chosen, export_counterfact)} (CounterFact)")
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        w.save(save)
        con.print(f"wrote {save}", soft_wrap=True)


def train_world(
    arch: str = typer.Option("gpt2", help="gpt2 | llama"),
    out: Path = typer.Option(..., help="output folder (safetensors, tokenizer, world.json, training.json)"),
    people: int = typer.Option(1000, min=1, help="people in the world"),
    seed: int = typer.Option(0, help="seed of the world and of training"),
    layers: int = typer.Option(8, min=1, help="transformer blocks"),
    d_model: int = typer.Option(128, min=1, help="residual width (d_ff = 4 x d_model unless --d-ff)"),
    d_ff: int | None = typer.Option(None, help="MLP width"),
    heads: int = typer.Option(4, min=1, help="attention heads"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    max_steps: int = typer.Option(20000, min=1, help="upper bound on optimiser steps"),
    batch_size: int = typer.Option(256, min=1, help="sentences per step"),
    lr: float = typer.Option(2e-3, help="peak AdamW learning rate (warm-up then cosine)"),
    eval_every: int = typer.Option(500, min=1, help="steps between recall checks"),
    target_recall: float = typer.Option(0.99, help="stop when greedy recall of all facts reaches this"),
    vocab_size: int = typer.Option(2048, min=1, help="BPE vocabulary size"),
) -> None:
    """Train a GPT-2- or LLaMA-architecture model from scratch on the synthetic world until it recalls its facts."""
    from goldenlayers.datasets.synthetic import build_world, train_world_model

    if arch not in ("gpt2", "llama"):
        raise typer.BadParameter(f"--arch must be gpt2 or llama, not {arch!r}")
    w = build_world(people=people, seed=seed)
    report = train_world_model(
        arch, w, out, n_layers=layers, d_model=d_model, device=device, max_steps=max_steps,
        target_recall=target_recall, seed=seed, d_ff=d_ff, heads=heads, batch_size=batch_size, lr=lr,
        eval_every=eval_every, vocab_size=vocab_size,
        command="goldenlayers " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    summary = {k: report[k] for k in ("steps", "seconds", "reached_target", "device", "parameters")}
    typer.echo(json.dumps({**summary, "recall": report["recall"]}, indent=1))
    if not report["reached_target"]:
        typer.echo(f"recall {report['recall']['all']:.4f} < target {target_recall}: raise --max-steps", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("world")(world)
    app.command("train-world")(train_world)
