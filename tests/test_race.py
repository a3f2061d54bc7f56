"""The race selector (goldenlayers.selection.race): its plan and budget, the rounds it runs (scripted editor), its
choice on a real default model against brute force on the same cases, and the LGA readings registered beside it."""

from __future__ import annotations

import numpy as np
import pytest

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.overall import overall
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.selection import bruteforce
from goldenlayers.selection.race import (
    RaceSettings,
    cell_cost,
    plan_cost,
    plan_race,
    plan_rounds,
    race_scores,
)
from goldenlayers.selection.sweep_fns import SweepFns


def test_plan_halves_and_fits_the_budget():
    # 30 layers, 20 proxy cases: 30 x 4 at a quarter of the steps, 10 x 12, 4 x 20 (eta 3), then one layer is left
    rounds = plan_rounds(30, 20, 4, 3, 0.25)
    assert [(r.layers, r.cases, r.steps) for r in rounds] == [(30, 4, 0.25), (10, 12, 1.0), (4, 20, 1.0)]
    # 30*4*(1+0.75)/4 = 52.5; 10*12 = 120; 4*(20-12) = 32 (full-step cells of earlier rounds are reused)
    assert plan_cost(rounds) == pytest.approx(52.5 + 120 + 32)
    # budget 3% of a 9x larger test set at every layer: 0.03*9*20*30 = 162; first_cases 3 plans 39.375 + 90 + 44
    # = 173.375, so it shrinks to 2: 26.25 + 60 (10 x 6) + 48 (4 x 12 new) + 4 (2 x 2 new) = 138.25
    assert plan_cost(plan_rounds(30, 20, 3, 3, 0.25)) == pytest.approx(173.375)
    chosen, cost, budget = plan_race(30, 20, RaceSettings())
    assert budget == pytest.approx(162) and cost == pytest.approx(138.25)
    assert [(r.layers, r.cases) for r in chosen] == [(30, 2), (10, 6), (4, 18), (2, 20)]
    assert cell_cost(1.0) == 1.0 and cell_cost(0.25) == pytest.approx(0.4375)
    # one proxy case: nothing smaller to try, the plan runs over the budget
    rounds, cost, budget = plan_race(12, 1, RaceSettings())
    assert rounds[0].cases == 1 and cost > budget


OVERALL = [0.30, 0.55, 0.90, 0.80, 0.20, 0.85, 0.10, 0.40]  # full-step Overall per layer
QUARTER = [0.30, 0.50, 0.60, 0.70, 0.10, 0.65, 0.05, 0.30]  # with a quarter of the steps: 3 ranks above 2


def scripted(calls, quarter=QUARTER, quarter_rewrite=None):
    """A sweep editor that edits nothing: rewrite = locality = OVERALL[layer] (`quarter` with few v* steps, and
    rewrite `quarter_rewrite` then when given)."""
    def fns(model, tok, method="r-rome", hparams=None, *, stats=None, metrics=None, name=None):
        steps = hparams.v_num_grad_steps
        state = {}

        class Handle:
            def restore(self):
                state.pop("layer", None)

        def apply_fn(item):
            layer, case = item
            calls.append((case.case_id, layer, steps))
            state["layer"] = layer
            return Handle()

        def score_fn(case, pre):
            v = (OVERALL if steps == 500 else quarter)[state["layer"]]
            if steps != 500 and quarter_rewrite is not None:
                return dict(rewrite=quarter_rewrite, locality=v)
            return dict(rewrite=v, locality=v)

        return SweepFns(lambda cases, layer: [(layer, c) for c in cases], apply_fn, lambda case: None, score_fn,
                        lambda layer: [])
    return fns


