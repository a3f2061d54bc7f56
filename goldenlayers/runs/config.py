"""Experiment configs: the YAML grid of models x datasets x editing methods x layer selectors (paper section 4
and Appendix A: five datasets, a 10% proxy / 90% test split, R-ROME, EMMET and ROME, LGA vs CMA vs brute force).

Every section is a pydantic model with extra="forbid": an unknown key is an error that names its path
("selectors.lga.kk: unknown key; allowed: ... (did you mean 'k'?)"). `load_config(path)` reads and validates a
file, `dump_config(config)` writes the resolved config (every default filled in) with the command that runs it.
Dataset files follow docs/formats.md; a relative `file` is read from the config's `data_dir`. Dataset, method,
selector and metric names are checked against their registries (goldenlayers.registry: the names `goldenlayers ls`
lists), and each selector's settings by its own settings class (`selectors: {lga: {k: 1.5}, cma: {window: 10}}`). Method
`hparams` are overrides on the editor's per-model presets (goldenlayers.editing.hparams), or on the named
`preset`, checked by the editor when the run executes; `stats` says where the key statistics come from when
those settings need them.
"""

from __future__ import annotations

import functools
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from goldenlayers.editing.hparams import StatsSettings
from goldenlayers.metric_names import FAMILIES, expand_metrics
from goldenlayers.registry import DATASETS, METHODS, SELECTORS, Registry, did_you_mean
from goldenlayers.runs.errors import ConfigError, problems
from goldenlayers.runs.schema import METRICS, STORED_METRICS

FILELESS_DATASETS = ("world", "realfacts")  # built by the package when no file is given


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def known(value: str, allowed: tuple[str, ...] | Registry, what: str = "") -> str:
    """`value` when it is one of `allowed` (a tuple, or a registry: then its registered name), else ValueError
    "unknown <what> 'x' (did you mean 'y'?); known: ..."."""
    if isinstance(allowed, Registry):
        return allowed.check(value)
    if value not in allowed:
        near = did_you_mean(value, allowed)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown {what} {value!r}{hint}; known: {', '.join(allowed)}")
    return value


def _metric_names(names: list[str]) -> list[str]:
    """Metric names with families ("counterfact-rome") expanded, each checked."""
    allowed = tuple(m for m in STORED_METRICS if m != "overall") + tuple(FAMILIES)
    return list(expand_metrics(known(m, allowed, "metric") for m in names))


class ModelSpec(_Strict):
    """name: the label in every row (and the HF id or embedded default when `path` is unset)."""

    name: str = Field(min_length=1)
    path: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str | None = None  # None: CUDA when available, else CPU
    device_map: str | None = None  # e.g. "auto" to spread a large model over GPUs

    @property
    def source(self) -> str:
        return self.path or self.name


