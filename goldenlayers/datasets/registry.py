"""Datasets and `load_dataset` (docs/formats.md; the registry is goldenlayers.registry.DATASETS, docs/design.md
"Registries").

Names: zsre, wikibio, wiki_counterfact, wiki_recent (KnowEdit), counterfact (ROME), zsre_mend / zsre_mend_rome (the
MEND-style zsRE file under EasyEdit's and ROME's conventions), known / known_counterfact (ROME's known_1000.json),
and world (the synthetic world's exports: its exporter writes the KnowEdit wiki_counterfact shape or the CounterFact
shape, and the reader picks by the first record, so `goldenlayers.datasets.synthetic` is never imported to read
them), and realfacts (the real-world fact set's exports, read the same way; without a file the commands
build the set itself, docs/realfacts.md). A file from which a reader loads no case is checked against the other formats (datasets.sniff): one that
is in another format raises DatasetFileError "this looks like a <format> file: use --dataset X".

`load_dataset(name, path)` reads a file (or finds the usual file name inside a directory, e.g. the unzipped
KnowEdit folder), skips malformed records into the LoadReport, then optionally shuffles (seeded, see
goldenlayers.datasets.split.shuffle_cases) and keeps the first `limit` cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goldenlayers.cases import EditCase
from goldenlayers.datasets.counterfact import read_counterfact
from goldenlayers.datasets.knowedit import read_knowedit
from goldenlayers.datasets.known import read_known
from goldenlayers.datasets.loading import DatasetFileError, LoadReport, json_records, read_json_list, reading
from goldenlayers.datasets.sniff import format_hint
from goldenlayers.datasets.split import Split, shuffle_cases, split_cases
from goldenlayers.datasets.zsre_mend import read_zsre_mend
from goldenlayers.registry import DATASETS

Reader = Callable[[Path, str], tuple[list[EditCase], LoadReport]]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its reader(path, name), the file names it is published under (test split first) and
    its name in report tables (default: `name`)."""

    name: str
    description: str
    reader: Reader
    files: tuple[str, ...] = ()
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass
class LoadedDataset:
    """The cases of one file plus the report of what was skipped. Iterates and indexes like the case list."""

    name: str
    path: str
    cases: list[EditCase]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def __getitem__(self, i):
        return self.cases[i]

    def split(self, proxy_fraction: float = 0.1, seed: int = 0) -> Split:
        """Proxy/test split of these cases: exactly round(proxy_fraction x N) proxy cases, in a seeded hash order."""
        return split_cases(self.cases, proxy_fraction, seed)


def register_dataset(spec: DatasetSpec, *, replace: bool = False, aliases: tuple[str, ...] = ()) -> DatasetSpec:
    """Add `spec` to goldenlayers.registry.DATASETS (NameCollisionError, a ValueError, when the name is taken)."""
    DATASETS.register(spec.name, spec, aliases=aliases, replace=replace)
    return spec


def available_datasets() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str) -> DatasetSpec:
    """The dataset registered as `name`; UnknownNameError (a KeyError) saying "did you mean" else."""
    return DATASETS.get(name)


def _resolve_path(spec: DatasetSpec, path: str | Path | None) -> Path:
    if path is None:
        raise DatasetFileError(f"dataset {spec.name!r} needs a file: pass its path (published as "
                               f"{' or '.join(spec.files) or 'a JSON list'}; nothing is downloaded)")
    p = Path(path)
    if p.is_dir():
        for fname in spec.files:
            hits = sorted(p.rglob(fname))
            if hits:
                return hits[0]
        raise DatasetFileError(f"no {' / '.join(spec.files)} found under directory {str(p)!r} for dataset {spec.name!r}")
    return p


