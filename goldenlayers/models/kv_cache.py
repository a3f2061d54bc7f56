"""The key/value cache argument of a causal LM's forward, under the name its transformers version uses.

transformers 5.24 renamed the forward argument and output field `past_key_values` to `cache` (the old name still
works there but warns that it goes in 5.40); earlier 5.x releases (e.g. 5.17) know only `past_key_values`.
`cache_kwargs` asks the model's own forward signature which name it takes, and `output_cache` reads the cache
back from an output under either name without touching the deprecated alias where the new field exists.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn


@functools.cache
def _cache_name(forward) -> str:
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg_name(model: nn.Module) -> str:
    """"cache" when the model's forward takes `cache` (transformers >= 5.24), else "past_key_values"."""
    forward = getattr(type(model), "forward", None)
    return _cache_name(forward)


def cache_kwargs(model: nn.Module, cache) -> dict:
    """{name: cache} to pass a cache object to `model`'s forward; {} for cache None."""
    return {} if cache is None else {cache_kwarg_name(model): cache}


def output_cache(out):
    """The cache a forward returned (its `cache` field, or `past_key_values` in older releases), or None."""
    names = getattr(out, "__dataclass_fields__", None) or getattr(out, "__dict__", {})
    if "cache" in names:
        return out.cache
    return getattr(out, "past_key_values", None)
