"""`goldenlayers realfacts`: build the real-world fact set, filter it to the facts a model knows, print the counts
per relation and export it in the CounterFact and KnowEdit formats (docs/realfacts.md).

A thin shell over goldenlayers.datasets.realfacts, mirroring `goldenlayers world`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def realfacts(
    model: str | None = typer.Option(None, help="model whose known facts are counted (a name or a local folder)"),
    known_only: bool = typer.Option(False, "--known-only", help="export only the facts --model knows"),
    limit: int | None = typer.Option(None, help="export at most this many cases (spread over the relations)"),
    seed: int = typer.Option(0, help="seed of target_new, the neighbourhood probes and the case order"),
    neighbours: int = typer.Option(5, help="same-relation locality probes per case"),
    batch_size: int = typer.Option(32, help="prompts per forward pass of the known-fact check"),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto"),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
    export_counterfact: Path | None = typer.Option(None, help="write the cases as ROME CounterFact JSON"),
    export_knowedit: Path | None = typer.Option(None, help="write the cases as KnowEdit wiki_counterfact JSON"),
    report: Path | None = typer.Option(None, help="write the per-relation counts (and dropped examples) as JSON"),
) -> None:
    """Build the real-world fact set (GeoNames countries and cities), count the facts a model knows, export it."""
    from rich.table import Table

    from goldenlayers.cli.common import fail, make_console
    from goldenlayers.datasets import realfacts as rf

    if known_only and model is None:
        fail("--known-only needs --model (the model whose known facts are kept)")
    if limit is not None and limit < 1:
        fail(f"--limit must be at least 1, got {limit}")
    con = make_console()
    try:
        geo = rf.load_geo()  # before the model: a missing package is said at once
    except rf.SourceMissingError as e:
        fail(str(e))
    lm = None
    if model is not None:
        from goldenlayers.models.loader import load_model

        try:
            lm = load_model(model, dtype=dtype, device=device)
        except (OSError, ValueError) as e:
            fail(f"--model {model}: {e}")
    data = rf.build_realfacts(lm, limit=limit, seed=seed, neighbours=neighbours, batch_size=batch_size,
                              geo=geo, known_only=known_only, progress=con.print if lm is not None else None)
    table = Table(title=f"real facts{f' known by {model}' if model else ''} (seed={seed})")
    for col in ("relation", "facts", "known", "dropped", "known by template"):
        table.add_column(col, justify="left" if col == "relation" else "right")
    for rel, c in data.counts.items():
        by_t = ", ".join(f"{t}:{n}" for t, n in sorted(c.by_template.items())) if model else "-"
        table.add_row(rel, str(c.facts), str(c.known) if model else "-", str(c.facts - c.known) if model else "-", by_t)
    total = sum(c.known for c in data.counts.values())
    table.add_row("all", str(len(data.facts)), str(total) if model else "-",
                  str(len(data.facts) - total) if model else "-", "")
    con.print(table)
    if export_counterfact:
        con.print(f"wrote {len(data.cases)} cases to {rf.export_counterfact(data, export_counterfact)} (CounterFact)")
    if export_knowedit:
        con.print(f"wrote {len(data.cases)} cases to {rf.export_knowedit(data.cases, export_knowedit)} "
                  "(KnowEdit wiki_counterfact)")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(data.report(), indent=1, ensure_ascii=False) + "\n")
        con.print(f"wrote {report}")


def register(app: typer.Typer) -> None:
    app.command("realfacts")(realfacts)
