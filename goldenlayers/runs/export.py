"""Export a run store's tables (results, selectors, failures; schema in goldenlayers.runs.schema) to CSV or
Parquet, and read an export back with the schema's types (so an export round-trips to the same rows).

Parquet needs pyarrow (`pip install "goldenlayers[parquet]"`); without it a clear error says so. Rows stream
out of SQLite in chunks, so large stores never sit in memory as Python dicts (CSV) or only as columns (Parquet).
"""

from __future__ import annotations

import csv
from pathlib import Path

from goldenlayers.runs.schema import TABLES, TableSpec
from goldenlayers.runs.store import Store

FORMATS = ("csv", "parquet")
_CHUNK = 50_000


class MissingDependencyError(ImportError):
    pass


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingDependencyError("Parquet export needs pyarrow: pip install pyarrow "
                                     "(or pip install \"goldenlayers[parquet]\"); CSV export works without it") from None
    return pyarrow


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")


def _arrow_schema(pa, spec: TableSpec):
    types = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}
    return pa.schema([pa.field(c.name, types[c.sql], nullable=c.nullable) for c in spec.columns])


def export_store(store: Store, dest: str | Path, fmt: str = "csv") -> list[Path]:
    """Write <dest>/<table>.<fmt> for every table; returns the written paths."""
    _check(fmt)
    pa = _pyarrow() if fmt == "parquet" else None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in TABLES.values():
        path = dest / f"{spec.name}.{fmt}"
        cur = store.conn.execute(f"SELECT {', '.join(spec.names)} FROM {spec.name} ORDER BY {', '.join(spec.key)}")
        if fmt == "csv":
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(spec.names)
                while chunk := cur.fetchmany(_CHUNK):
                    w.writerows(["" if v is None else v for v in row] for row in chunk)
        else:
            schema = _arrow_schema(pa, spec)
            with pa.parquet.ParquetWriter(str(path), schema) as w:
                while chunk := cur.fetchmany(_CHUNK):
                    cols = list(zip(*chunk, strict=True))
                    w.write_table(pa.table([pa.array(c, t) for c, t in zip(cols, schema.types, strict=True)],
                                           schema=schema))
        paths.append(path)
    return paths


def _typed(spec: TableSpec, row: dict) -> dict:
    out = {}
    for c in spec.columns:
        v = row[c.name]
        if v == "" and c.nullable:
            out[c.name] = None
        else:
            out[c.name] = int(v) if c.sql == "INTEGER" else float(v) if c.sql == "REAL" else v
    return out


def read_export(src: str | Path, fmt: str = "csv") -> dict[str, list[dict]]:
    """The rows of an export directory, typed as in the store: {table: [row dict, ...]} in key order."""
    _check(fmt)
    src, out = Path(src), {}
    for spec in TABLES.values():
        path = src / f"{spec.name}.{fmt}"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {src} an export of a run store?")
        if fmt == "csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            out[spec.name] = [_typed(spec, r) for r in rows]
        else:
            out[spec.name] = _pyarrow().parquet.read_table(str(path)).to_pylist()
    return out
