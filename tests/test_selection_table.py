"""The common LayerScores table and the Tukey-fenced pick (docs/equations.md "Layer selection"), on hand examples."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from goldenlayers.selection import COLUMNS, LayerScores, pick_layer, tukey_fences


def table(scores, layers=None, **kw):
    layers = list(range(len(scores))) if layers is None else layers
    return LayerScores("lga", "zsre", "tiny", layers, scores, cases=4, seconds=1.5, **kw)


def test_tukey_fences_hand_example():
    # sorted: 1 2 3 4 100 -> Q1 = 2, Q3 = 4 (linear interpolation), IQR = 2, fences [-1, 7]
    f = tukey_fences([3, 100, 1, 4, 2])
    assert (f.q1, f.q3, f.iqr, f.lower, f.upper) == (2.0, 4.0, 2.0, -1.0, 7.0)
    assert tukey_fences([3, 100, 1, 4, 2], k=3).upper == 10.0
    # eight scores: positions 1.75 and 5.25 -> Q1 = 2 + 0.75 * (3 - 2) = 2.75, Q3 = 6 + 0.25 * (7 - 6) = 6.25
    f8 = tukey_fences([1, 2, 3, 5, 5, 6, 7, 40])
    assert f8.q1 == pytest.approx(2.75) and f8.q3 == pytest.approx(6.25)
    assert f8.upper == pytest.approx(6.25 + 1.5 * 3.5)
    with pytest.raises(ValueError):
        tukey_fences([1.0, float("nan")])
    with pytest.raises(ValueError):
        tukey_fences([1.0, 2.0], k=-1)


def test_pick_excludes_outliers_then_argmax():
    t = table([3.0, 100.0, 1.0, 4.0, 2.0], layers=[10, 11, 12, 13, 14])
    assert t.best() == 11 and t.ranking() == [11, 13, 10, 14, 12]
    p = t.pick()
    assert p.layer == 13 and p.excluded == [11] and p.ranking == [13, 10, 14, 12]
    assert p.top == [13, 10, 14, 12] and (p.fences.lower, p.fences.upper) == (-1.0, 7.0) and not p.fallback
    assert t.pick(top=2).top == [13, 10]
    assert t.pick(k=100).layer == 11  # wide fences exclude nothing
    low = table([5.0, 6.0, 5.5, -50.0, 6.0]).pick()  # a low outlier is excluded too; ties -> first layer
    assert low.excluded == [3] and low.layer == 1 and low.ranking[:2] == [1, 4]
    d = p.as_dict()
    assert d["layer"] == 13 and d["excluded"] == [11] and d["q1"] == 2.0 and d["upper"] == 7.0


def test_pick_fallback_when_every_layer_is_excluded():
    p = pick_layer(table([1.0, 2.0]), k=0.0)  # Q1 = 1.25, Q3 = 1.75: both scores outside with k = 0
    assert p.fallback and p.excluded == [0, 1] and p.layer == 1
    assert not pick_layer(table([1.0, 2.0]), k=0.5).fallback  # k >= 0.5 always keeps a layer


def test_rows_and_per_case():
    per_case = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    t = LayerScores.from_per_case("bf-rewrite", "zsre", "gpt2-xl", [4, 5, 6], per_case, ["a", "b", "c", "d"],
                                  seconds=2.0)
    np.testing.assert_allclose(t.scores, [0.5, 0.5, 0.75])
    assert t.cases == 4 and t.best() == 6 and t.score_of(5) == 0.5
    rows = t.to_rows()
    assert len(rows) == 3 and tuple(rows[0]) == COLUMNS
    assert rows[2] == dict(selector="bf-rewrite", dataset="zsre", model="gpt2-xl", layer=6, score=0.75, cases=4,
                           seconds=2.0)
    with pytest.raises(KeyError, match="layer 9 was not scored"):
        t.score_of(9)


def test_validation_errors():
    with pytest.raises(ValueError, match="3 layers but scores"):
        table([1.0, 2.0], layers=[0, 1, 2])
    with pytest.raises(ValueError, match="ascending"):
        table([1.0, 2.0], layers=[1, 0])
    with pytest.raises(ValueError, match="layer columns"):
        table([1.0, 2.0], per_case=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2 case ids for 3"):
        table([1.0, 2.0], per_case=np.zeros((3, 2)), case_ids=["a", "b"])
    with pytest.raises(ValueError, match="no usable case \\(1 skipped; first: bad\\)"):
        LayerScores.from_per_case("lga", "zsre", "m", [0, 1], np.zeros((0, 2)), [], skipped={"a": "bad"})
