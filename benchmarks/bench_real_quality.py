"""R-ROME editing quality on a real pretrained model, per layer: rewrite, rephrase and locality of real facts with a
settings preset, and the `generic` preset measured in the same run as the baseline (issue "settings that edit real
models well": rewrite >= 0.95 with locality >= 0.90 at a good layer, on >= 100 real facts the model knows).

    python benchmarks/bench_real_quality.py --model smollm2-135m --layers 2,4,6 --n-facts 120 --device cuda \\
        --data-file benchmarks/data/realfacts-smollm2-135m.json
    python benchmarks/bench_real_quality.py --model gemma3-270m --layers 2 --preset gemma3-small-stats \\
        --data-file benchmarks/data/realfacts-gemma3-270m.json --config 'clamp1={"clamp_norm_factor": 1.0}'

`--preset` defaults to the preset the model gets by itself (goldenlayers.editing.hparams.preset_choice, printed
with its reason); `--config LABEL=JSON` adds a variant of it with some settings overridden (repeatable: this is
how the presets were searched, docs/editing.md); `--baseline` (default generic, "none" to skip) is measured
first; `--as-optimised` also measures the preset with v* written as optimised on models whose MLP output is
normalised (Gemma 2/3, where ROME/R-ROME otherwise move v* along its ray: editing.rome.site_value), i.e. the
behaviour before that fix, in the same run. Settings with key statistics (mom2_adjustment) take C from `--stats` (default wikipedia-vital), collected
once over `--stats-tokens` tokens and cached. Cases: `--data-file` read by the project's loaders as `--dataset`
(default wiki_counterfact, KnowEdit's format), the first `--n-facts`; or `--dataset realfacts` without a file: the
project's real-fact set (goldenlayers.datasets.realfacts), the facts the model knows. Every
cell is one R-ROME edit of the unedited model (the v* of `--batch` cases optimised together, `edit_each`),
scored by the evaluator's CaseScorer (goldenlayers.evaluation: teacher-forced rewrite and rephrase accuracy,
locality as agreement with the unedited model, averaged per probe category then per case). Prints one row per
(configuration, layer) with whether the target is met, and appends each row to `--out` (JSON lines) as soon as
it is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

REWRITE_TARGET, LOCALITY_TARGET = 0.95, 0.90
METRICS = ("rewrite", "rephrase", "locality")


def parse_config(text: str) -> tuple[str, dict]:
    label, sep, raw = text.partition("=")
    if not sep or not label.strip():
        raise SystemExit(f"error: --config expects LABEL=JSON, got {text!r}")
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: --config {label}: not JSON ({e})") from None
    if not isinstance(overrides, dict):
        raise SystemExit(f"error: --config {label}: expected a JSON object of settings")
    return label.strip(), overrides


def measure(lm, cases, layer: int, hp, stats, batch: int, scorer, adapter=None) -> dict:
    """One (settings, layer) cell over all cases: mean metrics, failures, seconds."""
    import torch

    from goldenlayers.editing import edit_each

    sums = {m: [] for m in METRICS}
    failures = 0
    t0 = time.perf_counter()
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        try:
            for case, res in zip(chunk, edit_each(lm.model, lm.tokenizer, chunk, method="r-rome", layer=layer,
                                                  hparams=hp, stats=stats, adapter=adapter or lm.adapter, batch_size=batch,
                                                  name=lm.name), strict=True):
                try:
                    scores = scorer.score(case, scorer.pre(case))
                finally:
                    res.delta.restore()
                for m in METRICS:
                    if scores.get(m) is not None:
                        sums[m].append(float(scores[m]))
        except (ValueError, FloatingPointError, torch.linalg.LinAlgError) as e:
            failures += len(chunk)
            print(f"  layer {layer}: a batch failed: {e}", file=sys.stderr)
    row = {m: (sum(v) / len(v) if v else float("nan")) for m, v in sums.items()}
    row.update(cases=len(sums["rewrite"]), failures=failures, seconds=time.perf_counter() - t0)
    row["met"] = row["rewrite"] >= REWRITE_TARGET and row["locality"] >= LOCALITY_TARGET
    return row


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model name, folder or .gguf file (goldenlayers.models.load_model)")
    ap.add_argument("--data-file", help="real facts in the format of --dataset (none with --dataset realfacts: "
                                        "the project's real-fact set, the facts this model knows)")
    ap.add_argument("--dataset", default="wiki_counterfact")
    ap.add_argument("--n-facts", type=int, default=120)
    ap.add_argument("--layers", default="2,4,6", help="comma-separated layers")
    ap.add_argument("--preset", help="preset measured (default: the model's own)")
    ap.add_argument("--config", action="append", default=[], help="LABEL=JSON: a variant of --preset (repeatable)")
    ap.add_argument("--no-preset", action="store_true", help="measure only the baseline and the --config variants")
    ap.add_argument("--baseline", default="generic", help="preset measured first as the baseline ('none': skip)")
    ap.add_argument("--as-optimised", action="store_true",
                    help="also measure the preset with v* written as optimised where the model normalises the MLP "
                         "output (Gemma 2/3; by default ROME/R-ROME rescale it, editing.rome.site_value)")
    ap.add_argument("--stats", default="wikipedia-vital", help="text source of C for settings that use it")
    ap.add_argument("--stats-tokens", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=16, help="cases whose v* are optimised together")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", help="append every row to this JSON-lines file")
    a = ap.parse_args()

    from goldenlayers.datasets import load_dataset
    from goldenlayers.editing import resolve_settings
    from goldenlayers.editing.hparams import preset_choice
    from goldenlayers.editing.stats import StatsSettings, key_stats
    from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings
    from goldenlayers.models.loader import load_model

    layers = [int(x) for x in a.layers.split(",") if x.strip()]
    if a.data_file is None and a.dataset != "realfacts":
        raise SystemExit(f"error: --dataset {a.dataset} needs --data-file")
    configs = [parse_config(c) for c in a.config]
    lm = load_model(a.model, dtype=a.dtype, device=a.device)
    choice = preset_choice(lm.model, lm.name)
    preset = a.preset or choice.preset
    print(f"model {lm.name}: its own preset is {choice.preset} ({choice.reason}); measuring {preset}", flush=True)
    if a.data_file is None:
        from goldenlayers.cli.common import realfacts_cases

        cases = list(realfacts_cases(lm, a.n_facts))
    else:
        data = load_dataset(a.dataset, a.data_file, limit=a.n_facts)
        cases = list(data.cases)
        print(f"{len(cases)} cases from {a.data_file} ({data.report.summary()})", flush=True)
    raw = dataclasses.replace(lm.adapter, mlp_output_normalised=False)  # v* as optimised, not rescaled
    runs: list[tuple[str, str, dict, object]] = []
    if a.baseline != "none":
        runs.append((a.baseline, a.baseline, {}, None))
    if not a.no_preset:
        runs.append((preset, preset, {}, None))
        if a.as_optimised and lm.adapter.mlp_output_normalised:
            runs.append((f"{preset} (v* as optimised)", preset, {}, raw))
    runs += [(label, preset, overrides, None) for label, overrides in configs]
    scorer = CaseScorer(lm.model, lm.tokenizer, EvalSettings(metrics=METRICS))
    scorer.prepare(cases)
    stats = None
    print("| settings | layer | cases | rewrite | rephrase | locality | failures | seconds | target met |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for label, name, overrides, adapter in runs:
        hp = resolve_settings(None, "rome", name, overrides)
        use = None
        if hp.mom2_adjustment:
            if stats is None:
                t0 = time.perf_counter()
                stats = key_stats(lm.model, lm.tokenizer, lm.adapter, layers,
                                  StatsSettings(source=a.stats, tokens=a.stats_tokens), name=lm.name,
                                  progress=False)
                print(f"key statistics of layers {layers} from {a.stats} ({a.stats_tokens} tokens) in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
            use = stats
        for layer in layers:
            row = measure(lm, cases, layer, hp, use, a.batch, scorer, adapter)
            print(f"| {label} | {layer} | {row['cases']} | {row['rewrite']:.3f} | {row['rephrase']:.3f} | "
                  f"{row['locality']:.3f} | {row['failures']} | {row['seconds']:.1f} | "
                  f"{'yes' if row['met'] else 'no'} |", flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(dict(model=lm.name, settings=label, preset=name, overrides=overrides,
                                            v_star_rescaled=(adapter or lm.adapter).mlp_output_normalised,
                                            layer=layer, **row)) + "\n")


if __name__ == "__main__":
    main()
