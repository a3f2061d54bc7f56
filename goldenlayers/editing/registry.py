"""The editing-method registry (goldenlayers.registry.METHODS; docs/design.md "Registries"): duplicate names are
errors, typos get "did you mean". A method is an `EditMethod` (goldenlayers.editing.method: its settings class,
v* site, edited weight site, batch and layer range, optional sequential state, and its `apply` step;
docs/editing.md)."""

from __future__ import annotations

from goldenlayers.editing.method import ApplyFn, EditContext, EditMethod
from goldenlayers.registry import METHODS

__all__ = ["ApplyFn", "EditContext", "EditMethod", "available_methods", "get_method", "register_method"]


def register_method(method: EditMethod, aliases: tuple[str, ...] = ()) -> EditMethod:
    """Add `method` to goldenlayers.registry.METHODS under `method.name` (NameCollisionError when the name is
    another method's)."""
    METHODS.register(method.name, method, aliases=aliases)
    return method


def available_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> EditMethod:
    """The method registered as `name` (case and "_" / "-" do not matter); UnknownNameError (a KeyError) else."""
    return METHODS.get(name)
