"""Replay the race selector against a brute-force sweep's recorded cells, with no model run (docs/selection.md
"Replaying the race on recorded sweeps").

The race (goldenlayers.selection.race) edits at full steps in every round after round 0, and a round 0 whose few-step
estimates do not separate the layers is run again at full steps. When a race on the GPU recorded such an uninformative
round 0 (every layer's few-step estimate equal, which on [0, 1] metrics means every cell at its extreme: no rewrite, no
rephrase, no portability, full locality), every decision of the fixed race depends only on full-step cells, and
those are the sweep's: this script runs the real `race_scores` with an editor that reads each (case, layer) from the
sweep's JSON lines (bench_regret --rows) and scores the choice against the test split, as bench_regret does. Only
seeds whose recorded round 0 (`--recorded`, bench_regret's result file) is consistent with no edit are replayed. The cost
is counted in cells (the race's cells over the test sweep's), not in seconds; v* of a race batch differ from the
sweep's only by floating-point rounding.

    python benchmarks/replay_race.py --rows docs/data/truth/rows-world-llama-s7.jsonl.gz --world-seed 7 --arch llama \
        --layers 12 --limit 300 --seeds 0,1,2 --recorded docs/data/truth/regret-world-llama-s7.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FEW_STEPS = dict(rewrite=0.0, rephrase=0.0, locality=1.0, portability=0.0)  # an uninformative round 0's cells


def read_rows(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    opener = gzip.open if path.suffix == ".gz" else open
    cells = {}
    with opener(path, "rt") as f:
        for line in f:
            cell = json.loads(line)
            cells[(cell["case_id"], int(cell["layer"]))] = {r["metric"]: r["value"] for r in cell["rows"]}
    return cells


def replay_fns(cells, full_steps: int, counter: list):
    """make_default_fns' stand-in: full-step cells from the sweep, fewer-step cells uninformative (FEW_STEPS)."""
    from goldenlayers.selection.sweep_fns import SweepFns

    def make(model, tok, method="r-rome", hparams=None, *, stats=None, metrics=None, name=None, **_):
        full = hparams.v_num_grad_steps >= full_steps
        state = {}

        class Handle:
            def restore(self):
                state.clear()

        def apply_fn(item):
            layer, case = item
            counter.append((case.case_id, layer, full))
            state["cell"] = cells[(case.case_id, layer)]
            return Handle()

        def score_fn(case, pre):
            have = state["cell"]
            return dict(have) if full else {m: v for m, v in FEW_STEPS.items() if m in have}

        return SweepFns(lambda cases, layer: [(layer, c) for c in cases], apply_fn, lambda case: None, score_fn,
                        lambda layer: [])
    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, required=True)
    ap.add_argument("--world-seed", type=int, required=True, help="the train-world seed (its world gives the cases)")
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--recorded", type=Path, required=True, help="bench_regret's result file of the GPU race: only "
                    "seeds whose recorded round 0 is consistent with no edit (every estimate at most locality's share "
                    "of Overall) are replayed")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    from bench_regret import analyse

    import goldenlayers.selection.bruteforce as bruteforce
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.datasets.synthetic.world import build_world
    from goldenlayers.editing.hparams import PRESETS, EditHParams
    from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
    from goldenlayers.selection.race import race_scores
    from goldenlayers.selection.regret import score_selector

    cells = read_rows(a.rows)
    rows = [dict(case_id=c, layer=layer, metric=m, value=v, seconds=1.0) for (c, layer), ms in cells.items()
            for m, v in ms.items()]
    cases = build_world(seed=a.world_seed, people=1000).edit_cases(a.limit, seed=0)
    hp = EditHParams.model_validate(PRESETS["default-small"]["rome"])
    model = tiny_model(a.arch, n_layers=a.layers)  # only its layer count is read: every cell comes from the rows
    out = {}
    recorded = json.loads(a.recorded.read_text())["seeds"]
    for seed in (int(s) for s in a.seeds.split(",")):
        rounds = next(s["meta"]["rounds"] for s in recorded[str(seed)]["selectors"] if s["selector"] == "race")
        split = split_cases(cases, proxy_fraction=0.1, seed=seed)
        first = split.proxy[:rounds[0]["cases"]]  # locality alone, the other metrics of round 0's cases 0
        share = 1 / len({m for c in first for (cid, _), ms in cells.items() if cid == c.case_id for m in ms})
        if rounds[0]["steps"] >= 1 or max(rounds[0]["estimates"]) > share + 1e-6:
            print(f"seed {seed}: not replayed (the recorded round 0 had edits: estimates up to "
                  f"{max(rounds[0]['estimates']):.3f} > {share:.3f})", flush=True)
            continue
        an = analyse(rows, {c.case_id for c in split.proxy}, {c.case_id for c in split.test})
        truth = an["truth"]
        truth.seconds = len(split.test) * a.layers  # cost in cells
        counter: list = []
        bruteforce.make_default_fns = replay_fns(cells, hp.v_num_grad_steps, counter)
        table = race_scores(model, tiny_tokenizer(), split.proxy, hparams=hp, progress=False, batch_size=64)
        cost_cells = sum(1.0 if full else 0.4375 for *_, full in counter)  # race.cell_cost(0.25) for few steps
        s = score_selector("race", table.meta["chosen"], truth, cost_cells, table.layers, table.scores).row()
        out[seed] = dict(s, rounds=table.meta["rounds"], cells=len(counter), repeated=table.meta["repeated_cells"])
        print(f"seed {seed}: golden {truth.golden['overall']}; race layer {s['layer']}  overall {s['overall']:.4f}  "
              f"regret {s['regret']:.4f}  rho {s['spearman']:+.3f}  cost {s['cost']:.4f} of the test sweep's cells "
              f"({len(counter)} cells, {table.meta['repeated_cells']} of them round 0 again at full steps)", flush=True)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
