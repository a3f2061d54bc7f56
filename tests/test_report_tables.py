"""Report tables (goldenlayers.report.tables) on FABRICATED rows (tests/test_report_fixtures.py: test fixtures,
not results): every number is recomputed here independently with numpy/scipy from the fabricated values."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys

import numpy as np
import pytest
from scipy import stats
from test_report_fixtures import fabricate_run

from goldenlayers.report import Table, report
from goldenlayers.runs import RunDir, validate_config

LABEL = {"zsre": "ZsRE", "wikibio": "WikiBio"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    fab = fabricate_run(tmp_path_factory.mktemp("run"))
    out = report(fab.run)
    return fab, out, {t.key: t for t in out.tables}


def values(fab, model, ds, metric, split=None) -> np.ndarray:
    """(cases, L) fabricated values of one split, straight from the generator's dict."""
    ids = [c for c, s in fab.split[(model, ds)].items() if split is None or s == split]
    return np.array([fab.bf[(model, ds, metric)][c] for c in ids])


def cell(table: Table, model: str, row_name: str, column: str) -> str:
    start = next(i for i, r in enumerate(table.rows) if r[0] == model)
    row = next(r for r in table.rows[start:] if r[1] == row_name)
    return row[table.columns.index(column)]


def test_table1_matches_an_independent_t_test(built):
    fab, _, tables = built
    t1 = tables["table1"]
    assert t1.columns == ["Model", "", "ZsRE", "WikiBio"]
    for model in ("tiny-a", "tiny-b"):
        for ds in ("zsre", "wikibio"):
            m = values(fab, model, ds, "rewrite", "test")
            opt, g = m.max(axis=1), int(np.argmax(m.mean(axis=0)))
            gold = m[:, g]
            p = stats.ttest_rel(opt, gold).pvalue
            col = LABEL[ds]
            assert cell(t1, model, "Sample-Wise Optimal Layer", col) == f"{opt.mean():.4f}±{opt.std(ddof=1):.4f}"
            assert cell(t1, model, "Golden Layer", col) == f"{gold.mean():.4f}±{gold.std(ddof=1):.4f}"
            assert cell(t1, model, "Golden layer index", col) == str(g)
            assert cell(t1, model, "Statistical Difference", col) == \
                f"{'Yes' if p < 0.05 else 'No'} (p={p:.3g}, n={len(m)})"


def _overall_curve(fab, model, ds, split, metrics):
    """Per-layer Overall, computed here: the plain mean over metrics of each layer's mean, fluency (bits) as
    1 - fluency / log2(100), clipped to [0, 1]."""
    cols = []
    for metric in metrics:
        v = values(fab, model, ds, metric, split).mean(axis=0)
        cols.append(1 - np.clip(v / np.log2(100), 0, 1) if metric == "fluency" else v)
    return np.mean(cols, axis=0)


@pytest.mark.parametrize("key, metric, best", [("table3", "rewrite", np.argmax), ("table5", "locality", np.argmax),
                                               ("table7", "fluency", np.argmin), ("table8", "overall", np.argmax)])
def test_proxy_vs_test_tables(built, key, metric, best):
    from test_report_fixtures import DATASET_METRICS

    fab, _, tables = built
    t = tables[key]
    assert metric in t.title
    datasets = [d for d in ("zsre", "wikibio") if metric == "overall" or metric in DATASET_METRICS[d]]
    assert t.groups == [("", 2)] + [(LABEL[d], 2) for d in datasets]
    for model in ("tiny-a", "tiny-b"):
        for j, ds in enumerate(datasets):
            if metric == "overall":
                proxy = _overall_curve(fab, model, ds, "proxy", DATASET_METRICS[ds])
                test = _overall_curve(fab, model, ds, "test", DATASET_METRICS[ds])
            else:
                proxy = values(fab, model, ds, metric, "proxy").mean(axis=0)
                test = values(fab, model, ds, metric, "test").mean(axis=0)
            pl, tl = int(best(proxy)), int(best(test))
            start = next(i for i, r in enumerate(t.rows) if r[0] == model)
            assert t.rows[start][1] == "Proxy" and t.rows[start + 1][1] == "Test"
            assert t.rows[start][2 + 2 * j: 4 + 2 * j] == [str(pl), f"{test[pl]:.4f}"]
            assert t.rows[start + 1][2 + 2 * j: 4 + 2 * j] == [str(tl), f"{test[tl]:.4f}"]


def test_rephrase_table_has_only_the_datasets_with_rephrases(built):
    assert [g for g, _ in built[2]["table4"].groups] == ["", "ZsRE"]


def test_table2_method_by_selector(built):
    fab, _, tables = built
    t = tables["table2-tiny-a-zsre"]
    assert t.columns == ["Edit", "Selection", "Layer", "RwA(↑)", "RpA(↑)", "LOC(↑)", "PRT(↑)", "OV(↑)"]
    assert [r[:2] for r in t.rows] == [["R-ROME", "CMA (mlp-w10)"], ["", "LGA"], ["", "BF (proxy golden)"],
                                       ["ROME", "CMA (mlp-w10)"], ["", "LGA"]]
    metrics = ("rewrite", "rephrase", "locality", "portability")
    bf_layer = int(np.argmax(values(fab, "tiny-a", "zsre", "rewrite", "proxy").mean(axis=0)))
    expect = []
    for method, sel, bump in (("r-rome", "cma-mlp-w10", 0), ("r-rome", "lga", 0), ("r-rome", None, 0),
                              ("rome", "cma-mlp-w10", -0.05), ("rome", "lga", -0.05)):
        layer = bf_layer if sel is None else fab.picks[("tiny-a", "zsre", method, sel)]
        expect.append((layer, [values(fab, "tiny-a", "zsre", m, "test")[:, layer].mean() + bump for m in metrics]))
    for row, (layer, means) in zip(t.rows, expect, strict=True):
        assert row[2] == str(layer)
        assert row[3:] == [f"{v:.4f}" for v in means] + [f"{np.mean(means):.4f}"]  # Overall: the row's plain mean
    assert "Overall = mean of rewrite, rephrase, locality, portability (fixed per row)" in t.note