def test_race_rounds_on_a_scripted_editor(monkeypatch):
    calls = []
    monkeypatch.setattr(bruteforce, "make_default_fns", scripted(calls))
    model, tok = tiny_model("gpt2", n_layers=8), tiny_tokenizer()
    cases = [EditCase(case_id=f"c{i}", dataset="zsre", subject="Tom Baker", prompt="Tom Baker works for",
                      target_new="Acme") for i in range(9)]
    # default-small's 500 steps (the tiny model's name matches no preset: pass the settings explicitly)
    from goldenlayers.editing.hparams import PRESETS, EditHParams

    hp = EditHParams.model_validate(PRESETS["default-small"]["rome"])
    table = race_scores(model, tok, cases, hparams=hp, progress=False, first_cases=2, budget=1.0, smooth=False)
    rounds = table.meta["rounds"]
    # round 0: 8 layers x 2 cases at 125 steps; round 1: the best 3 (3, 5, 2 by QUARTER) x 6 cases at 500 steps;
    # round 2 would keep 1 layer: the race ends and picks the best of round 1 at full steps
    assert [(len(r["layers"]), r["cases"], r["steps"]) for r in rounds] == [(8, 2, 0.25), (3, 6, 1.0)]
    assert rounds[0]["layers"][:3] == [3, 5, 2] and rounds[1]["layers"] == [2, 5, 3]
    assert table.meta["chosen"] == 2 and table.best() == 2 and table.ranking()[:3] == [2, 5, 3]
    assert sorted({s for *_, s in calls}) == [125, 500]
    assert len(calls) == 8 * 2 + 3 * 6
    assert table.meta["planned_cells"] == pytest.approx(8 * 2 * cell_cost(0.25) + 3 * 6)
    # smoothed round 0 (the default): QUARTER * (1/4, 1/2, 1/4) = .35 .475 .6 .525 .3875 .3625 .2625 .2375 -> 2, 3, 1
    smoothed = race_scores(model, tok, cases, hparams=hp, progress=False, first_cases=2, budget=1.0)
    assert [r["layers"] for r in smoothed.meta["rounds"]] == [[2, 3, 1, 4, 5, 0, 6, 7], [2, 3, 1]]
    assert smoothed.meta["chosen"] == 2


def test_an_uninformative_round_0_is_run_again_at_full_steps(monkeypatch):
    """With a quarter of the steps no layer is told apart (every estimate equal, as when no edit reaches its target
    in so few steps): round 0 is repeated at 500 steps on the same cases, its cells are reused by round 1, and the
    race picks the best layer instead of the first of a tie."""
    calls = []
    monkeypatch.setattr(bruteforce, "make_default_fns", scripted(calls, quarter=[0.2] * 8))
    model, tok = tiny_model("gpt2", n_layers=8), tiny_tokenizer()
    cases = [EditCase(case_id=f"c{i}", dataset="zsre", subject="Tom Baker", prompt="Tom Baker works for",
                      target_new="Acme") for i in range(9)]
    from goldenlayers.editing.hparams import PRESETS, EditHParams

    hp = EditHParams.model_validate(PRESETS["default-small"]["rome"])
    table = race_scores(model, tok, cases, hparams=hp, progress=False, first_cases=2, budget=1.0, smooth=False)
    rounds = table.meta["rounds"]
    assert [(len(r["layers"]), r["cases"], r["steps"], r.get("uninformative", False)) for r in rounds] == \
        [(8, 2, 0.25, True), (8, 2, 1.0, False), (3, 6, 1.0, False)]
    assert rounds[1]["layers"][:3] == [2, 5, 3] and table.meta["chosen"] == 2
    assert table.meta["repeated_cells"] == 16
    # 16 quarter-step cells, 16 full-step ones, then 3 layers x 4 new cases (the first 2 are reused)
    assert len(calls) == 16 + 16 + 3 * 4
    assert table.meta["planned_cells"] == pytest.approx(8 * 2 * cell_cost(0.25) + 3 * 6 + 16)
    # a tie within min_spread counts as uninformative too; min_spread 0 turns the repeat off
    calls.clear()
    off = race_scores(model, tok, cases, hparams=hp, progress=False, first_cases=2, budget=1.0, smooth=False,
                      min_spread=0.0)
    assert off.meta["repeated_cells"] == 0 and len(off.meta["rounds"]) == 2
    # no few-step edit rewrote anything: locality alone (spread 0.65) does not rank the layers, round 0 is repeated
    calls.clear()
    monkeypatch.setattr(bruteforce, "make_default_fns", scripted(calls, quarter_rewrite=0.0))
    blind = race_scores(model, tok, cases, hparams=hp, progress=False, first_cases=2, budget=1.0, smooth=False)
    assert blind.meta["rounds"][0]["uninformative"] and blind.meta["repeated_cells"] == 16
    assert blind.meta["chosen"] == 2


