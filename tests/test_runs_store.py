"""The run store (goldenlayers.runs.store): idempotent inserts, resume keys, failures, atomic writes, shard merges
and CSV/Parquet exports that round-trip."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sqlite3
import sys

import pytest

from goldenlayers.runs import RowError, Store, export_store, merge_shards, read_export
from goldenlayers.runs.export import MissingDependencyError


def res(case="c0", layer=0, metric="rewrite", value=1.0, **kw):
    return dict(dict(model="m", dataset="zsre", case_id=case, method="r-rome", selector="bruteforce", layer=layer,
                     metric=metric, value=value, split="test"), **kw)


def fail(case="c0", layer=0, stage="edit", reason="boom", method="r-rome"):
    return dict(model="m", dataset="zsre", case_id=case, method=method, layer=layer, stage=stage, reason=reason)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        yield s


def test_wal_mode_and_busy_timeout(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    other = sqlite3.connect(store.path)  # the file is a plain SQLite database other tools can read
    assert {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {
        "results", "selectors", "failures", "jobs", "meta"}
    other.close()


def test_reinserting_a_finished_row_is_a_no_op(store):
    rows = [res(metric="rewrite", value=0.5, pre=0.0), res(metric="locality", value=0.75)]
    assert store.add_results(rows) == 2
    assert store.add_results(rows) == 0
    assert store.add_results([res(metric="rewrite", value=0.9)]) == 0  # first write wins
    got = list(store.rows("results"))
    assert [(r["metric"], r["value"], r["pre"]) for r in got] == [("locality", 0.75, None), ("rewrite", 0.5, 0.0)]
    assert store.count("results") == 2


def test_rows_are_checked_and_a_bad_batch_writes_nothing(store):
    cases = [
        (res(metric="rewrite_acc"), "case 'c0': field 'metric' = 'rewrite_acc' is not a canonical metric"),
        (res(split="train"), "field 'split' = 'train' must be one of"),
        (res(value=float("nan")), "field 'value' = nan: nan is not finite"),
        (res(layer=1.5), "field 'layer' = 1.5: 1.5 is not an integer"),
        (res(case=""), "field 'case_id' = '': empty string"),
        ({k: v for k, v in res().items() if k != "method"}, "field 'method' is missing"),
        (res(metirc="x"), "unknown field(s) ['metirc']"),
    ]
    for bad, message in cases:
        with pytest.raises(RowError) as e:
            store.add_results([res(case="ok"), bad])
        assert message in str(e.value)
    assert store.count("results") == 0


def test_done_keys_and_failures(store):
    store.add_results([res("c0", 0), res("c0", 1), res("c1", 0, selector="lga")])
    store.add_failures([fail("c2", 1), fail("c3", 0, method="rome")])
    assert store.done_keys("m", "zsre", "r-rome", "bruteforce") == {("c0", 0), ("c0", 1), ("c2", 1)}
    assert store.done_keys("m", "zsre", "r-rome", "bruteforce", include_failures=False) == {("c0", 0), ("c0", 1)}
    assert store.done_keys("m", "zsre", "r-rome", "lga") == {("c1", 0), ("c2", 1)}
    store.add_failures([fail("c2", 1, reason="again")])  # upsert: latest reason
    assert [r["reason"] for r in store.rows("failures", case_id="c2")] == ["again"]
    store.add_results([res("c2", 1)])  # a retried cell that now works clears its failure
    assert [r["case_id"] for r in store.rows("failures")] == ["c3"]


def test_selector_rows(store):
    rows = [dict(selector="lga", dataset="zsre", model="m", layer=layer, score=float(layer), cases=10, seconds=1.5)
            for layer in range(3)]
    store.add_selector_rows(rows)
    store.add_selector_rows(rows)
    assert [r["score"] for r in store.rows("selectors")] == [0.0, 1.0, 2.0]
    with pytest.raises(KeyError, match="no column"):
        list(store.rows("selectors", metric="x"))


def test_merge_shards_is_idempotent(tmp_path):
    main = Store(tmp_path / "main.sqlite")
    main.add_results([res("c0", 0)])
    a, b = Store(tmp_path / "shard-0.sqlite"), Store(tmp_path / "shard-1.sqlite")
    a.add_results([res("c0", 0, value=0.25), res("c1", 0)])  # c0/0 is in main already: main's value stays
    a.add_failures([fail("c0", 0), fail("c5", 2)])  # c0/0 has results in main: not merged
    b.add_results([res("c1", 0), res("c2", 3)])
    b.add_selector_rows([dict(selector="cma", dataset="zsre", model="m", layer=0, score=0.1, cases=3, seconds=9.0)])
    b.add_failures([fail("c1", 0)])  # superseded by shard-0's results for c1/0
    paths = [a.path, b.path]
    a.close(), b.close()
    first = merge_shards(main, paths)
    assert first == dict(results=2, selectors=1, failures=1)
    snapshot = {t: list(main.rows(t)) for t in ("results", "selectors", "failures")}
    assert merge_shards(main, paths) == dict(results=0, selectors=0, failures=0)
    assert {t: list(main.rows(t)) for t in snapshot} == snapshot
    assert [(r["case_id"], r["layer"], r["value"]) for r in snapshot["results"]] == [
        ("c0", 0, 1.0), ("c1", 0, 1.0), ("c2", 3, 1.0)]
    assert [(r["case_id"], r["layer"]) for r in snapshot["failures"]] == [("c5", 2)]
    with pytest.raises(FileNotFoundError):
        merge_shards(main, [tmp_path / "shard-9.sqlite"])
    main.close()


def _fill(store):
    store.add(results=[res("c0", 0, value=1 / 3, pre=0.125, seconds=0.1), res("c1", 2, "locality", 0.0),
                       res("c,2", 1, "fluency", 5.123456789012345, split="proxy")],
              selectors=[dict(selector="lga", dataset="zsre", model="m", layer=1, score=-2.5e-7, cases=4,
                              seconds=0.2)],
              failures=[fail("c9", 1, reason='line "one"\nline two, with comma')])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(store, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    _fill(store)
    paths = export_store(store, tmp_path / "out", fmt)
    assert [p.name for p in paths] == [f"{t}.{fmt}" for t in ("results", "selectors", "failures")]
    back = read_export(tmp_path / "out", fmt)
    for table in ("results", "selectors", "failures"):
        assert back[table] == list(store.rows(table)), table
    by_case = {r["case_id"]: r for r in back["results"]}
    assert by_case["c0"]["value"] == 1 / 3 and by_case["c0"]["pre"] == 0.125 and by_case["c1"]["pre"] is None
    assert by_case["c,2"]["value"] == 5.123456789012345 and back["failures"][0]["reason"].endswith("with comma")


def test_parquet_without_pyarrow_says_what_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
        export_store(store, tmp_path / "out", "parquet")
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        export_store(store, tmp_path / "out", "xlsx")


def test_timeline_sums_phases_in_first_seen_order():
    from goldenlayers.runs.timeline import Timeline

    tl = Timeline()
    tl.add("start-up", 1.25)
    with tl.phase("bruteforce"):
        sum(range(10_000))
    tl.add("start-up", 0.5)
    assert list(tl.seconds) == ["start-up", "bruteforce"]
    assert tl.seconds["start-up"] == 1.75 and 0 < tl.seconds["bruteforce"] < 5
    assert tl.describe().startswith("start-up 1.8 s, bruteforce 0.0 s, total 1.8 s")
