"""Reports never look finished when the run is not, and say what they leave out: an unfinished run is named at
the top and in every table and figure its missing jobs touch (cells done / planned); tables a run cannot support
are listed with the reason; layer axes are integers with room for a golden line at layer 0; proxy and test golden
lines differ in colour and dash; the metadata table holds no Python None or raw dicts. Rows are FABRICATED
(tests/test_report_fixtures.py), never results."""

import numpy as np
from test_report_fixtures import fabricate_run

from goldenlayers.report import report
from goldenlayers.report.data import Curves
from goldenlayers.report.figures import golden_curves
from goldenlayers.report.html import render_html


def test_finished_run_is_not_marked_and_lists_what_it_leaves_out(tmp_path):
    fab = fabricate_run(tmp_path, models=("tiny-a",), n_cases=10)
    fab.run.store.conn.execute("DELETE FROM results WHERE metric = 'fluency'")  # a run that never measured it
    out = report(fab.run)
    assert out.status is None and not any("(partial)" in t.title for t in out.tables)
    assert "Unfinished" not in out.markdown.read_text()
    left = " | ".join(out.left_out)
    assert "Table 9: it is Table 2 on CounterFact" in left and "Table 10: compares models, and the run has one" in left
    assert "Table 7 (fluency): no brute-force 'fluency' rows on the test split" in left
    assert "table7" not in {t.key for t in out.tables} and "table6" in {t.key for t in out.tables}


def test_unfinished_run_is_marked_at_the_top_and_in_each_affected_part(tmp_path):
    fab = fabricate_run(tmp_path, models=("tiny-a",), n_cases=10)
    store = fab.run.store
    key = "tiny-a/zsre/bruteforce/r-rome/bruteforce"
    store.conn.execute("DELETE FROM jobs WHERE key = ?", (key,))  # cut off mid-sweep: not done
    store.set_planned(key, 120)  # 10 cases x 6 layers done of 20 x 6 planned
    out = report(fab.run, tmp_path / "rep")
    assert out.status.startswith("Unfinished run: ") and "tiny-a/zsre brute force r-rome (to do, 60/120 cells)" in \
        out.status
    n_jobs = len(store.jobs()) + 1
    assert f"{n_jobs - 1} of {n_jobs} jobs done" in out.status
    by_key = {t.key: t for t in out.tables}
    assert by_key["table1"].title.endswith("(partial)") and "60/120 cells" in by_key["table1"].note
    assert by_key["table2-tiny-a-zsre"].title.endswith("(partial)")
    assert not by_key["table2-tiny-a-wikibio"].title.endswith("(partial)")  # another dataset: untouched
    md = out.markdown.read_text()
    assert md.splitlines()[2].startswith("**Unfinished run:")
    page = out.html.read_text()
    assert '<p class="status">Unfinished run:' in page and "(partial). Partial: tiny-a/zsre" in page


def _curves(test_layer: int) -> Curves:
    layers = list(range(4))
    test = np.array([0.9, 0.5, 0.4, 0.3]) if test_layer == 0 else np.array([0.3, 0.4, 0.5, 0.9])
    return Curves("rewrite", layers, test, test_layer, float(test[test_layer]), test.copy(), test_layer,
                  float(test[test_layer]))


def test_layer_axes_are_integers_and_golden_lines_visible_and_distinct():
    fig = golden_curves({"zsre": {"rewrite": _curves(0)}}, "t")
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlim()[0] < 0 <= ax.get_xlim()[1]  # a golden line at layer 0 lies inside the axes
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    golden = [ln for ln in ax.get_lines() if "golden" in ln.get_label()]
    assert len(golden) == 2 and golden[0].get_xdata()[0] == golden[1].get_xdata()[0] == 0
    (t, p) = golden
    assert t.get_color() != p.get_color() and t.get_linestyle() != p.get_linestyle() and p.get_zorder() > \
        t.get_zorder()
    curves = [ln for ln in ax.get_lines() if ln.get_label() in ("test", "proxy")]
    assert curves[0].get_marker() != curves[1].get_marker()


def test_metadata_has_no_python_none_or_raw_dicts():
    meta = dict(name="r", created_at="2026-01-01", sessions=[{}], seeds=dict(torch=0, templates=1, split=2),
                versions=dict(python="3.11", torch="2.13", cuda=None, gpus=None))
    page = render_html("t", meta, {"results": 3}, [], [], [])
    table = page.split('<table class="meta">')[1].split("</table>")[0]
    assert "None" not in table and "{" not in table and "torch 0, templates 1, split 2" in table
    assert "none (CPU)" in table
