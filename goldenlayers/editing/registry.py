"""The editing-method registry (DESIGN.md house style 3): explicit, duplicate names are errors, typos get
"did you mean". A method is an `EditMethod` (goldenlayers.editing.method: its settings class, v* site, edited weight site,
batch and layer range, optional sequential state, and its `apply` step; docs/editing.md)."""

from __future__ import annotations

import difflib

from goldenlayers.editing.method import ApplyFn, EditContext, EditMethod

__all__ = ["ApplyFn", "EditContext", "EditMethod", "available_methods", "get_method", "register_method"]


_METHODS: dict[str, EditMethod] = {}


def register_method(method: EditMethod) -> EditMethod:
    if method.name in _METHODS:
        raise ValueError(f"an editing method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> EditMethod:
    key = name.lower().replace("_", "-")
    if key in _METHODS:
        return _METHODS[key]
    close = difflib.get_close_matches(key, list(_METHODS), n=2, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown editing method {name!r}.{hint} Available: {', '.join(available_methods())}.")