def test_race_on_default_gpt2_picks_a_layer_brute_force_rates_near_the_best():
    """Real edits (default-gpt2, R-ROME default-small) on 3 world cases at 3 layers: the race's layer is within 0.05
    Overall of the best layer of brute force on the same cases."""
    from goldenlayers.datasets.synthetic.world import World
    from goldenlayers.evaluation.cells import edit_cells
    from goldenlayers.models import load_model
    from goldenlayers.models.loader import resolve_model_path
    from goldenlayers.selection.bruteforce import make_default_fns

    lm = load_model("default-gpt2")
    cases = World.load(f"{resolve_model_path('default-gpt2')}/world.json").edit_cases(3, seed=0)
    layers = [0, 2, 4]
    table = race_scores(lm.model, lm.tokenizer, cases, layers=layers, progress=False, model_name=lm.name,
                        first_cases=3, budget=1.0, eta=2)  # round 0: 3 layers at 125 steps; round 1: the best 2
    res = edit_cells(cases, layers, progress=False, **make_default_fns(lm.model, lm.tokenizer, "r-rome",
                                                                  name=lm.name).kwargs())
    per = {}
    for r in res.records():
        per.setdefault(r["layer"], {}).setdefault(r["case_id"], {})[r["metric"]] = r["value"]
    bf = {layer: np.mean([overall(m) for m in by_case.values()]) for layer, by_case in per.items()}
    assert table.meta["chosen"] in layers and len(table.meta["rounds"]) == 2
    assert bf[table.meta["chosen"]] >= max(bf.values()) - 0.05


def test_lga_readings_are_registered_and_computed():
    from goldenlayers.selection import available_selectors, get_selector, select_layer
    from goldenlayers.selection.lga import LGA_READINGS, LGASettings, lga_scores

    names = available_selectors()
    assert names[0] == "race" and [f"lga-{s}" for s in LGA_READINGS] == names[names.index("lga") + 1:][:len(LGA_READINGS)]
    assert all(get_selector(f"lga-{s}").make_settings() == LGASettings(**kw) for s, kw in LGA_READINGS.items())
    assert all(LGASettings(**kw).name == f"lga-{s}" for s, kw in LGA_READINGS.items())  # their names in stores
    model, tok = tiny_model("gpt2", n_layers=4), tiny_tokenizer()
    cases = [EditCase(case_id=f"c{i}", dataset="zsre", subject=s, prompt=f"{s} works for", target_new=t,
                      ground_truth=["Nokia"]) for i, (s, t) in enumerate([("Tom Baker", "Acme"), ("Ann Lee", "BMW")])]
    plain = lga_scores(model, tok, cases, progress=False)
    absolute = lga_scores(model, tok, cases, progress=False, absolute=True)
    np.testing.assert_allclose(absolute.per_case, np.abs(plain.per_case))
    neg = select_layer(model, tok, cases, "lga-neg", progress=False)
    np.testing.assert_allclose(neg.table.scores, -plain.scores)
    assert neg.selector == "lga-neg" and neg.table.selector == "lga-neg"
    free = select_layer(model, tok, cases, "lga-neg-nofence", progress=False)
    assert free.pick is None and free.layer == int(np.argmax(-plain.scores))


def test_race_lines_say_why():
    from goldenlayers.cli.select import race_lines

    meta = dict(full_steps=100, planned_cells=138.25, budget_cells=162.0, brute_force_proxy_cells=600,
                over_budget=False, rounds=[dict(layers=[4, 5, 3, 0], cases=2, steps=0.25, estimates=[0.9, 0.8, 0.7, 0.1]),
                                           dict(layers=[5, 4], cases=6, steps=1.0, estimates=[0.85, 0.84])])
    assert race_lines(meta).splitlines() == [
        "round 0: 4 layers x 2 cases, 25 v* steps; best (Overall of the means): 4 (0.900), 5 (0.800), 3 (0.700), 0 (0.100)",
        "round 1: 2 layers x 6 cases, 100 v* steps; best (Overall of the means): 5 (0.850), 4 (0.840)",
        "planned cost 138 edit cells of 600 for brute force on these cases; budget 162"]
