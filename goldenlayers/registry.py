"""Registries: the one place each kind of named thing is looked up (docs/design.md "Registries").

A `Registry` maps names (and aliases) to entries: editing methods, datasets, architecture adapters, layer
selectors and metrics each have one, created below and filled by the modules that define the entries:

    METHODS    goldenlayers.editing (each method file defines an EditMethod; editing.api registers them)
    DATASETS   goldenlayers.datasets.registry (DatasetSpec: reader, published file names, label)
    ADAPTERS   goldenlayers.models.adapters (ArchAdapter, keyed by config.model_type)
    SELECTORS  goldenlayers.selection (Selector: label, scoring function, settings class)
    METRICS    goldenlayers.metric_names (Metric: direction, abbreviation, label, family)

Lazy import: a registry names the modules that fill it (`loaders`) and imports them only when it is first
asked for a name or an entry, so importing this module costs nothing (the CLI start-up stays fast, see
benchmarks/bench_cli_startup.py). An entry may also be registered as a "package.module:attribute" string,
imported on its first `get`.

Rules: a name or alias already taken by a different entry is refused (NameCollisionError; registering the same
object again under the same name is a no-op, so re-importing a module is harmless); an unknown name raises
UnknownNameError whose one-line message says "did you mean ...?" and lists what exists. `did_you_mean` is the
package's one spelling-hint helper (used for models and config keys too).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from goldenlayers.datasets.registry import DatasetSpec
    from goldenlayers.editing.registry import EditMethod
    from goldenlayers.metric_names import Metric
    from goldenlayers.models.adapters import ArchAdapter
    from goldenlayers.selection.registry import Selector

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The closest of `choices` to `name` (at most `n`, most similar first; none below `cutoff`)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)


def load(ref):
    """`ref` itself, or the object a "package.module:attribute" string names (imported now)."""
    if isinstance(ref, str) and ":" in ref:
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)
    return ref


class UnknownNameError(KeyError):
    """A name no registry entry has; the message is one line (did you mean ..., what is available)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class NameCollisionError(ValueError):
    """A name or alias that a different entry of the same registry already holds."""


class Registry(Generic[T]):
    """Named entries of one kind. kind: what an entry is, for messages ("editing method"); loaders: modules
    imported on first lookup (they register the built-in entries); normalise: maps a user's spelling to the
    registered one before lookup (e.g. "R_ROME" -> "r-rome")."""

    def __init__(self, kind: str, loaders: Iterable[str] = (), normalise: Callable[[str], str] | None = None):
        self.kind = kind
        self._loaders = tuple(loaders)
        self._loaded = False
        self._normalise = normalise or (lambda s: s)
        self._entries: dict[str, T | str] = {}  # name -> entry, or "module:attr" not imported yet
        self._aliases: dict[str, str] = {}  # alias -> name

    # -- filling -------------------------------------------------------------------------------------------
    def register(self, name: str, entry: T | str, aliases: Iterable[str] = (), replace: bool = False) -> T | str:
        """Add `entry` under `name` and `aliases`; a "module:attr" string is imported on first `get`.
        replace=True lets a user swap a built-in entry for their own."""
        aliases = tuple(aliases)
        if not replace:
            for key in (name, *aliases):
                owner = self._aliases.get(key, key)
                if owner in self._entries and not self._same(owner, entry):
                    raise NameCollisionError(f"a {self.kind} named {key!r} is already registered"
                                             + (f" (as an alias of {owner!r})" if owner != key else "")
                                             + "; pass replace=True to replace it")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def _same(self, name: str, entry) -> bool:
        old = self._entries[name]
        if isinstance(old, str) and not isinstance(entry, str) and ":" in old:
            old = self._resolve(name)
        return old is entry or (isinstance(old, str) and old == entry)

    def _resolve(self, name: str) -> T:
        entry = self._entries[name] = load(self._entries[name])
        return entry

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first, so that a loader asking this registry for a name does not recurse
            try:
                for module in self._loaders:
                    importlib.import_module(module)
            except BaseException:
                self._loaded = False
                raise

    # -- reading -------------------------------------------------------------------------------------------
    def canonical(self, name: str) -> str | None:
        """The registered name `name` stands for (itself, an alias, or a normalised spelling), else None."""
        self._load()
        for key in (name, self._normalise(name)):
            if key in self._entries:
                return key
            if key in self._aliases:
                return self._aliases[key]
        return None

    def unknown_message(self, name: str) -> str:
        """One line: `name` is unknown, the closest names, and every registered name."""
        self._load()
        near = did_you_mean(self._normalise(name), [*self._entries, *self._aliases], n=2, cutoff=0.5)
        hint = f" (did you mean {' or '.join(repr(c) for c in near)}?)" if near else ""
        return f"unknown {self.kind} {name!r}{hint}; available: {', '.join(self.names())}"

    def get(self, name: str) -> T:
        """The entry of `name` (or an alias, or a normalised spelling); UnknownNameError when there is none."""
        key = self.canonical(name)
        if key is None:
            raise UnknownNameError(self.unknown_message(name))
        return self._resolve(key)

    def check(self, name: str) -> str:
        """The canonical name of `name`, or ValueError with the one-line message (for pydantic validators)."""
        key = self.canonical(name)
        if key is None:
            raise ValueError(self.unknown_message(name))
        return key

    def names(self) -> list[str]:
        """Registered names (not aliases), sorted."""
        self._load()
        return sorted(self._entries)

    def registered(self) -> list[str]:
        """Registered names in the order they were registered (e.g. the paper's order of the metrics)."""
        self._load()
        return list(self._entries)

    def aliases(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs in name order, importing lazy entries."""
        for name in self.names():
            yield name, self._resolve(name)

    @contextmanager
    def restoring(self) -> Iterator[Registry[T]]:
        """A block whose registrations are undone when it ends (for tests and experiments)."""
        self._load()
        saved = dict(self._entries), dict(self._aliases)
        try:
            yield self
        finally:
            self._entries, self._aliases = saved

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _dashed(name: str) -> str:
    return name.strip().lower().replace("_", "-")


METHODS: Registry[EditMethod] = Registry("editing method", loaders=("goldenlayers.editing.api",), normalise=_dashed)
DATASETS: Registry[DatasetSpec] = Registry("dataset", loaders=("goldenlayers.datasets.registry",))
ADAPTERS: Registry[ArchAdapter] = Registry("architecture", loaders=("goldenlayers.models.adapters",))
SELECTORS: Registry[Selector] = Registry("selector", loaders=("goldenlayers.selection",), normalise=_dashed)
METRICS: Registry[Metric] = Registry("metric", loaders=("goldenlayers.metric_names",))

# What `goldenlayers ls` lists, in its order (title -> registry).
LISTED = {"architectures": ADAPTERS, "methods": METHODS, "selectors": SELECTORS, "datasets": DATASETS,
          "metrics": METRICS}
