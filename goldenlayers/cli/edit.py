"""`goldenlayers edit`: edit one fact into a model and show its greedy prediction before and after.

A thin shell over `goldenlayers.editing.edit` (docs/equations.md "Editing methods"): any HF causal LM path or the embedded
defaults, any registered method, the model's settings preset or a named one (`--preset`), settings overridden
with `--set key=value` (values parsed as JSON when they can be). Settings that use key statistics C get them
from the statistics cache, collected on a miss from `--stats` (default: the model's own synthetic world). Bad
input (subject not in the prompt, empty target, layer out of range, unknown method or preset, unusable
statistics or text source) prints one clear line and exits with status 2. Also lists the methods for
`goldenlayers ls`.
"""

from __future__ import annotations

import json

import typer

from goldenlayers.cli.common import PRESET_HELP, STATS_HELP, STATS_TOKENS_HELP


def _parse_settings(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set: expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def greedy(model, tok, prompt: str, max_new_tokens: int) -> str:
    """The model's greedy continuation of `prompt` (no sampling, no cache; short outputs only)."""
    import torch

    from goldenlayers.models.loader import model_device

    ids = torch.tensor([tok(prompt)["input_ids"]], device=model_device(model))
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if tok.eos_token_id is not None and int(nxt) == tok.eos_token_id:
                break
    return tok.decode(ids[0, start:].tolist(), skip_special_tokens=True)


RACE_CASES = 12  # proxy cases of the model's own world raced when no layer is given


def choose_layer(lm, model: str, method: str, hp, C, case, con) -> int:
    """No --layer and no preset layer: the race selector (goldenlayers.selection.race) picks one, on RACE_CASES
    cases of the model's synthetic world when it has one (their locality prompts count), else on the fact itself
    (rewrite only: the CLI fact has no locality prompts). Prints the choice and why."""
    from goldenlayers.cli.common import fail, model_folder
    from goldenlayers.cli.select import race_lines
    from goldenlayers.selection.race import race_scores

    proxy, where = [case], "the fact itself (rewrite only: it has no locality prompts)"
    try:
        if (model_folder(model) / "world.json").exists():
            from goldenlayers.datasets.synthetic.world import World

            proxy = World.load(model_folder(model) / "world.json").edit_cases(RACE_CASES, seed=0)
            where = f"{len(proxy)} cases of {model}'s world"
    except (typer.Exit, SystemExit, OSError, ValueError):
        pass
    try:
        table = race_scores(lm.model, lm.tokenizer, proxy, editor=method, hparams=hp, stats=C, progress=False,
                            model_name=lm.name)
    except (KeyError, ValueError) as e:
        fail(f"no layer given and the race selector could not choose one: {e}", option="--layer")
    chosen = table.meta["chosen"]
    con.print(f"no --layer and no layer in the settings of {method}: the race selector chose layer {chosen} on "
              f"{where} in {table.seconds:.1f} s (pass --layer N to skip this)", soft_wrap=True)
    con.print(race_lines(table.meta), soft_wrap=True)
    return chosen


def edit_command(
    subject: str = typer.Option(..., help="the subject as it appears in the prompt"),
    prompt: str = typer.Option(..., help="a prompt that mentions the subject, e.g. 'Ada Lovelace was born in'"),
    target: str = typer.Option(..., help="the new answer"),
    model: str = typer.Option("default-gpt2", help="embedded default name or any Hugging Face path"),
    method: str = typer.Option("r-rome", help="editing method (see `goldenlayers ls`)"),
    layer: int | None = typer.Option(None, help="layer to edit (ROME/R-ROME; default: the model's preset's, else "
                                                "the race selector's choice, printed with why)"),
    layers: str | None = typer.Option(None, help="comma-separated layer range for MEMIT/EMMET, e.g. 3,4,5"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override a setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, help=STATS_TOKENS_HELP),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto"),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
    max_new_tokens: int = typer.Option(8, help="length of the greedy prediction shown"),
) -> None:
    """Edit one fact (subject, prompt, target) and print the greedy prediction before and after."""
    from pydantic import ValidationError
    from rich.table import Table

    from goldenlayers.cases import CaseError, EditCase
    from goldenlayers.cli.common import (
        announce_model,
        check_layers,
        editing_settings,
        fail,
        load_model_or_fail,
        make_console,
    )
    from goldenlayers.editing import EditOrderError, StatsError, edit
    from goldenlayers.editing.sources import SourceError

    con = make_console()
    announce_model(model)
    try:
        case = EditCase(case_id="cli", dataset="cli", subject=subject, prompt=prompt, target_new=target)
        overrides = _parse_settings(set_)
    except (CaseError, typer.BadParameter) as e:
        fail(e)
    try:
        layer_list = [int(x) for x in layers.split(",") if x.strip()] if layers else None
    except ValueError:
        fail(f"expects comma-separated ints, got {layers!r}", option="--layers")
    lm = load_model_or_fail(model, dtype, device)
    check_layers(lm, layer_list or ([layer] if layer is not None else []), "--layers" if layer_list else "--layer")
    try:
        hp, C = editing_settings(lm, method, overrides, preset,
                                 layer_list or ([layer] if layer is not None else None), stats, stats_tokens, model)
    except (StatsError, SourceError, KeyError, ValueError) as e:
        fail(e, option="--set" if isinstance(e, ValidationError) else None)
    if layer is None and not layer_list and not hp.layers:
        layer = choose_layer(lm, model, method, hp, C, case, con)
    before = greedy(lm.model, lm.tokenizer, prompt, max_new_tokens)
    try:
        res = edit(lm.model, lm.tokenizer, case, method=method, layer=layer, layers=layer_list, hparams=hp, stats=C,
                   adapter=lm.adapter, name=lm.name)
    except (CaseError, StatsError, SourceError, IndexError, KeyError, ValueError, EditOrderError) as e:
        fail(e)
    after = greedy(lm.model, lm.tokenizer, prompt, max_new_tokens)
    d = res.diagnostics[0]
    table = Table(title=f"{res.method} at layer(s) {res.layers} of {lm.name}")
    table.add_column("")
    table.add_column("value")
    table.add_row("prompt", prompt)
    table.add_row("before", before)
    table.add_row("after", after)
    table.add_row("target", target)
    table.add_row("v* steps", f"{d.steps} (loss {d.losses[0]:.3f} -> {d.losses[-1]:.3f})")
    table.add_row("||v* - v_init||", f"{d.delta_norm:.4g} (||v_init|| {d.v_init_norm:.4g})")
    table.add_row("update norm", f"{res.delta.norm():.4g} (C: {res.covariance})")
    table.add_row("seconds", f"v* {res.seconds['values']:.2f}, solve {res.seconds['solve']:.2f}")
    con.print(table)


def register(app: typer.Typer) -> None:
    app.command("edit")(edit_command)