class DatasetSpec(_Strict):
    """name: a registered dataset (goldenlayers.registry.DATASETS); file: the benchmark file (optional only for
    "world": without one the embedded
    synthetic world's cases are used, with one its export; and for "realfacts": without one the real facts the
    model knows, docs/realfacts.md); limit: keep the first N cases."""

    name: str
    file: str | None = None
    limit: int | None = Field(None, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return known(v, DATASETS)

    @model_validator(mode="after")
    def _file(self) -> DatasetSpec:
        if self.name not in FILELESS_DATASETS and not self.file:
            raise ValueError(f"dataset {self.name!r} needs a 'file' (docs/formats.md names them)")
        return self


class SplitSpec(_Strict):
    proxy_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0


class MethodSpec(_Strict):
    """preset: a named preset of goldenlayers.editing.hparams (e.g. "default-gpt2-quality") instead of the
    model's own; hparams: overrides on top of it."""

    name: str
    preset: str | None = None
    hparams: dict[str, typing.Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return known(v, METHODS)

    @model_validator(mode="after")
    def _preset(self) -> MethodSpec:
        if self.preset is None:
            return self
        from goldenlayers.editing import get_method
        from goldenlayers.editing.hparams import PRESETS

        known(self.preset, tuple(sorted(PRESETS)), "preset")
        covered = [m for m in METHODS.names() if get_method(m).family in PRESETS[self.preset]]
        if self.name not in covered:
            raise ValueError(f"preset {self.preset!r} has no settings for {self.name}; it covers: "
                             f"{', '.join(covered)}")
        return self


class BruteForceSpec(_Strict):
    """layers: "all" or explicit indices; methods: which editing methods to sweep (None: every method); metrics:
    what the sweep scores (None: every configured metric; e.g. leave fluency, 100 sampled tokens per cell, out);
    split: sweep every case ("all": the test sweep is the ground truth of every selector) or the proxy cases only
    ("proxy": brute force is then a selector like the others, its pick's test cases edited at the proxy golden
    layer of `pick`, a metric or "overall" with the Overall weights `overall`, e.g. "rewrite=2,fluency=0")."""

    layers: Literal["all"] | list[int] = "all"
    methods: list[str] | None = None
    metrics: list[str] | None = None
    split: Literal["all", "proxy"] = "all"
    pick: str = "rewrite"
    overall: str = ""

    @field_validator("pick")
    @classmethod
    def _pick(cls, v: str) -> str:
        return known(v, tuple(m for m in STORED_METRICS), "metric")

    @field_validator("overall")
    @classmethod
    def _overall(cls, v: str) -> str:
        from goldenlayers.evaluation.overall import OverallSpec

        OverallSpec.parse(v)
        return v

    @field_validator("metrics")
    @classmethod
    def _bf_metrics(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _metric_names(v)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [known(m, METHODS) for m in v]


class _NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@functools.cache
def _spec_class(settings: type[BaseModel] | None) -> type[BaseModel]:
    """A selector's config entry: its settings class plus `method`, the editing method of a selector that edits
    (the race; None: the first configured method, with that method's hparams)."""
    base = settings or _NoSettings

    def _method(cls, v: str | None) -> str | None:
        return None if v is None else known(v, METHODS, "editing method")

    return create_model(f"{base.__name__}Entry", __base__=base, __doc__=base.__doc__,
                        __validators__={"_method": field_validator("method")(_method)},
                        method=(str | None, None))


class SelectorsSpec(RootModel[dict[str, typing.Any]]):
    """The `selectors` section: {registered selector name (goldenlayers.registry.SELECTORS, readings such as
    lga-neg included): its settings}, each entry validated by its selector's settings class (plus `method`, see
    `_spec_class`); `bruteforce` is the run's sweep, validated by BruteForceSpec. A null entry is left out.
    Without a `selectors` section a config gets the race selector alone (the default selector)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _entries(cls, data):
        if isinstance(data, SelectorsSpec):
            return data.root
        if not isinstance(data, dict):
            return data  # the dict type reports it
        from goldenlayers.selection.registry import available_selectors, get_selector

        out, errors = {}, []
        for key, value in data.items():
            if value is None:
                continue
            try:
                name = known(str(key), SELECTORS)
            except ValueError as e:
                errors.append(dict(type="value_error", loc=(str(key),), input=key, ctx={"error": e}))
                continue
            spec = cls.entry_model(name)
            try:
                if isinstance(value, BaseModel):
                    value = value.model_dump(exclude_unset=True)
                defaults = {} if name == "bruteforce" else get_selector(name).defaults
                out[name] = spec.model_validate({**defaults, **value} if isinstance(value, dict) else value)
            except ValidationError as e:
                errors += [dict(type=err["type"], loc=(name, *err["loc"]), input=err["input"],
                                **({"ctx": err["ctx"]} if "ctx" in err else {})) for err in e.errors()]
        if errors:
            raise ValidationError.from_exception_data("selectors", errors)
        order = {n: i for i, n in enumerate(available_selectors())}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))

    @staticmethod
    def entry_model(name: str) -> type[BaseModel] | None:
        """The model of the entry `name` (for config errors: its allowed keys); None for an unknown name."""
        from goldenlayers.selection.registry import get_selector

        if name == "bruteforce":
            return BruteForceSpec
        key = SELECTORS.canonical(name)
        return None if key is None else _spec_class(get_selector(key).settings_class)

    def names(self) -> list[str]:
        """The configured selectors, in the registry's order (race, lga and its readings, cma, bruteforce, ...)."""
        return list(self.root)

    def pickers(self) -> list[str]:
        """The configured selectors that run as a select job: every one but brute force (the sweep)."""
        return [n for n in self.root if n != "bruteforce"]

    def __getitem__(self, name: str):
        return self.root[name]

    def __contains__(self, name: object) -> bool:
        return name in self.root

    @property
    def bruteforce(self) -> BruteForceSpec | None:
        return self.root.get("bruteforce")

    def settings(self, name: str):
        """The typed settings of the configured selector `name` (its settings class, without `method`)."""
        from goldenlayers.selection.registry import get_selector

        entry = get_selector(name)
        return entry.make_settings(self.root[name].model_dump(exclude={"method"}))


class BatchSpec(_Strict):
    """edit: cases whose v* are optimised together; select: LGA's batch; evaluate: the scorer's; stats: texts per
    forward while collecting key statistics."""

    edit: int = Field(16, ge=1)
    select: int = Field(16, ge=1)
    evaluate: int = Field(32, ge=1)
    stats: int = Field(8, ge=1)


class SeedSpec(_Strict):
    """torch: global seed; templates: context-template sampling; fluency: generation sampling."""

    torch: int = 0
    templates: int = 0
    fluency: int = 0


class ExperimentConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    models: list[ModelSpec] = Field(min_length=1)
    datasets: list[DatasetSpec] = Field(min_length=1)
    split: SplitSpec = SplitSpec()
    methods: list[MethodSpec] = Field(min_length=1)
    selectors: SelectorsSpec = Field(default_factory=lambda: SelectorsSpec({"race": {}}))
    metrics: list[str] = Field(default_factory=lambda: [m for m in METRICS if m != "overall"])
    seeds: SeedSpec = SeedSpec()
    batch: BatchSpec = BatchSpec()
    stats: StatsSettings = StatsSettings()  # the editor's own class (goldenlayers.editing.hparams)
    data_dir: str = "data"
    output_dir: str = "runs"

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        return _metric_names(v)

    @model_validator(mode="after")
    def _unique(self) -> ExperimentConfig:
        for section in ("models", "datasets", "methods"):
            names = [item.name for item in getattr(self, section)]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{section}: names must be unique, repeated: {dup}")
        bf = self.selectors.bruteforce
        missing = sorted(set(bf.methods or []) - {m.name for m in self.methods}) if bf else []
        if missing:
            raise ValueError(f"selectors.bruteforce.methods {missing} are not among the configured methods")
        for name in self.selectors.pickers():
            method = self.selectors[name].method
            if method is not None and method not in {m.name for m in self.methods}:
                raise ValueError(f"selectors.{name}.method {method!r} is not among the configured methods")
        return self

    def dataset_file(self, dataset: DatasetSpec, base: str | Path = ".") -> Path | None:
        """The dataset's file: absolute as given, else under `data_dir` (itself relative to `base`)."""
        if dataset.file is None:
            return None
        f = Path(dataset.file)
        return f if f.is_absolute() else Path(base) / self.data_dir / f


def validate_config(data: dict, source: str = "config") -> ExperimentConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping of sections, got {type(data).__name__}"])
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, problems(e, ExperimentConfig)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config (errors: ConfigError naming each bad key's path)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["file not found"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [f"not valid YAML: {e}"]) from None
    return validate_config(data, str(path))


def check_models(config: ExperimentConfig, source: str = "config") -> None:
    """Every model must be a known name, an existing path or a hub name (goldenlayers.models.names), checked
    locally before a run starts: a typo fails with "did you mean ...", never at load time or on the network.
    (Not a validator: configs of runs whose models are not on this machine still load for reports.)"""
    from goldenlayers.models.names import UnknownModelError, parse_model_name

    problems = []
    for i, model in enumerate(config.models):
        try:
            parse_model_name(model.source)
        except UnknownModelError as e:
            problems.append(f"models[{i}].{'path' if model.path else 'name'}: {e}")
    if problems:
        raise ConfigError(source, problems)


def resolved(config: ExperimentConfig) -> dict:
    """The config with every default filled in, as plain data (what a run directory stores and compares)."""
    return config.model_dump(mode="json")


def dump_config(config: ExperimentConfig, command: str | None = None) -> str:
    """YAML of the resolved config, starting with a comment showing the command that runs it."""
    head = f"# {command or 'goldenlayers run ' + config.name + '.yaml'}\n"
    return head + yaml.safe_dump(resolved(config), sort_keys=False, default_flow_style=None, width=110)
