"""`goldenlayers compare` as a resumable run (cli/compare.py): its results are stored as they are computed in
<output-dir>/compare-<hash>, a second call redoes nothing, and a compare cut short resumes with only the missing
cells, ending with the same rows and the same Table 2 (regret included with --truth)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sqlite3

import pytest
from cli_helpers import flat, invoke

pytestmark = pytest.mark.slow

ARGS = ["compare", "--limit", "5", "--proxy-fraction", "0.4", "--selectors", "lga,bruteforce", "--no-fluency",
        "--set", "v_num_grad_steps=2", "--set", "context_templates=[]", "--no-progress"]


def results(store):
    with sqlite3.connect(store) as c:
        return sorted(c.execute("SELECT case_id, selector, layer, metric, value, split FROM results").fetchall())


def table_rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("│ r-rome")]


def test_compare_stores_resumes_and_scores_against_the_truth(tmp_path):
    first = invoke([*ARGS, "--truth", "--output-dir", tmp_path])
    assert first.exit_code == 0, first.output
    (run,) = tmp_path.glob("compare-*")
    store = run / "store.sqlite"
    rows = results(store)
    n_layers = len({r[2] for r in rows if r[1] == "bruteforce"})
    cells = {(r[0], r[2]) for r in rows if r[1] == "bruteforce"}
    assert len(cells) == 5 * n_layers  # --truth: brute force on every case (2 proxy, 3 test) at every layer
    assert {r[5] for r in rows if r[1] == "lga"} == {"test"} and len({r[0] for r in rows if r[1] == "lga"}) == 3
    text = flat(first)
    assert "lga: layer" in text and "lga at layer" in text and "regret" in text and "rho" in text
    table = table_rows(first.output)
    assert len(table) == 2  # lga and brute force's proxy golden layer

    again = invoke([*ARGS, "--truth", "--output-dir", tmp_path])  # nothing to do: same rows, same table
    assert again.exit_code == 0, again.output
    assert results(store) == rows and table_rows(again.output) == table

    # a compare killed during the test edits at LGA's layer: its job unfinished, two of its cells lost
    with sqlite3.connect(store) as c:
        c.execute("DELETE FROM jobs WHERE key LIKE '%/evaluate/%'")
        lost = c.execute("SELECT DISTINCT case_id FROM results WHERE selector = 'lga' LIMIT 2").fetchall()
        c.executemany("DELETE FROM results WHERE selector = 'lga' AND case_id = ?", lost)
    assert len(results(store)) < len(rows)
    resumed = invoke([*ARGS, "--truth", "--output-dir", tmp_path])
    assert resumed.exit_code == 0, resumed.output
    after = results(store)
    assert [r[:4] for r in after] == [r[:4] for r in rows]  # nothing lost, nothing twice
    assert all(a[4] == pytest.approx(b[4], abs=1e-6) for a, b in zip(after, rows, strict=True))
    assert table_rows(resumed.output) == table


def test_compare_without_truth_sweeps_the_proxy_set_only(tmp_path):
    res = invoke([*ARGS, "--output-dir", tmp_path])
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.glob("compare-*")
    rows = results(run / "store.sqlite")
    assert {r[5] for r in rows if r[1] == "bruteforce"} == {"proxy"}
    picked = {r[2] for r in rows if r[1] == "bruteforce-overall"}  # the test cases edited at its golden layer
    assert len(picked) == 1 and {r[5] for r in rows if r[1] == "bruteforce-overall"} == {"test"}
    assert f"bruteforce-overall: layer {picked.pop()} chosen on 2 proxy cases" in flat(res)
    assert "regret" not in flat(res)
