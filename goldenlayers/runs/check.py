"""What `goldenlayers run CONFIG --dry-run` checks beyond the config's shape (docs/runs.md): everything that can
be resolved without loading weights or editing, so that a run does not fail an hour in on a typo.

- models: the embedded default or local folder exists and is a saved model of a supported architecture
  (config.json and safetensors; goldenlayers.models.loader.check_local_folder), its layer count read from
  config.json; a GGUF file (or a folder holding one) has its layer count read from the file's metadata; a name
  that is neither is a Hugging Face name, noted (it is resolved when the run loads it);
- datasets: the file exists and has usable records (read with the dataset's limit; skipped records counted), or,
  for `world` without a file, every model has the synthetic world (world.json) to sample from;
- brute-force layers: inside every model's 0..L-1;
- methods: the hparams overrides (and preset) resolve to valid editing settings for every model (unknown keys
  named, with the closest setting);
- key statistics: when those settings use C, the text source (`stats.source`, else the model's world) resolves.

`check_config(config, base)` returns (notes, problems): one line each, problems naming the config path at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from goldenlayers.registry import did_you_mean
from goldenlayers.runs.config import ExperimentConfig, ModelSpec


def _n_layers(config: dict) -> int | None:
    """The number of transformer blocks a config.json records (text_config for multimodal wrappers)."""
    for cfg in (config, config.get("text_config") or {}):
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(cfg.get(key), int):
                return cfg[key]
    return None


def _model(spec: ModelSpec, where: str, notes: list[str], problems: list[str]) -> tuple[Path | None, int | None]:
    """(model folder or None for a hub name, layer count or None) of one model, checked without its weights."""
    from goldenlayers.models.gguf import find_gguf
    from goldenlayers.models.loader import check_local_folder, resolve_model_path

    try:
        folder = Path(resolve_model_path(spec.source)).expanduser()
    except (OSError, ValueError, KeyError) as e:
        problems.append(f"{where}: {e.args[0] if isinstance(e, KeyError) else e}")
        return None, None
    if not folder.exists():
        if spec.path is not None or spec.source.startswith((".", "/", "~")):
            problems.append(f"{where}: model folder {folder} does not exist")
        else:
            notes.append(f"{where}: {spec.source} is not a local folder; taken as a Hugging Face name, resolved "
                         "when the run loads it (not checked here)")
        return None, None
    try:
        gguf = find_gguf(folder)  # None for a model folder with config.json
    except ValueError as e:  # a folder of several GGUF files
        problems.append(f"{where}: {e}")
        return None, None
    if gguf is not None:
        return _gguf_model(gguf, where, notes, problems)
    try:
        check_local_folder(str(folder))
        n = _n_layers(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, KeyError) as e:
        problems.append(f"{where}: {str(e).splitlines()[0] if not isinstance(e, KeyError) else e}")
        return None, None
    notes.append(f"{where}: {folder} ({n} layers)")
    return folder, n


def _gguf_model(path: Path, where: str, notes: list[str], problems: list[str]) -> tuple[Path | None, int | None]:
    """A GGUF file: its layer count from the file's metadata (converted when the run loads it)."""
    from goldenlayers.models.gguf import require_gguf
    from goldenlayers.models.gguf_checks import gguf_block_count

    try:
        require_gguf()
        n = gguf_block_count(path)
    except Exception as e:  # a missing extra, a file that is not GGUF
        problems.append(f"{where}: {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None, None
    notes.append(f"{where}: {path} (GGUF, {n} layers; converted when the run loads it)")
    return path, n


def _settings(config: ExperimentConfig, model: ModelSpec, where: str, problems: list[str]) -> list:
    """The resolved editing settings of every method for `model` (problems for the ones that do not resolve)."""
    from goldenlayers.editing import get_method
    from goldenlayers.runs.engine_jobs import method_settings
    from goldenlayers.runs.plan import Job

    out = []
    for i, method in enumerate(config.methods):
        job = Job("evaluate", model.name, config.datasets[0].name, "test", method=method.name)
        try:
            hp = method_settings(config, job, None, model.source)
        except ValidationError as e:
            for err in e.errors():
                key = ".".join(str(p) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    near = did_you_mean(key, get_method(method.name).settings.model_fields)
                    msg = "unknown setting" + (f" (did you mean {near[0]!r}?)" if near else "")
                else:
                    msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"methods[{i}].hparams{'.' + key if key else ''}: {msg} ({where})")
            continue
        except (KeyError, ValueError) as e:
            problems.append(f"methods[{i}]: {e.args[0] if isinstance(e, KeyError) else e} ({where})")
            continue
        out.append((i, hp))
    return out


def check_config(config: ExperimentConfig, base: str | Path = ".") -> tuple[list[str], list[str]]:
    """(notes, problems) of a validated config (see the module docstring)."""
    from goldenlayers.datasets import DatasetFileError, load_dataset
    from goldenlayers.editing.sources import SourceError, model_world_source, open_source

    notes: list[str] = []
    problems: list[str] = []
    bf = config.selectors.bruteforce
    for m in config.models:
        where = f"models[{m.name}]"
        folder, n = _model(m, where, notes, problems)
        if n is not None and bf is not None and bf.layers != "all":
            bad = [x for x in bf.layers if not 0 <= x < n]
            if bad:
                problems.append(f"selectors.bruteforce.layers: {bad} outside {m.name}'s layers 0..{n - 1}")
        for i, hp in _settings(config, m, where, problems):
            if n is not None and hp.layers and any(not 0 <= x < n for x in hp.layers):
                problems.append(f"methods[{i}]: the settings' layers {hp.layers} are outside {m.name}'s layers "
                                f"0..{n - 1}")
            if hp.mom2_adjustment:
                spec = config.stats.source or model_world_source(m.source)
                if spec is None:
                    problems.append(f"stats.source: methods[{i}] use key statistics C and {m.name} has no synthetic "
                                    "world to take them from; set stats.source")
                    continue
                try:
                    open_source(spec)
                except SourceError as e:
                    problems.append(f"stats.source: {e}")
        for ds in config.datasets:
            if ds.name == "world" and ds.file is None and folder is not None and \
                    not (folder / "world.json").is_file():
                problems.append(f"datasets[{ds.name}]: no file, and {m.name} has no synthetic world "
                                f"({folder / 'world.json'}) to sample cases from; give the dataset a file")
    for ds in config.datasets:
        if ds.file is None:
            continue
        path = config.dataset_file(ds, base)
        try:
            data = load_dataset(ds.name, path, limit=ds.limit, progress=True)
        except (DatasetFileError, ValueError, KeyError) as e:
            problems.append(f"datasets[{ds.name}].file: {e.args[0] if isinstance(e, KeyError) else e}")
            continue
        notes.append(f"datasets[{ds.name}]: {data.report.summary()}")
        if not data.cases:
            problems.append(f"datasets[{ds.name}].file: no usable case in {path}")
    return list(dict.fromkeys(notes)), list(dict.fromkeys(problems))
