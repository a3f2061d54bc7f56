"""Golden vs sample-wise optimal layers, t-tests, proxy transfer (golden.py) and selector agreement (agreement.py)
on hand-made matrices whose answers are worked out in the comments (docs/equations.md "Layer selection"; paper Tables 1, 3-8)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest
from scipy import stats

from goldenlayers.selection.agreement import agreement
from goldenlayers.selection.golden import (
    CompareSettings,
    compare_golden,
    gap_matrix,
    golden_layer,
    golden_layers,
    mean_std,
    means,
    pooled,
    proxy_transfer,
    proxy_union,
    sample_wise_optimal,
)
from goldenlayers.selection.table import LayerScores

# 4 cases x 3 layers. Per-case best (first tie): c0 -> 1, c1 -> 0, c2 -> 1, c3 -> 1.
# Layer means: 0.4375, 0.6875, 0.75 -> golden layer 2.
V = [[0.5, 1.0, 1.0],
     [1.0, 0.5, 1.0],
     [0.0, 0.5, 0.25],
     [0.25, 0.75, 0.75]]


def matrix(values, metric="rewrite", dataset="zsre", layers=None):
    values = np.asarray(values, dtype=float)
    layers = list(range(values.shape[1])) if layers is None else layers
    return LayerScores.metric_table(metric, [f"c{i}" for i in range(len(values))], layers, values, dataset=dataset,
                                    model="tiny")


def test_sample_wise_optimal_first_tie_and_golden():
    m = matrix(V)
    opt = sample_wise_optimal(m)
    assert [r["layer"] for r in opt] == [1, 0, 1, 1]
    assert [r["score"] for r in opt] == [1.0, 1.0, 0.5, 0.75]
    assert golden_layer(m) == 2
    assert means(m).tolist() == m.scores.tolist() == [0.4375, 0.6875, 0.75]
    # lower is better: per-case minima (first tie) and the layer with the lowest mean
    assert [r["layer"] for r in sample_wise_optimal(m, higher_is_better=False)] == [0, 1, 0, 0]
    assert golden_layer(m, higher_is_better=False) == 0
    # layers that are not 0..L-1 are reported by their index
    assert golden_layer(matrix(V, layers=[3, 7, 9])) == 9


def test_golden_ties_go_to_first_layer_even_with_rounding():
    # equal column means (0.5 each): the first layer wins
    assert golden_layer(matrix([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])) == 0
    # the same five numbers in two orders: numpy's means differ by one ulp (1.1e-16) and the plain argmax
    # picks layer 1; the tie tolerance gives the first layer, as the paper does
    col0, col1 = [0.6, 0.1, 0.8, 0.9, 0.2], [0.9, 0.2, 0.6, 0.1, 0.8]
    m = matrix(np.array([col0, col1]).T)
    assert means(m)[0] < means(m)[1] and int(np.argmax(means(m))) == 1
    assert golden_layer(m) == 0


def test_compare_golden_hand_t_test():
    c = compare_golden(matrix(V))
    opt, gold = np.array([1.0, 1.0, 0.5, 0.75]), np.array([1.0, 1.0, 0.25, 0.75])
    # differences 0, 0, 0.25, 0: mean 0.0625, sample std 0.125 -> t = 0.0625 / (0.125 / 2) = 1.0, df 3
    assert c.golden_layer == 2 and c.n == 4
    assert c.t == pytest.approx(1.0, abs=1e-12)
    assert c.p == pytest.approx(2 * stats.t.sf(1.0, 3), abs=1e-12)
    # closed form of Student's t CDF for 3 degrees of freedom: p = 1 - 2 (atan(t/sqrt3) + (t/sqrt3)/(1 + t^2/3)) / pi
    assert c.p == pytest.approx(1 - 2 * (math.atan(1 / math.sqrt(3)) + (1 / math.sqrt(3)) / (4 / 3)) / math.pi, abs=1e-12)
    assert c.p == pytest.approx(stats.ttest_rel(opt, gold).pvalue, abs=1e-15)
    assert (c.optimal_mean, c.golden_mean) == (0.8125, 0.75)
    assert c.optimal_std == pytest.approx(math.sqrt(0.171875 / 3), abs=1e-15)
    assert c.golden_std == pytest.approx(np.std(gold, ddof=1), abs=1e-15)
    assert c.verdict == "No" and not c.different
    row = c.row()
    assert row["sample_wise_optimal"] == f"0.8125±{math.sqrt(0.171875 / 3):.4f}" == "0.8125±0.2394"
    # golden vector 1, 1, .25, .75: squared deviations .0625 + .0625 + .25 + 0 = .375 -> std sqrt(.125) = .3536
    assert row["golden"] == "0.7500±0.3536" and row["statistical_difference"] == "No"
    # alpha is a setting; population stds (ddof 0) too
    assert compare_golden(matrix(V), alpha=0.5).verdict == "Yes"
    assert compare_golden(matrix(V), CompareSettings(ddof=0)).golden_std == pytest.approx(np.std(gold), abs=1e-15)
    # Student's independent two-sample test as a setting
    ind = compare_golden(matrix(V), test="independent")
    assert ind.p == pytest.approx(stats.ttest_ind(opt, gold, equal_var=True).pvalue, abs=1e-15)
    assert ind.p > c.p


def test_compare_golden_significant_and_degenerate():
    # 10 cases whose best layers alternate: layer means tie at 0.6 -> golden layer 0, which loses 0.8 on half
    c = compare_golden(matrix([[1.0, 0.2], [0.2, 1.0]] * 5))
    assert c.golden_layer == 0 and c.optimal_mean == 1.0 and c.golden_mean == pytest.approx(0.6)
    # differences 0, 0.8, ...: mean 0.4, sample std sqrt(10 * 0.16 / 9) -> t = 0.4 / (std / sqrt(10)) = 3
    assert c.t == pytest.approx(3.0, rel=1e-12)
    assert c.p == pytest.approx(2 * stats.t.sf(3.0, 9), rel=1e-9)
    assert c.p < 0.05 and c.verdict == "Yes"
    # every case best at the same layer: identical vectors -> p = 1, "No" (scipy alone would give NaN)
    same = compare_golden(matrix([[0.1, 1.0], [0.3, 0.5], [0.2, 0.7]]))
    assert (same.t, same.p, same.verdict, same.golden_layer) == (0.0, 1.0, "No", 1)
    assert math.isnan(stats.ttest_rel([1.0, 0.5, 0.7], [1.0, 0.5, 0.7]).pvalue)
    with pytest.raises(ValueError, match="at least 2 cases"):
        compare_golden(matrix([[0.1, 0.2]]))
    with pytest.raises(ValueError):
        CompareSettings(alpha=1.5)
    with pytest.raises(ValueError):
        CompareSettings(tests="paired")
    assert mean_std(0.99934, 0.013489) == "0.9993±0.0135"


def test_from_rows_pivot_drop_and_errors():
    rows = [dict(case_id=c, layer=lay, metric="rewrite", value=v) for c, lay, v in
            [("a", 0, 0.1), ("a", 1, 0.9), ("b", 1, 0.4), ("b", 0, 0.6), ("c", 0, 1.0)]]
    rows.append(dict(case_id="a", layer=0, metric="locality", value=0.0))
    m = LayerScores.from_rows(rows, "rewrite")
    assert m.case_ids == ["a", "b"] and m.layers == [0, 1] and m.metric == "rewrite" and m.cases == 2
    assert m.per_case.tolist() == [[0.1, 0.9], [0.6, 0.4]] and m.scores.tolist() == [0.35, 0.65]
    assert list(m.skipped) == ["c"] and "[1]" in m.skipped["c"]
    assert m.subset(["b", "zzz"]).per_case.tolist() == [[0.6, 0.4]]
    with pytest.raises(ValueError, match="two 'rewrite' values"):
        LayerScores.from_rows(rows + [dict(case_id="a", layer=1, metric="rewrite", value=0.2)], "rewrite")
    with pytest.raises(ValueError, match="no rows"):
        LayerScores.from_rows(rows, "fluency")
    with pytest.raises(ValueError, match=r"no cases \(2 dropped"):
        LayerScores.from_rows(rows[:1] + rows[2:3], "rewrite")
    # a lower-is-better metric keeps its raw values and ranks its layers lowest first
    flu = LayerScores.from_rows([dict(r, metric="fluency") for r in rows[:4]], "fluency")
    assert flu.higher_is_better is False and flu.per_case.tolist() == [[0.1, 0.9], [0.6, 0.4]]
    assert flu.best() == 0 and golden_layer(flu, higher_is_better=False) == 0


def test_proxy_transfer_union_and_gap_matrix():
    # proxy golden layer 0 (means 0.75, 0.5, 0.25); test means 0.6, 0.9, 0.8 -> gap 0.3
    proxy = matrix([[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]], dataset="zsre")
    test = matrix([[0.6, 0.8, 0.8], [0.6, 1.0, 0.8]], dataset="zsre")
    t = proxy_transfer(proxy, test)
    assert (t.proxy_layer, t.test_layer) == (0, 1)
    assert t.proxy_score == pytest.approx(0.6) and t.test_score == pytest.approx(0.9)
    assert t.gap == pytest.approx(0.3)
    proxy_row, test_row = t.rows()
    assert (proxy_row["set"], proxy_row["layer"], test_row["set"], test_row["layer"]) == ("Proxy", 0, "Test", 1)
    # a second dataset whose proxy prefers layer 2 strongly: pooled means over 2 + 2 cases
    proxy_b = matrix([[0.0, 0.0, 1.0], [0.0, 0.5, 1.0]], dataset="wikibio")
    test_b = matrix([[0.2, 0.4, 0.3], [0.2, 0.4, 0.9]], dataset="wikibio")  # means 0.2, 0.4, 0.6
    # union means: layer 0 (1 + .5 + 0 + 0)/4 = .375, layer 1 (.5 + .5 + 0 + .5)/4 = .375, layer 2 (0 + .5 + 1 + 1)/4
    union = proxy_union({"zsre": proxy, "wikibio": proxy_b}, {"zsre": test, "wikibio": test_b})
    assert union.layer == 2 and union.score == pytest.approx(0.625)
    by = {tr.dataset: tr for tr in union.transfers}
    assert by["zsre"].proxy_score == pytest.approx(0.8) and by["zsre"].gap == pytest.approx(0.1)
    assert by["wikibio"].test_layer == 2 and by["wikibio"].gap == 0.0
    assert pooled([proxy, proxy_b]).case_ids == ["zsre/c0", "zsre/c1", "wikibio/c0", "wikibio/c1"]
    g = gap_matrix({"zsre": test, "wikibio": test_b}, union_layer=union.layer)
    np.testing.assert_allclose(g.gaps, [[0.3, 0.0, 0.1], [0.4, 0.2, 0.0]], atol=1e-12)
    assert g.optimal == {"zsre": [1], "wikibio": [2]} and g.datasets == ["zsre", "wikibio"]
    # tied optimal layers are all starred
    tied = gap_matrix({"x": matrix([[0.5, 1.0, 1.0]])})
    assert tied.optimal == {"x": [1, 2]}
    with pytest.raises(ValueError, match="same datasets"):
        proxy_union({"zsre": proxy}, {"zsre": test, "wikibio": test_b})
    with pytest.raises(ValueError, match="layers"):
        proxy_transfer(proxy, matrix([[0.1, 0.2]]))


def test_golden_layer_reads_a_selector_tables_per_case_matrix():
    table = LayerScores.from_per_case("bruteforce", "zsre", "tiny", [0, 1, 2], V, ["c0", "c1", "c2", "c3"],
                                     meta={"metric": "rewrite"})
    assert table.metric == "rewrite" and golden_layer(table) == table.best() == 2
    with pytest.raises(ValueError, match="per-case"):
        golden_layer(LayerScores("lga", "zsre", "tiny", [0, 1], [1.0, 2.0], cases=3))


def bf_table(scores):
    return LayerScores("bruteforce", "zsre", "tiny", list(range(len(scores))), scores, cases=10,
                       meta={"metric": "rewrite"})


def test_agreement_hand_example():
    bf = bf_table([0.2, 0.9, 0.5, 0.7])  # golden layer 1
    lga = LayerScores("lga", "zsre", "tiny", [0, 1, 2, 3], [1.0, 3.0, 4.0, 2.0], cases=10)
    a = agreement(lga, bf)
    # ranks: selector 1 3 4 2, brute force 1 4 2 3 -> d^2 = 0 + 1 + 4 + 1 = 6 -> rho = 1 - 6*6/(4*15) = 0.4
    assert a.spearman == pytest.approx(0.4, abs=1e-12)
    assert a.spearman_p == pytest.approx(stats.spearmanr([1, 3, 4, 2], [1, 4, 2, 3]).pvalue, abs=1e-12)
    assert (a.bf_layer, a.chosen_layer) == (1, 2)
    assert a.regret == pytest.approx(0.4) and a.chosen_score == 0.5
    assert a.hits == {1: False, 3: True, 5: True}
    assert a.row()["hit@3"] is True and a.row()["selector"] == "lga"
    # an explicit choice (e.g. the Tukey-fenced pick) that is the golden layer: no regret
    assert agreement(lga, bf, chosen=1).regret == 0.0
    # a ranking (best first) that orders layers exactly as brute force: rho = 1
    r = agreement([1, 3, 2, 0], bf, ks=(1,))
    assert r.spearman == pytest.approx(1.0) and r.hits == {1: True} and r.regret == 0.0
    # a selector scoring more layers than brute force is compared on the shared ones
    wide = agreement({0: 0.0, 1: 1.0, 2: 0.5, 3: 0.7, 4: 9.0}, bf)
    assert wide.layers == [0, 1, 2, 3] and wide.spearman == pytest.approx(1.0) and wide.chosen_layer == 1
    # constant scores carry no ranking: NaN, not a number that looks meaningful
    assert math.isnan(agreement({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}, bf).spearman)
    with pytest.raises(KeyError, match="no brute-force score"):
        agreement(lga, bf, chosen=7)
    with pytest.raises(ValueError, match="share 1"):
        agreement({3: 1.0, 9: 2.0}, bf)


def test_golden_layers_per_metric_and_for_overall():
    # rewrite means (V): 0.4375, 0.6875, 0.75 -> golden 2; locality means: 1.0, 0.75, 0.25 -> golden 0;
    # fluency (bits, lower is better) means 6.0, 5.0, 5.5 -> golden 1.
    # Overall per layer = (rewrite + locality + (1 - fluency / log2(100))) / 3:
    #   layer 0: (0.4375 + 1.0 + 0.0969) / 3 = 0.5115; layer 1: (0.6875 + 0.75 + 0.2474) / 3 = 0.5616;
    #   layer 2: (0.75 + 0.25 + 0.1722) / 3 = 0.3907 -> golden 1
    loc = matrix([[1.0, 0.75, 0.25]] * 4, "locality")
    flu = matrix([[6.0, 5.0, 5.5]] * 4, "fluency")
    bits = math.log2(100)
    expect_overall = [(r + lo + 1 - f / bits) / 3 for r, lo, f in zip([0.4375, 0.6875, 0.75], [1.0, 0.75, 0.25],
                                                                        [6.0, 5.0, 5.5], strict=True)]
    assert int(np.argmax(expect_overall)) == 1
    assert golden_layers(dict(rewrite=matrix(V), locality=loc, fluency=flu)) == \
        dict(rewrite=2, locality=0, fluency=1, overall=1)
    # without fluency: Overall = (rewrite + locality) / 2 = 0.71875, 0.71875, 0.5 -> the first tie, layer 0
    assert golden_layers(dict(rewrite=matrix(V), locality=loc))["overall"] == 0
