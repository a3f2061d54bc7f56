"""Reading benchmark files: JSON lists, answer shapes, and the report of skipped records (REFERENCE.md section 5).

Every reader turns one published file into EditCase records. What they share lives here:
- `read_json_list(path)`: the file must be a JSON list; bad JSON, a missing file or another top-level type is a
  `DatasetFileError` naming the file (the whole file is unusable).
- `answer_aliases(value, case_id, field)`: KnowEdit answers come as a string, a list of aliases, or a list of
  alias lists (WikiData_recent: `[["Kai Wegner", "Kai Peter Wegner"]]`). All aliases are kept, flattened in order
  without repeats, so `aliases[0]` (the first alias of the first list) is the one scored by default.
- `LoadReport`: a malformed record (missing field, wrong type, subject not in the prompt, empty target) is skipped
  and listed with its index and reason; a malformed optional probe (one locality or portability prompt) drops
  only that probe and is listed under `dropped_probes`.
"""

from __future__ import annotations

import json
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

    def summary(self) -> str:
        s = f"{self.dataset}: {self.loaded} of {self.records} records loaded from {self.path}"
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
        if self.dropped_probes:
            s += f"; {len(self.dropped_probes)} probe(s) dropped"
        return s


def read_json_list(path: str | Path) -> list:
    """The top-level JSON list of `path`; anything else is a DatasetFileError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DatasetFileError(f"dataset file {str(p)!r} does not exist")
    try:
        with p.open(encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFileError(f"dataset file {str(p)!r} is not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise DatasetFileError(f"dataset file {str(p)!r} must hold a JSON list of records, found {type(data).__name__}")
    return data


def require(record: dict, key: str, case_id: str, kind: type | tuple[type, ...] = str):
    """record[key], checked for presence and type (CaseError naming the case and field otherwise)."""
    if key not in record or record[key] is None:
        raise CaseError(case_id, key, "field is missing")
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CaseError(case_id, key, f"expected {names}, found {type(value).__name__}")
    return value


def answer_aliases(value, case_id: str, field: str) -> list[str]:
    """All aliases of an answer given as a string, a list of strings, or a list of alias lists (flattened, in order)."""
    if value is None:
        raise CaseError(case_id, field, "field is missing")
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


def convert_records(data: list, dataset: str, path, convert) -> tuple[list[EditCase], LoadReport]:
    """Apply `convert(record, index, report) -> EditCase` to every record; skip and report the malformed ones."""
    report = LoadReport(dataset, str(path), records=len(data))
    cases = []
    for i, rec in enumerate(data):
        try:
            if not isinstance(rec, dict):
                raise CaseError(str(i), "<record>", f"expected a JSON object, found {type(rec).__name__}")
            cases.append(convert(rec, i, report))
        except CaseError as e:
            report.skipped.append(Skipped(i, e.case_id, e.field, e.reason))
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
