"""Benchmark datasets as EditCase lists (docs/formats.md): KnowEdit, CounterFact, the synthetic world's exports.

`load_dataset(name, path, limit=None, shuffle_seed=None)` reads a published file unchanged; `split_cases` and
`proxy_union` build the proxy/test splits of the paper (section 3). The synthetic world lives in
`goldenlayers.datasets.synthetic` and is not imported here.
"""

from goldenlayers.datasets.counterfact import read_counterfact
from goldenlayers.datasets.knowedit import KNOWEDIT_DATASETS, read_knowedit
from goldenlayers.datasets.loading import DatasetFileError, LoadReport, Skipped, answer_aliases
from goldenlayers.datasets.registry import (
    DatasetSpec,
    LoadedDataset,
    available_datasets,
    get_dataset,
    load_dataset,
    register_dataset,
)
from goldenlayers.datasets.split import Split, hash_unit, proxy_size, proxy_union, shuffle_cases, split_cases

__all__ = [
    "KNOWEDIT_DATASETS",
    "DatasetFileError",
    "DatasetSpec",
    "LoadReport",
    "LoadedDataset",
    "Skipped",
    "Split",
    "answer_aliases",
    "available_datasets",
    "get_dataset",
    "hash_unit",
    "load_dataset",
    "proxy_size",
    "proxy_union",
    "read_counterfact",
    "read_knowedit",
    "register_dataset",
    "shuffle_cases",
    "split_cases",
]