def load_dataset(name: str, path: str | Path | None, limit: int | None = None,
                 shuffle_seed: int | None = None, progress: bool = False) -> LoadedDataset:
    """Read dataset `name` from `path` (a file, or a directory holding its usual file name) as EditCases.

    shuffle_seed: order the cases by a seeded hash first (deterministic); limit: keep the first `limit` cases
    after that (limit >= 1, None: every case; without shuffle_seed reading stops once `limit` cases are loaded).
    progress: a progress bar over the bytes of a large file. Malformed records are skipped and listed in
    `.report`; a file that is not a JSON list raises DatasetFileError naming it.
    """
    spec = get_dataset(name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (leave it out for every case), got {limit}")
    p = _resolve_path(spec, path)
    with reading(stop_after=limit if shuffle_seed is None else None, progress=progress):
        cases, report = spec.reader(p, name)
    if not cases and report.records:
        hint = format_hint(name, read_json_list(p))
        if hint:
            raise DatasetFileError(f"dataset file {str(p)!r}: {hint}")
    if shuffle_seed is not None:
        cases = shuffle_cases(cases, shuffle_seed)
    if limit is not None:
        cases = cases[:limit]
    return LoadedDataset(name, str(p), cases, report)


def _read_export(path: Path, name: str) -> tuple[list[EditCase], LoadReport]:
    """A file written by the project's exporters (synthetic world, real facts): CounterFact shape when the first
    record has `requested_rewrite`, else KnowEdit wiki_counterfact."""
    records = json_records(path)
    first = next(records, None)
    records.close()
    if isinstance(first, dict) and "requested_rewrite" in first:
        return read_counterfact(path, name)
    return read_knowedit(path, "wiki_counterfact", name)


def _knowedit(shape: str) -> Reader:
    return lambda path, name: read_knowedit(path, shape, name)


for _spec in (
    DatasetSpec("zsre", "KnowEdit ZsRE (question answering; rephrase, locality, portability)", _knowedit("zsre"),
                ("ZsRE-test-all.json",), "ZsRE"),
    DatasetSpec("wikibio", "KnowEdit WikiBio (hallucination; passage continuation, locality)", _knowedit("wikibio"),
                ("wikibio-test-all.json",), "WikiBio"),
    DatasetSpec("wiki_counterfact", "KnowEdit WikiData_counterfact (locality, portability)",
                _knowedit("wiki_counterfact"), ("test_cf.json",), "WikiCounterfact"),
    DatasetSpec("wiki_recent", "KnowEdit WikiData_recent (insertion; locality, portability)",
                _knowedit("wiki_recent"), ("recent_test.json",), "WikiRecent"),
    DatasetSpec("counterfact", "ROME CounterFact (paraphrase, neighborhood locality)", read_counterfact,
                ("counterfact.json", "multi_counterfact.json"), "Counterfact"),
    DatasetSpec("world", "the synthetic world's exported cases (KnowEdit wiki_counterfact or CounterFact shape)",
                _read_export, ("test_cf.json", "counterfact.json"), "World"),
    DatasetSpec("realfacts", "real countries and cities from GeoNames (`goldenlayers realfacts` exports; no file: "
                "built, and filtered to the facts the model knows)", _read_export, ("test_cf.json", "counterfact.json"),
                "RealFacts"),
    DatasetSpec("zsre_mend", "MEND-style zsRE as EasyEdit/KnowEdit read it (towards `alt`; rephrase, NQ locality)",
                lambda path, name: read_zsre_mend(path, "easyedit", name), ("zsre_mem_eval.json", "zsre_mend_eval.json")),
    DatasetSpec("zsre_mend_rome", "MEND-style zsRE as ROME/MEMIT read it (towards `answers[0]`; rephrase, NQ locality)",
                lambda path, name: read_zsre_mend(path, "rome", name), ("zsre_mem_eval.json", "zsre_mend_eval.json")),
    DatasetSpec("known", "ROME known_1000.json as published (no new target: for CMA and known-fact filtering)",
                lambda path, name: read_known(path, "attribute", name), ("known_1000.json",)),
    DatasetSpec("known_counterfact", "ROME known_1000.json with CounterFact's target_new (another record's "
                "attribute of the same relation)", lambda path, name: read_known(path, "counterfact", name),
                ("known_1000.json",)),
):
    register_dataset(_spec)
