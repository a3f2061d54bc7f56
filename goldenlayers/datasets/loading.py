"""Reading benchmark files: JSON lists, answer shapes, and the report of skipped records (docs/formats.md).

Every reader turns one published file into EditCase records. What they share lives here:
- `json_records(path)`: the records of a JSON list, decoded one at a time while the file is read in 1 MiB
  chunks (json.JSONDecoder.raw_decode), so that `load_dataset(..., limit=N)` stops reading once it has N usable
  cases and a large file shows a progress bar over its bytes (`reading(limit, progress)` sets both for the
  readers). Bad JSON, a missing file or another top-level type is a `DatasetFileError` naming the file.
  `read_json_list(path)` is the whole list.
- `answer_aliases(value, case_id, field)`: KnowEdit answers come as a string, a list of aliases, or a list of
  alias lists (WikiData_recent: `[["Kai Wegner", "Kai Peter Wegner"]]`). All aliases are kept, flattened in order
  without repeats, so `aliases[0]` (the first alias of the first list) is the one scored by default.
- `LoadReport`: a malformed record (missing field, wrong type, subject not in the prompt, empty target) is skipped
  and listed with its index and reason; a malformed optional probe (one locality or portability prompt) drops
  only that probe and is listed under `dropped_probes`.
"""

from __future__ import annotations

import codecs
import contextvars
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from goldenlayers.cases import CaseError, EditCase, case_error_from


class DatasetFileError(ValueError):
    """A benchmark file that cannot be read at all (missing, bad JSON, not a list). Names the file."""


@dataclass(frozen=True)
class Skipped:
    """One record or probe left out: its index in the file, case id, the field at fault and why."""

    index: int
    case_id: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"record {self.index} (case {self.case_id!r}), field {self.field!r}: {self.reason}"


@dataclass
class LoadReport:
    """What a reader did with a file: records seen, cases loaded, records skipped and probes dropped (with reasons)."""

    dataset: str
    path: str
    records: int = 0
    loaded: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    dropped_probes: list[Skipped] = field(default_factory=list)
    stopped_early: bool = False  # reading stopped once `limit` cases were loaded (the rest of the file unread)

    def summary(self) -> str:
        of = f"the first {self.records}" if self.stopped_early else f"{self.records}"
        s = f"{self.dataset}: {self.loaded} of {of} records loaded from {self.path}"
        if self.stopped_early:
            s += " (stopped at the limit; the rest of the file was not read)"
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
        if self.dropped_probes:
            s += f"; {len(self.dropped_probes)} probe(s) dropped"
        return s


_STOP_AFTER: contextvars.ContextVar[int | None] = contextvars.ContextVar("stop_after", default=None)
_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("progress", default=False)
CHUNK = 1 << 20  # characters read at a time
PROGRESS_BYTES = 8 << 20  # files at least this large show a progress bar (when asked for)
_FOUND = {"{": "dict", '"': "str", "t": "bool", "f": "bool", "n": "null"}


@contextmanager
def reading(stop_after: int | None = None, progress: bool = False):
    """Within the block, `convert_records` stops once `stop_after` cases are loaded (None: read everything) and
    `json_records` shows a progress bar over the bytes of a large file when `progress`."""
    tokens = _STOP_AFTER.set(stop_after), _PROGRESS.set(progress)
    try:
        yield
    finally:
        _STOP_AFTER.reset(tokens[0])
        _PROGRESS.reset(tokens[1])


@contextmanager
def _byte_progress(p: Path, size: int):
    if not (_PROGRESS.get() and size >= PROGRESS_BYTES):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"reading {p.name}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("read", total=size)
        yield lambda n: bar.advance(task, n)


def json_records(path: str | Path, chunk: int = CHUNK) -> Iterator:
    """The records of the JSON list in `path`, one at a time, reading `chunk` characters at a time (see the
    module docstring); DatasetFileError naming the file when it is missing, not UTF-8, not JSON or not a list."""
    p = Path(path)
    if not p.is_file():
        raise DatasetFileError(f"dataset file {str(p)!r} does not exist")
    decoder, text = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")()
    size = p.stat().st_size
    with p.open("rb") as f, _byte_progress(p, size) as advance:
        buf, pos, done, consumed = "", 0, False, 0  # consumed: characters dropped from the front of buf

        def more() -> bool:
            nonlocal buf, pos, done, consumed
            if done:
                return False
            raw = f.read(chunk)
            advance(len(raw))
            try:
                new = text.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise DatasetFileError(f"dataset file {str(p)!r} is not valid UTF-8 text: {e}") from e
            consumed += pos
            buf, pos, done = buf[pos:] + new, 0, not raw
            return True

        def skip_ws() -> str:
            """The next non-blank character ('' at the end of the file)."""
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos:pos + 1]

        def bad(what: str):
            return DatasetFileError(f"dataset file {str(p)!r} is not valid JSON: {what} at character "
                                    f"{consumed + pos}")

        first = skip_ws()
        if first != "[":
            if not first:
                raise DatasetFileError(f"dataset file {str(p)!r} is empty; it must hold a JSON list of records")
            found = _FOUND.get(first, "number" if first in "-0123456789" else None)
            if found is None:
                raise bad(f"unexpected {first!r}")
            raise DatasetFileError(f"dataset file {str(p)!r} must hold a JSON list of records, found {found}")
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            skip_ws()
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if more():
                        continue
                    raise bad(e.msg) from None
                if end < len(buf) or done or not more():  # a value that ends the buffer may go on (a number)
                    break
            pos = end
            yield value
            sep = skip_ws()
            if sep == "]":
                return
            if sep != ",":
                raise bad("expected ',' or ']' after a record" if sep else "the list is not closed")
            pos += 1


