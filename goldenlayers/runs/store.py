"""The run store: one SQLite file of result, selector and failure rows (schema in goldenlayers.runs.schema).

Made to survive crashes and to resume (docs/design.md "House style" 7):
- WAL journal, a busy timeout, and one transaction per write call: a process killed at any moment leaves every
  committed call whole and nothing of the call in flight (a brute-force cell's metric rows go in one call).
  synchronous=NORMAL: a killed *process* loses nothing committed; only an OS crash/power loss may lose the
  last commits (never corrupt the file).
- primary keys are the row keys, and results/selectors are written with INSERT OR IGNORE: writing a finished
  row again is a no-op, so a resumed writer may repeat itself safely. Failures are upserted (latest reason
  kept), and a failure is cleared when its (case, layer) later produces results.
- several processes never write one file: worker i writes `shards/shard-i.sqlite` (`shard_path`), and
  `merge_shards` copies shards into the main store, idempotently (run it again: nothing changes).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from goldenlayers.runs.schema import FAILURES, RESULTS, SELECTORS, TABLES, TableSpec, normalise_row, now

SCHEMA_VERSION = "1"
_FAIL_CELL = ("model", "dataset", "case_id", "method", "layer")  # a failure's (case, layer) cell


def shard_path(run_path: str | Path, worker: int) -> Path:
    """The shard file of worker `worker` (>= 0) inside a run directory."""
    if int(worker) < 0:
        raise ValueError(f"worker index must be >= 0, got {worker}")
    return Path(run_path) / "shards" / f"shard-{int(worker)}.sqlite"


class Store:
    """A run store at `path` (created with its tables when missing). Use as a context manager or call close().

    busy_timeout_s: how long a call waits for another connection's lock before failing.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); is it on a network drive?")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction():
            for spec in TABLES.values():
                self.conn.execute(spec.ddl())
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, status TEXT NOT NULL, "
                              "detail TEXT NOT NULL, finished_at TEXT NOT NULL)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS results_by_group "
                              "ON results (model, dataset, method, selector, metric, split)")
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        version = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: store schema version {version}, this goldenlayers writes "
                               f"{SCHEMA_VERSION}; export it with the version that wrote it")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """`with store.transaction():` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- writing -------------------------------------------------------------------------------------------
    def _insert(self, spec: TableSpec, rows: Iterable[Mapping], verb: str) -> list[tuple]:
        tuples = [normalise_row(spec, r) for r in rows]
        marks = ", ".join("?" * len(spec.names))
        self.conn.executemany(f"INSERT {verb} INTO {spec.name} ({', '.join(spec.names)}) VALUES ({marks})", tuples)
        return tuples

    def add(self, results: Iterable[Mapping] = (), selectors: Iterable[Mapping] = (),
            failures: Iterable[Mapping] = ()) -> int:
        """Write rows of any kinds in ONE transaction; returns how many result rows were new."""
        with self.transaction():
            before = self.conn.total_changes
            res = self._insert(RESULTS, results, "OR IGNORE")
            added = self.conn.total_changes - before
            cells = {tuple(t[RESULTS.names.index(c)] for c in _FAIL_CELL) for t in res}
            where = " AND ".join(f"{c} = ?" for c in _FAIL_CELL)
            self.conn.executemany(f"DELETE FROM failures WHERE {where}", list(cells))
            self._insert(SELECTORS, selectors, "OR IGNORE")
            self._insert(FAILURES, failures, "OR REPLACE")
        return added

    def add_results(self, rows: Iterable[Mapping]) -> int:
        """Result rows in one transaction (e.g. all metrics of one (case, layer)); returns the count of new rows."""
        return self.add(results=rows)

    def add_selector_rows(self, rows: Iterable[Mapping]) -> None:
        """Selector rows, e.g. `LayerScores.to_rows()`, in one transaction."""
        self.add(selectors=rows)

    def add_failures(self, rows: Iterable[Mapping]) -> None:
        self.add(failures=rows)

    # ---- reading -------------------------------------------------------------------------------------------
    def done_keys(self, model: str, dataset: str, method: str, selector: str,
                  include_failures: bool = True) -> set[tuple[str, int]]:
        """(case_id, layer) cells already finished for this model/dataset/method/selector: cells with result
        rows, and (include_failures) cells that failed for this method. Pass as `skip` to a resumed sweep."""
        q = ("SELECT DISTINCT case_id, layer FROM results WHERE model=? AND dataset=? AND method=? AND selector=?")
        keys = {(c, int(layer)) for c, layer in self.conn.execute(q, (model, dataset, method, selector))}
        if include_failures:
            q = "SELECT DISTINCT case_id, layer FROM failures WHERE model=? AND dataset=? AND method=?"
            keys |= {(c, int(layer)) for c, layer in self.conn.execute(q, (model, dataset, method))}
        return keys

    def failure_count(self, model: str, dataset: str, method: str) -> int:
        q = "SELECT COUNT(*) FROM failures WHERE model=? AND dataset=? AND method=?"
        return int(self.conn.execute(q, (model, dataset, method)).fetchone()[0])

    def clear_failures(self, model: str, dataset: str, method: str) -> int:
        """Delete the failure rows of this model/dataset/method, so that `done_keys` no longer counts their cells
        as finished (a resume redoes them); returns how many were deleted."""
        with self.transaction():
            cur = self.conn.execute("DELETE FROM failures WHERE model=? AND dataset=? AND method=?",
                                    (model, dataset, method))
        return cur.rowcount

    def rows(self, table: str, **where) -> Iterator[dict]:
        """Rows of `table` (results | selectors | failures) as dicts, filtered by column equality, in key order."""
        spec = self._spec(table)
        bad = set(where) - set(spec.names)
        if bad:
            raise KeyError(f"{table}: no column(s) {sorted(bad)}; columns are {list(spec.names)}")
        cond = " AND ".join(f"{k} = ?" for k in where)
        sql = f"SELECT {', '.join(spec.names)} FROM {table}" + (f" WHERE {cond}" if cond else "")
        for t in self.conn.execute(sql + f" ORDER BY {', '.join(spec.key)}", tuple(where.values())):
            yield dict(zip(spec.names, t, strict=True))

    def failure_counts(self) -> dict[tuple[str, str, str, str], int]:
        """{(model, dataset, method, stage): failure rows}, for summaries (stage "load": records the loader
        skipped, under method "-")."""
        q = "SELECT model, dataset, method, stage, COUNT(*) FROM failures GROUP BY model, dataset, method, stage"
        return {tuple(r[:4]): int(r[4]) for r in self.conn.execute(q)}

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {self._spec(table).name}").fetchone()[0])

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read-only SQL for aggregations (the report groups in SQL so large runs never load all rows)."""
        return self.conn.execute(sql, params).fetchall()

    @staticmethod
    def _spec(table: str) -> TableSpec:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
        return TABLES[table]

    # ---- jobs (resume at the granularity of goldenlayers.runs.plan.Job) ------------------------------------
    def mark_job(self, key: str, status: str, detail: str = "") -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)", (key, status, detail, now()))

    def set_planned(self, job_key: str, cells: int) -> None:
        """Record how many (case, layer) cells a cells job has in all (the report's "cells done / planned")."""
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"planned/{job_key}", str(int(cells))))

    def planned(self) -> dict[str, int]:
        """{job key: planned cells} of the cells jobs that have started."""
        return {k.removeprefix("planned/"): int(v)
                for k, v in self.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'planned/%'")}

    def jobs(self) -> dict[str, dict]:
        return {k: dict(status=s, detail=d, finished_at=t)
                for k, s, d, t in self.conn.execute("SELECT key, status, detail, finished_at FROM jobs")}

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def merge_shards(main: Store, shards: Iterable[str | Path]) -> dict[str, int]:
    """Copy every shard's rows into `main` (INSERT OR IGNORE; failures only where the main store has no
    results for that cell), one transaction per shard; returns new rows per table. Idempotent."""
    added = {name: 0 for name in TABLES}
    for path in shards:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"shard {path} does not exist")
        Store(path).close()  # creates missing tables of an empty shard, checks the schema version
        main.conn.execute("ATTACH DATABASE ? AS shard", (str(path),))
        try:
            with main.transaction():
                for spec in (RESULTS, SELECTORS):
                    before = main.conn.total_changes
                    cols = ", ".join(spec.names)
                    main.conn.execute(f"INSERT OR IGNORE INTO main.{spec.name} ({cols}) "
                                      f"SELECT {cols} FROM shard.{spec.name}")
                    added[spec.name] += main.conn.total_changes - before
                cols = ", ".join(FAILURES.names)
                same_cell = " AND ".join(f"r.{c} = f.{c}" for c in _FAIL_CELL)
                before = main.conn.total_changes
                main.conn.execute(
                    f"INSERT OR IGNORE INTO main.failures ({cols}) SELECT {', '.join('f.' + c for c in FAILURES.names)}"
                    f" FROM shard.failures f WHERE NOT EXISTS (SELECT 1 FROM main.results r WHERE {same_cell})")
                added["failures"] += main.conn.total_changes - before
                main.conn.execute(f"DELETE FROM main.failures AS f WHERE EXISTS "
                                  f"(SELECT 1 FROM main.results r WHERE {same_cell})")
        finally:
            main.conn.execute("DETACH DATABASE shard")
    return added


def failure_lines(store: Store, limit: int = 20) -> list[str]:
    """The store's failure rows for the report: one line per (model, dataset, method, stage) with its count,
    then the first `limit` rows with their reasons (records skipped while loading first)."""
    out = []
    for (model, dataset, method, stage), n in sorted(store.failure_counts().items()):
        what = "record(s) skipped while loading" if stage == "load" else f"cell(s) failed at stage {stage}"
        out.append(f"{model} / {dataset}" + ("" if method == "-" else f" / {method}") + f": {n} {what}")
    for model, dataset, case, method, layer, stage, reason in store.query(
            "SELECT model, dataset, case_id, method, layer, stage, reason FROM failures ORDER BY stage != 'load', "
            "model, dataset, method, layer, case_id LIMIT ?", (limit,)):
        where = "skipped" if stage == "load" else f"{method} at layer {layer} ({stage})"
        out.append(f"{model} / {dataset} case {case} {where}: {reason}")
    return out
