"""Selectors scored against brute force (goldenlayers.selection.regret, compare with --truth): regret, Spearman's
rho and cost on hand-computed cases. Every expected number below is worked out by hand in the comments."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from typer.testing import CliRunner

from goldenlayers.cases import EditCase
from goldenlayers.evaluation.overall import OverallSpec
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.selection import bruteforce
from goldenlayers.selection.regret import GroundTruth, score_selector, spearman
from goldenlayers.selection.sweep_fns import SweepFns

BITS = math.log2(100)
# per-layer test means: Overall = (rewrite + locality) / 2 = [0.6, 0.7, 0.8, 0.7] -> golden layer 2 (Overall),
# 1 (rewrite), 0 (locality)
REWRITE = [0.2, 0.9, 0.8, 0.5]
LOCALITY = [1.0, 0.5, 0.8, 0.9]


def truth(**kw) -> GroundTruth:
    return GroundTruth([0, 1, 2, 3], dict(rewrite=REWRITE, locality=LOCALITY), cases=4, seconds=40.0, **kw)


def test_golden_layers_and_regret_by_hand():
    t = truth()
    assert t.overall == pytest.approx([0.6, 0.7, 0.8, 0.7])
    assert t.golden == dict(rewrite=1, locality=0, overall=2)
    # chosen 1: Overall 0.8 - 0.7; rewrite at its best; locality 1.0 - 0.5
    assert t.regret(1) == pytest.approx(dict(rewrite=0.0, locality=0.5, overall=0.1))
    assert t.regret(2) == pytest.approx(dict(rewrite=0.1, locality=0.2, overall=0.0))
    assert t.at(3) == pytest.approx(dict(rewrite=0.5, locality=0.9, overall=0.7))
    with pytest.raises(KeyError, match="layer 7 is not in the brute-force sweep"):
        t.regret(7)
    # weights change Overall, hence the golden layer: rewrite x3 -> (3 r + l) / 4 = [0.4, 0.8, 0.8, 0.6] -> 1
    w = truth(spec=OverallSpec.parse("rewrite=3"))
    assert w.overall == pytest.approx([0.4, 0.8, 0.8, 0.6]) and w.golden["overall"] == 1  # first of the tie


def test_fluency_regret_is_lower_is_better():
    # fluency 0.5 and 0.25 of log2(100) bits -> scores 0.5 and 0.75; Overall [0.5, 0.625] -> golden 1
    t = GroundTruth([4, 9], dict(rewrite=[0.5, 0.5], fluency=[0.5 * BITS, 0.25 * BITS]), cases=2, seconds=1.0)
    assert t.overall == pytest.approx([0.5, 0.625]) and t.golden == dict(rewrite=4, fluency=9, overall=9)
    assert t.regret(4) == pytest.approx(dict(rewrite=0.0, fluency=0.25 * BITS, overall=0.125))


def test_spearman_by_hand():
    t = truth()
    # ranks: scores 1..4 vs Overall ranks [1, 2.5, 4, 2.5]: cov 3, var 5 and 4.5 -> rho = 3 / sqrt(22.5)
    assert spearman([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], t) == pytest.approx(3 / math.sqrt(22.5))
    # only layers 1..3 scored, reversed: ranks [3, 2, 1] vs [1.5, 3, 1.5]: cov 0 -> rho 0
    assert spearman([1, 2, 3], [3.0, 2.0, 1.0], t) == pytest.approx(0.0)
    assert spearman([0, 1, 2, 3], [3.0, 2.0, 1.0, 0.0], t) == pytest.approx(-3 / math.sqrt(22.5))
    assert math.isnan(spearman([0, 1], [1.0, 1.0], t))  # constant scores: no rank correlation
    assert math.isnan(spearman([2, 9], [1.0, 2.0], t))  # one common layer


def test_score_selector_and_rows():
    s = score_selector("lga", 3, truth(), seconds=2.0, layers=[0, 1, 2, 3], scores=[1.0, 2.0, 3.0, 4.0])
    assert s.cost == pytest.approx(0.05)  # 2 s of 40 s
    row = s.row()
    assert row["layer"] == 3 and row["overall"] == pytest.approx(0.7) and row["regret"] == pytest.approx(0.1)
    assert row["regret_rewrite"] == pytest.approx(0.4) and row["regret_locality"] == pytest.approx(0.1)
    assert math.isnan(score_selector("x", 3, truth(), seconds=1.0).spearman)  # no layer scores given


def test_ground_truth_from_sweep_rows():
    rows = [dict(case_id=c, layer=layer, metric=m, value=v, seconds=0.5)
            for c, off in (("a", 0.0), ("b", 0.2)) for layer in (0, 1)
            for m, v in (("rewrite", 0.1 * layer + off), ("locality", 1.0 - 0.3 * layer))]
    rows += [dict(case_id="c", layer=0, metric="rewrite", value=1.0, seconds=9.0)]  # no layer 1: dropped
    t = GroundTruth.from_rows(rows)
    # rewrite means [0.1, 0.2] (a, b), locality [1.0, 0.7] -> Overall [0.55, 0.45]
    assert t.means["rewrite"] == pytest.approx([0.1, 0.2]) and t.overall == pytest.approx([0.55, 0.45])
    assert t.cases == 2 and t.seconds == pytest.approx(0.5 * 4 + 9.0)  # summed distinct (case, layer) cells
    assert t.golden == dict(rewrite=1, locality=0, overall=0)


# --- compare with ground truth, on a tiny model with a scripted editor --------------------------------------------

PROXY_LOCALITY = [1.0, 0.2, 0.3, 0.9]  # proxy Overall [0.6, 0.55, 0.55, 0.7] -> brute force picks layer 3


def scripted_fns(model, tok, method="r-rome", hparams=None, *, stats=None, metrics=None, name=None):
    """Edits nothing; scores rewrite REWRITE[layer] and locality LOCALITY[layer] (PROXY_LOCALITY for proxy cases)."""
    state = {}

    class Handle:
        def restore(self):
            state.pop("layer")

    def apply_fn(item):
        state["layer"] = item[0]
        return Handle()

    def score_fn(case, pre):
        layer = state["layer"]
        loc = PROXY_LOCALITY if case.case_id.startswith("p") else LOCALITY
        return dict(rewrite=REWRITE[layer], locality=loc[layer])

    return SweepFns(lambda cases, layer: [(layer, c) for c in cases], apply_fn, lambda case: None, score_fn,
                    lambda layer: [])


def test_compare_with_truth_scores_every_selector(monkeypatch):
    from goldenlayers.selection.compare import compare_selectors

    monkeypatch.setattr(bruteforce, "make_default_fns", scripted_fns)
    model, tok = tiny_model("gpt2", n_layers=4), tiny_tokenizer()
    cases = [EditCase(case_id=f"{'p' if i < 2 else 't'}{i}", dataset="zsre", subject="Tom Baker",
                      prompt="Tom Baker works for", target_new="Acme") for i in range(6)]
    events = []
    cmp = compare_selectors(model, tok, cases[:2], cases[2:], selectors=("bruteforce",), fluency=False, truth=True,
                            progress=False, on_selection=lambda s: events.append(("chosen", s.layer)),
                            on_row=lambda r: events.append(("row", r["layer"], r["regret"])))
    assert events == [("chosen", 3), ("row", 3, pytest.approx(0.1))]  # each printed as soon as it is known
    (row,) = cmp.rows
    assert cmp.truth.golden == dict(rewrite=1, locality=0, overall=2) and cmp.truth.cases == 4
    assert (row["rewrite"], row["locality"], row["overall"]) == pytest.approx((0.5, 0.9, 0.7))
    assert row["regret_rewrite"] == pytest.approx(0.4) and row["regret_locality"] == pytest.approx(0.1)
    # proxy Overall [0.6, 0.55, 0.55, 0.7] (ranks 3, 1.5, 1.5, 4) vs test [0.6, 0.7, 0.8, 0.7] (1, 2.5, 4, 2.5):
    # cov -2.25, variances 4.5 and 4.5 -> rho -0.5
    assert row["spearman"] == pytest.approx(-0.5)
    assert row["cost"] == pytest.approx(row["seconds"] / cmp.truth.seconds)
    assert cmp.normalisation == "Overall = mean of rewrite, locality (fixed per row)"
    assert np.isfinite(row["speedup_vs_bruteforce"])


def test_row_line_and_selection_line():
    from goldenlayers.cli.compare import row_line

    line = row_line(dict(selector="lga", layer=3, rewrite=0.5, locality=0.9, overall=0.7, regret=0.1,
                         spearman=-0.5, cost=0.05))
    assert line == ("lga at layer 3 on the test set: rewrite 0.500, locality 0.900, overall 0.700, regret 0.100, "
                    "rho -0.500, cost 0.050")


@pytest.mark.parametrize(("args", "message"), [(["--overall-weights", "rewrite=x"], "--overall-weights"),
                                               (["--selectors", "lga,magic"], "--selectors")])
def test_compare_cli_rejects_bad_options(args, message):
    from goldenlayers.cli import app

    r = CliRunner().invoke(app, ["compare", *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