def test_regret_table_against_the_test_sweep(built):
    """Each selector of R-ROME (the swept method) scored on the fabricated test sweep, recomputed here."""
    fab, _, tables = built
    t = tables["regret-tiny-a-zsre"]
    assert t.columns == ["Edit", "Selection", "Layer", "OV(↑)", "Regret OV", "Regret RwA", "Regret RpA", "Regret LOC",
                         "Regret PRT", "ρ", "Cost"]
    metrics = ("rewrite", "rephrase", "locality", "portability")
    means = {m: values(fab, "tiny-a", "zsre", m, "test").mean(axis=0) for m in metrics}
    ov = np.mean([means[m] for m in metrics], axis=0)  # Overall per layer: the plain mean of the four accuracies
    sweep_seconds = 16 * sum(2.0 + 0.1 * layer for layer in range(6))  # 16 test cases x 6 layers
    proxy_ov = np.mean([values(fab, "tiny-a", "zsre", m, "proxy").mean(axis=0) for m in ("rewrite",)], axis=0)
    bf_layer = int(np.argmax(proxy_ov))
    expect = {"CMA (mlp-w10)": (fab.picks[("tiny-a", "zsre", "r-rome", "cma-mlp-w10")], 30.0),
              "LGA": (fab.picks[("tiny-a", "zsre", "r-rome", "lga")], 0.4),
              "BF (proxy golden)": (bf_layer, 4 * sum(2.0 + 0.1 * layer for layer in range(6)))}
    assert [r[1] for r in t.rows] == list(expect)  # ROME has no sweep: no row
    for row in t.rows:
        layer, seconds = expect[row[1]]
        scores = proxy_ov if row[1].startswith("BF") else -np.abs(np.arange(6) - layer)
        rho = stats.spearmanr(scores, ov).statistic
        assert row[2:] == [str(layer), f"{ov[layer]:.4f}", f"{ov.max() - ov[layer]:.4f}",
                           *(f"{means[m].max() - means[m][layer]:.4f}" for m in metrics),
                           f"{rho:.2f}", f"{seconds / sweep_seconds:.3f}"]


def test_table10_models_by_selector(built):
    t = built[2]["table10-wikibio"]
    assert t.columns == ["Model", "Selection", "Layer", "RwA(↑)", "LOC(↑)", "FLC(↓)", "OV(↑)"]
    assert [r[0] for r in t.rows] == ["tiny-a", "", "", "tiny-b", "", ""]


def test_a_layer_has_one_overall_in_every_table(built):
    """The same (model, dataset, method, selector) row: the same Overall in Table 2 and in Table 10, and the value
    recomputed here from the row's means (RwA, LOC, and fluency in bits as 1 - FLC / log2(100))."""
    fab, _, tables = built
    for model in ("tiny-a", "tiny-b"):
        t2, t10 = tables[f"table2-{model}-wikibio"], tables["table10-wikibio"]
        start = next(i for i, r in enumerate(t10.rows) if r[0] == model)
        for row in t10.rows[start:start + 3]:
            mine = next(r for r in t2.rows[:3] if r[1] == row[1])  # R-ROME is the first group of Table 2
            assert mine[2:] == row[2:]
            rwa, loc, flc = (float(x) for x in row[3:6])
            assert float(row[6]) == pytest.approx((rwa + loc + 1 - flc / np.log2(100)) / 3, abs=2e-4)


def test_table_rendering():
    t = Table("k", "T <1>", ["Model", "Set", "Layer", "Score"], [["m", "Proxy", "3", "0.5"]],
              groups=[("", 2), ("ZsRE", 2)], note="n&b")
    assert t.markdown().splitlines()[2] == "| Model | Set | ZsRE Layer | ZsRE Score |"
    h = t.html()
    assert '<th colspan="2">ZsRE</th>' in h and "<caption>T &lt;1&gt;</caption>" in h and "n&amp;b" in h
    assert h.count("<tr>") == 3


def test_parts_without_data_or_without_golden_are_left_out(tmp_path, monkeypatch):
    cfg = validate_config(dict(name="empty", models=[dict(name="m")], datasets=[dict(name="world")],
                               methods=[dict(name="rome")]))
    out = report(RunDir.create_or_resume(cfg, tmp_path))
    assert out.tables == [] and out.figures == {}
    assert [x.split(":")[0] for x in out.left_out] == ["Table 1", "Tables 2/9/10", "Regret", "Tables 3-8",
                                                        "Figure 1", "Figure 2", "Figure 3", "Figure 4"]
    assert "- Table 1: needs brute-force rows" in out.markdown.read_text()

    import goldenlayers.selection as selection

    fab = fabricate_run(tmp_path / "g", models=("tiny-a",), n_cases=10)
    monkeypatch.delattr(selection, "golden", raising=False)
    monkeypatch.setitem(sys.modules, "goldenlayers.selection.golden", None)
    out = report(fab.run)
    assert any(x.startswith("Table 1: goldenlayers.selection.golden is not available") for x in out.left_out)
    assert "fig4" in out.figures  # run times need no golden-layer statistics
