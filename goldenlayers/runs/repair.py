"""A damaged run store (a truncated or overwritten store.sqlite: "database disk image is malformed"): detecting it
with a clear message, and `goldenlayers run CONFIG --repair`, which keeps every row that can still be read
(docs/runs.md).

`check_store(path)` opens the file and runs SQLite's quick_check; a damaged file raises `StoreDamagedError`, which
names the file and the command that repairs it. `repair_store(path)` reads each table of the damaged file by rowid,
in order; where a read fails (a page lost or garbled) it probes the following rowids until it reads again (up to
MAX_GAP rowids), so rows on intact pages after a damaged one are kept too. A truncated file is read from a copy
padded back to the size its header records (SQLite refuses to read a file shorter than that at all). The rows go into a fresh
store (same schema) that replaces the file; the damaged file is kept beside it as
`store.sqlite.damaged-<timestamp>` (with its -wal/-shm files).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from goldenlayers.runs.schema import TABLES, now

MAX_GAP = 100_000  # rowids probed past a damaged page before a table is taken as ended
STEP = 16  # probe spacing past a damaged page (fewer rows than a page holds)
_EXTRA = {"meta": ("key", "value"), "jobs": ("key", "status", "detail", "finished_at")}


class StoreDamagedError(RuntimeError):
    """A run store SQLite cannot read; the message names the file and the repair command."""

    def __init__(self, path: Path, reason: str, hint: str | None = None):
        self.path = Path(path)
        run = self.path.parent
        hint = hint or (f"`goldenlayers run {run / 'config.yaml'} --root {run.parent} --repair` keeps every "
                        "readable row and resumes the run")
        super().__init__(f"run store {self.path} is damaged ({reason}); {hint}")


def check_store(path: str | Path) -> None:
    """Raise StoreDamagedError when SQLite finds the store at `path` damaged (quick_check); a missing file is
    fine (it will be created)."""
    path = Path(path)
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(str(path))
        try:
            result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise StoreDamagedError(path, str(e)) from None
    if result != ["ok"]:
        problems = [ln.strip() for r in result for ln in str(r).splitlines()
                    if ln.strip() and not ln.startswith("***")]
        more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
        raise StoreDamagedError(path, f"SQLite quick_check: {problems[0] if problems else result[0]}{more}")


def _read(conn: sqlite3.Connection, sel: str, rowid: int) -> tuple | None:
    try:
        return conn.execute(f"{sel} WHERE rowid = ?", (rowid,)).fetchone()
    except sqlite3.DatabaseError:
        return None


def _salvage(conn: sqlite3.Connection, table: str, cols: tuple[str, ...]) -> list[tuple]:
    """Every readable row of `table`, in rowid order (see the module docstring): a scan until a read fails, then
    probes past the damage (rowid +1, +2, +4, ... +STEP, then every STEP up to MAX_GAP) for the next readable
    row, the rowids between the last failed probe and it read one by one, and the scan goes on from there."""
    sel = f"SELECT rowid, {', '.join(cols)} FROM {table}"
    rows: list[tuple] = []
    last = -(1 << 62)
    while True:
        try:
            for r in conn.execute(f"{sel} WHERE rowid > ? ORDER BY rowid", (last,)):
                rows.append(r[1:])
                last = r[0]
            return rows
        except sqlite3.DatabaseError:
            pass
        base = max(last, 0)
        offsets = [1 << k for k in range(STEP.bit_length())] + list(range(2 * STEP, MAX_GAP, STEP))
        prev, hit = 0, None
        for off in offsets:
            if (r := _read(conn, sel, base + off)) is not None:
                hit = off
                break
            prev = off
        if hit is None:
            return rows
        for off in range(prev + 1, hit + 1):  # the rows between the last miss and the hit, then the hit
            if (r := _read(conn, sel, base + off)) is not None:
                rows.append(r[1:])
        last = base + hit


def _readable_copy(path: Path) -> Path:
    """A copy of the damaged store (and its -wal) that SQLite can open: a truncated file is padded with zero
    pages up to the size its header records (SQLite refuses a file shorter than that), so that the pages still
    there can be read."""
    copy = path.with_name(path.name + ".salvage")
    shutil.copyfile(path, copy)
    wal = Path(f"{path}-wal")
    if wal.exists():
        shutil.copyfile(wal, Path(f"{copy}-wal"))
    head = copy.read_bytes()[:100] if copy.stat().st_size >= 100 else b""
    if head.startswith(b"SQLite format 3\x00"):
        page = int.from_bytes(head[16:18], "big")
        page = 65536 if page == 1 else page
        pages = int.from_bytes(head[28:32], "big")
        if copy.stat().st_size < page * pages:
            with open(copy, "r+b") as f:
                f.truncate(page * pages)
    return copy


def repair_store(path: str | Path) -> dict[str, int]:
    """Replace the damaged store at `path` by a fresh one holding every row that can be read from it; the
    damaged file is kept as <name>.damaged-<timestamp>. Returns {table: rows kept}."""
    from goldenlayers.runs.store import Store

    path = Path(path)
    tables = {name: spec.names for name, spec in TABLES.items()} | _EXTRA
    kept: dict[str, list[tuple]] = {}
    copy = _readable_copy(path)
    try:
        conn = sqlite3.connect(str(copy))
        try:
            for table, cols in tables.items():
                try:
                    kept[table] = _salvage(conn, table, cols)
                except sqlite3.DatabaseError:  # the table itself cannot be found (the schema page is lost)
                    kept[table] = []
        finally:
            conn.close()
    finally:
        for p in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            p.unlink(missing_ok=True)
    fresh = path.with_name(path.name + ".repairing")
    for p in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        p.unlink(missing_ok=True)
    store = Store(fresh)
    try:
        with store.transaction():
            for table, rows in kept.items():
                if table == "meta":
                    rows = [r for r in rows if r[0] != "schema_version"]
                marks = ", ".join("?" * len(tables[table]))
                store.conn.executemany(f"INSERT OR IGNORE INTO {table} ({', '.join(tables[table])}) VALUES ({marks})",
                                       rows)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    stamp = now().replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{path}.damaged-{stamp}{suffix}"))
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    return {table: len(rows) for table, rows in kept.items() if table != "meta"}
