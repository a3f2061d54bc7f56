"""Experiment runs: YAML configs, the resumable run directory and SQLite store, shards, exports, the job plan.

See docs/runs.md. Row schema: `goldenlayers.runs.schema`.
"""

from goldenlayers.runs.config import ConfigError, ExperimentConfig, dump_config, load_config, validate_config
from goldenlayers.runs.export import export_store, read_export
from goldenlayers.runs.plan import (
    Engine,
    ExecuteSummary,
    Job,
    execute,
    plan,
    reopen_failed_cells,
)
from goldenlayers.runs.repair import StoreDamagedError, repair_store
from goldenlayers.runs.rundir import ConfigMismatchError, RunDir, RunLockedError, config_diff, versions
from goldenlayers.runs.schema import HIGHER_IS_BETTER, METRICS, SPLITS, RowError
from goldenlayers.runs.store import Store, merge_shards, shard_path

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "SPLITS",
    "ConfigError",
    "ConfigMismatchError",
    "Engine",
    "ExecuteSummary",
    "ExperimentConfig",
    "Job",
    "RowError",
    "RunDir",
    "RunLockedError",
    "Store",
    "StoreDamagedError",
    "config_diff",
    "dump_config",
    "execute",
    "export_store",
    "load_config",
    "merge_shards",
    "plan",
    "reopen_failed_cells",
    "repair_store",
    "read_export",
    "shard_path",
    "validate_config",
    "versions",
]
