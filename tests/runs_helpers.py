"""Helpers shared by the run tests: a config written as YAML into a temporary folder (its runs land below it) and
the key columns of the results table."""

from pathlib import Path

import yaml

RESULT_KEY = "model, dataset, case_id, method, selector, layer, metric"


def write_config(tmp: Path, name: str, config: dict) -> Path:
    """`config` named `name`, with its output folder tmp/runs, saved as tmp/<name>.yaml."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(config, name=name, output_dir=str(tmp / "runs"))))
    return path
