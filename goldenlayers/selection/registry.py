"""Layer selectors: the `Selector` entry of goldenlayers.registry.SELECTORS (docs/design.md "Registries";
docs/selection.md). Each selector scores every layer on a case set and returns a LayerScores table; its entry
names the function that does it, its settings class and its label in reports. Variants of one selector are
written "<name>-<variant>" in run stores and tables ("cma-mlp-w10", "lga-cosine"); `selector_family` maps them
back to the registered name.

To add a selector: its file (a scoring function returning LayerScores, a settings class) plus one
`register_selector(Selector(...))` line in goldenlayers/selection/__init__.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from goldenlayers.registry import SELECTORS, load


@dataclass(frozen=True)
class Selector:
    """name: registry key; label: its name in report tables ("LGA"); summary: one line for docs and listings;
    scores: the function scoring every layer (or "module:attr", imported on first use); settings: its
    pydantic settings class (or "module:attr"; None when it has none)."""

    name: str
    label: str
    summary: str
    scores: Callable | str
    settings: type | str | None = None

    @property
    def scores_fn(self) -> Callable:
        return load(self.scores)

    @property
    def settings_class(self) -> type | None:
        return load(self.settings)


def register_selector(selector: Selector, aliases: tuple[str, ...] = ()) -> Selector:
    """Add `selector` to goldenlayers.registry.SELECTORS (NameCollisionError when the name is taken)."""
    SELECTORS.register(selector.name, selector, aliases=aliases)
    return selector


def get_selector(name: str) -> Selector:
    """The selector registered as `name` or an alias ("golden" is brute force); UnknownNameError else."""
    return SELECTORS.get(name)


def available_selectors() -> list[str]:
    return SELECTORS.names()


def selector_family(name: str) -> str:
    """The registered selector a run-store selector name belongs to: itself, the longest registered name that
    `name` starts with followed by "-" ("cma-mlp-w10" -> "cma"), else the part before the first "-"."""
    key = SELECTORS.canonical(name)
    if key is not None:
        return key
    prefixes = [n for n in SELECTORS.names() if name.startswith(n + "-")]
    return max(prefixes, key=len) if prefixes else name.partition("-")[0]


def selector_label(name: str) -> str:
    """The report's name of a run-store selector name: "lga" -> "LGA", "cma-mlp-w10" -> "CMA (mlp-w10)",
    "bruteforce" -> "BF"; an unregistered name in capitals."""
    family = selector_family(name)
    head = SELECTORS.get(family).label if family in SELECTORS else family.upper()
    rest = name[len(family) + 1:] if name.startswith(family + "-") else ""
    return head + (f" ({rest})" if rest else "")
