"""Layer selectors: the `Selector` entry of goldenlayers.registry.SELECTORS and the calling convention every
selector follows (docs/design.md "Registries"; docs/selection.md "Adding a selector").

Each selector scores every layer on a case set and returns a LayerScores table. Its entry names the function
that does it (`scores(inp: SelectionInput, settings) -> LayerScores`), its pydantic settings class, how it
chooses a layer from its table (`choose`, default: the table's `meta["chosen"]` when the selector decided itself,
else the argmax), its label in reports, and optionally readings of it (`variants`: "<name>-<suffix>" -> settings
it fixes), registered as entries of their own ("lga-neg", "lga-cosine"). `goldenlayers.selection.select_layer`,
the run engine's select job, run-config validation (`selectors: {<name>: <settings>}`) and the CLI (`select
--method`, `compare --selectors`) all read the registry, so adding a selector is its file (scoring function and
settings class), its test, and one `register_selector(Selector(...))` line in goldenlayers/selection/__init__.py.

Names written by a selector in run stores and tables are its settings' `name` when the settings class defines
one ("lga-cosine", "cma-mlp-w10"), else the registered name; `selector_family` maps such a name back to the
registered selector it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from goldenlayers.registry import SELECTORS, load


@dataclass(frozen=True)
class SelectionInput:
    """What a selector's scoring function gets besides its settings: the model, its tokenizer and the (proxy)
    cases; layers: the layers to score (None: every layer); model_name: the model's label in the table;
    batch_size: cases edited together (selectors that edit: race, brute force); select_batch: a selector's own
    batch (LGA's cases per forward); seed: the run's seed (`seeds.torch`; 0 outside a run); editor, hparams
    (typed settings or a dict of overrides), stats ({layer: C}, None for C = I): the editing method of
    selectors that edit; metric, metrics, overall_spec: what brute force scores and picks by."""

    model: Any
    tok: Any
    cases: Sequence
    layers: Sequence[int] | None = None
    model_name: str | None = None
    progress: bool = True
    batch_size: int = 16
    select_batch: int = 16
    seed: int = 0
    editor: str = "r-rome"
    hparams: Any = None
    stats: Any = None
    metric: str = "rewrite"
    metrics: Sequence[str] | None = None
    overall_spec: Any = None


@dataclass(frozen=True)
class Selector:
    """name: registry key; label: its name in report tables ("LGA"); summary: one line for docs and listings;
    scores: `(SelectionInput, settings) -> LayerScores` (or "module:attr", imported on first use); settings: its
    pydantic settings class (or "module:attr"; None when it has none); choose: `(table, settings) -> layer or
    LayerPick` (None: `default_choice`); edits: whether it edits (uses the input's editor, hparams and key
    statistics, which the commands then resolve for it); variants: {suffix: settings} registered as
    "<name>-<suffix>" entries; defaults: the settings this entry fixes (set on a variant); family: the selector a
    variant belongs to."""

    name: str
    label: str
    summary: str
    scores: Callable | str
    settings: type | str | None = None
    choose: Callable | str | None = None
    edits: bool = False
    variants: dict[str, dict] = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    family: str | None = None

    @property
    def scores_fn(self) -> Callable:
        return load(self.scores)

    @property
    def settings_class(self) -> type | None:
        return load(self.settings)

    def make_settings(self, settings=None, **overrides):
        """The entry's typed settings: `settings` (an instance, or a dict) or the entry's `defaults`, updated by
        `overrides` and validated by the settings class (pydantic's ValidationError names a bad key)."""
        cls = self.settings_class
        if cls is None:
            if settings or overrides:
                given = sorted({**(settings or {}), **overrides})
                raise ValueError(f"selector {self.name!r} takes no settings, got {', '.join(given)}")
            return None
        base = settings.model_dump(exclude_unset=True) if isinstance(settings, cls) else dict(settings or {})
        return cls.model_validate({**self.defaults, **base, **overrides})

    def choose_layer(self, table, settings) -> tuple[int, Any]:
        """(chosen layer, the LayerPick behind it or None) of `table` with `settings`."""
        from goldenlayers.selection.pick import LayerPick

        out = load(self.choose)(table, settings) if self.choose is not None else default_choice(table, settings)
        return (out.layer, out) if isinstance(out, LayerPick) else (int(out), None)

    def store_name(self, settings) -> str:
        """The selector's name in run stores and tables: the settings' `name` when they define one, else its own."""
        return getattr(settings, "name", None) or self.name


def default_choice(table, settings=None) -> int:
    """The layer a selector decided itself (`table.meta["chosen"]`, e.g. the race's), else the table's argmax."""
    return int(table.meta.get("chosen", table.best()))


def register_selector(selector: Selector, aliases: tuple[str, ...] = ()) -> Selector:
    """Add `selector` to goldenlayers.registry.SELECTORS, and each of its `variants` as "<name>-<suffix>"
    (NameCollisionError when a name is taken)."""
    SELECTORS.register(selector.name, selector, aliases=aliases)
    for suffix, fixed in selector.variants.items():
        entry = variant(selector, suffix, fixed)
        if SELECTORS.canonical(entry.name) != entry.name or SELECTORS.get(entry.name) != entry:  # again: a no-op
            SELECTORS.register(entry.name, entry)
    return selector


def variant(selector: Selector, suffix: str, fixed: dict) -> Selector:
    """The entry of the reading "<name>-<suffix>" of `selector`: its settings fixed by `fixed`."""
    return replace(selector, name=f"{selector.name}-{suffix}", label=f"{selector.label} ({suffix})",
                   summary=f"{selector.summary}; reading {suffix}: {fixed}", variants={},
                   defaults={**selector.defaults, **fixed}, family=selector.family or selector.name)


def get_selector(name: str) -> Selector:
    """The selector registered as `name` or an alias ("golden" is brute force); UnknownNameError else."""
    return SELECTORS.get(name)


def available_selectors() -> list[str]:
    """Every registered selector (readings included), in the order they were registered (race first)."""
    return SELECTORS.registered()


def selector_family(name: str) -> str:
    """The registered selector a run-store selector name belongs to: a registered name's family ("lga-neg" ->
    "lga"), else the longest registered name that `name` starts with followed by "-" ("cma-mlp-w10" -> "cma"),
    else the part before the first "-"."""
    key = SELECTORS.canonical(name)
    if key is not None:
        return SELECTORS.get(key).family or key
    prefixes = [n for n in SELECTORS.names() if name.startswith(n + "-")]
    if prefixes:
        key = max(prefixes, key=len)
        return SELECTORS.get(key).family or key
    return name.partition("-")[0]


def selector_label(name: str) -> str:
    """The report's name of a run-store selector name: "lga" -> "LGA", "cma-mlp-w10" -> "CMA (mlp-w10)",
    "bruteforce" -> "BF"; an unregistered name in capitals."""
    family = selector_family(name)
    head = SELECTORS.get(family).label if family in SELECTORS else family.upper()
    rest = name[len(family) + 1:] if name.startswith(family + "-") else ""
    return head + (f" ({rest})" if rest else "")