def read_json_list(path: str | Path) -> list:
    """The whole top-level JSON list of `path` (json_records); anything else is a DatasetFileError naming it."""
    return list(json_records(path))


def require(record: dict, key: str, case_id: str, kind: type | tuple[type, ...] = str):
    """record[key], checked for presence and type (CaseError naming the case and field otherwise)."""
    if key not in record:
        raise CaseError(case_id, key, "field is missing")
    if record[key] is None:
        raise CaseError(case_id, key, "field is null; a value is needed")
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CaseError(case_id, key, f"expected {names}, found {type(value).__name__}")
    return value


def answer_aliases(value, case_id: str, field: str) -> list[str]:
    """All aliases of an answer given as a string, a list of strings, or a list of alias lists (flattened, in order)."""
    if value is None:
        raise CaseError(case_id, field, "field is missing or null")
    if isinstance(value, str):
        flat = [value]
    elif isinstance(value, list):
        flat = []
        for item in value:
            if isinstance(item, str):
                flat.append(item)
            elif isinstance(item, list) and all(isinstance(a, str) for a in item):
                flat.extend(item)
            else:
                raise CaseError(case_id, field, f"answer list holds a {type(item).__name__}, expected strings or lists of strings")
    else:
        raise CaseError(case_id, field, f"answer must be a string or a list, found {type(value).__name__}")
    out: list[str] = []
    for a in flat:
        if a.strip() and a not in out:
            out.append(a)
    if not out:
        raise CaseError(case_id, field, "answer is empty")
    return out


def first_answer(value, case_id: str, field: str) -> str:
    """The first alias of an answer (for `target_new`, which an EditCase holds as one string)."""
    return answer_aliases(value, case_id, field)[0]


def build_case(**fields) -> EditCase:
    """EditCase(**fields), with pydantic's validation errors turned into the CaseError (case, field, reason) inside."""
    try:
        return EditCase(**fields)
    except ValidationError as e:
        raise case_error_from(e, fields.get("case_id")) from None


def convert_records(data: Iterable, dataset: str, path, convert) -> tuple[list[EditCase], LoadReport]:
    """Apply `convert(record, index, report) -> EditCase` to every record; skip and report the malformed ones.
    Inside `reading(stop_after=N)` it stops once N cases are loaded (report.stopped_early when records remain)."""
    report = LoadReport(dataset, str(path))
    cases, stop = [], _STOP_AFTER.get()
    records = iter(data)
    for i, rec in enumerate(records):
        report.records = i + 1
        if stop is not None and len(cases) >= stop:
            report.records, report.stopped_early = i, True
            break
        try:
            if not isinstance(rec, dict):
                raise CaseError(str(i), "<record>", f"expected a JSON object, found {type(rec).__name__}")
            cases.append(convert(rec, i, report))
        except CaseError as e:
            report.skipped.append(Skipped(i, e.case_id, e.field, e.reason))
    if hasattr(records, "close"):
        records.close()  # a generator stopped early closes its file
    report.loaded = len(cases)
    return cases, report


def probes(group, case_id: str, field: str, index: int, report: LoadReport) -> list[tuple[str, list[str], str]]:
    """(prompt, aliases, category) of every probe in a KnowEdit group dict {category: [{prompt, ground_truth}]}.

    A missing group gives no probes; a malformed probe is dropped and recorded in `report.dropped_probes`.
    """
    if group is None:
        return []
    if not isinstance(group, dict):
        raise CaseError(case_id, field, f"expected a dict of categories, found {type(group).__name__}")
    out = []
    for category, items in group.items():
        where = f"{field}.{category}"
        if items is None:
            continue
        if not isinstance(items, list):
            report.dropped_probes.append(Skipped(index, case_id, where, f"expected a list, found {type(items).__name__}"))
            continue
        for j, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise CaseError(case_id, f"{where}[{j}]", f"expected a dict, found {type(item).__name__}")
                prompt = item.get("prompt")
                if not isinstance(prompt, str) or not prompt.strip():
                    raise CaseError(case_id, f"{where}[{j}].prompt", "prompt is missing, empty or not a string")
                out.append((prompt, answer_aliases(item.get("ground_truth"), case_id, f"{where}[{j}].ground_truth"),
                            str(category)))
            except CaseError as e:
                report.dropped_probes.append(Skipped(index, case_id, e.field, e.reason))
    return out
