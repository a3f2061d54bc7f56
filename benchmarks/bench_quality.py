"""R-ROME editing quality on an embedded default model: rewrite, rephrase and locality of world edits at one layer
(docs/benchmarks.md "Targets": >= 0.95 rewrite and locality at the golden layer).

    python benchmarks/bench_quality.py --model default-gpt2 --layer 2                      # the quality preset
    python benchmarks/bench_quality.py --model default-llama --layer 2
    python benchmarks/bench_quality.py --model default-llama --layer 2 --preset default-small   # C = I, fast

`--preset` defaults to `<model>-quality` (goldenlayers.editing.hparams: key statistics from the world's held-out
corpus, 100k tokens, shrunk towards the identity; up to 1000 v* steps with patience 500; default-gpt2 also keeps
eight neutral prompts' predictions); a preset with mom2_adjustment collects (or loads from the cache) those
statistics first. `--hparams JSON` overrides single settings. Cases: `--cases` world edits sampled with `--seed`
(50 and 1: the figures in docs/editing.md). Scored by the project's evaluator (goldenlayers.evaluation), without
fluency. Prints one table row and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default-gpt2", choices=["default-gpt2", "default-llama"])
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--preset", help="default: <model>-quality")
    ap.add_argument("--hparams", default="{}", help="JSON overrides of the preset")
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the figures reproducible)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from goldenlayers.cli.common import world_of_model
    from goldenlayers.editing import edit, resolve_settings
    from goldenlayers.editing.stats import StatsSettings, key_stats
    from goldenlayers.evaluation import evaluate
    from goldenlayers.models.loader import load_model, resolve_model_path

    preset = a.preset or f"{a.model}-quality"
    hp = resolve_settings(None, "rome", preset, json.loads(a.hparams))
    lm = load_model(a.model, device="cpu")
    cases = world_of_model(a.model).edit_cases(a.cases, seed=a.seed)
    t0 = time.perf_counter()
    stats = None
    if hp.mom2_adjustment:
        stats = key_stats(lm.model, lm.tokenizer, lm.adapter, [a.layer],
                          StatsSettings(source=f"world:{resolve_model_path(a.model)}", tokens=100_000),
                          name=a.model, progress=False)

    def editor(model, tok, case, layer):
        return edit(model, tok, case, method="r-rome", layer=layer, hparams=hp, stats=stats)

    res = evaluate(lm.model, lm.tokenizer, cases, editor=editor, layer=a.layer, fluency=False, progress=False,
                   metrics=("rewrite", "rephrase", "locality"))
    row = res.table()[0]
    print("| model | layer | preset | overrides | cases | rewrite | rephrase | locality | failures | seconds |")
    print(f"| {a.model} | {a.layer} | {preset} | {a.hparams} | {len(cases)} | {row['rewrite']:.3f} | "
          f"{row['rephrase']:.3f} | {row['locality']:.3f} | {len(res.failures)} | {time.perf_counter() - t0:.0f} |")


if __name__ == "__main__":
    main()
