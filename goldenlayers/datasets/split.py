"""Proxy/test splits, the proxy union, and deterministic shuffling (docs/equations.md "Layer selection"; paper section 3).

The paper splits each dataset at random into a proxy set (10%) and a test set (90%). Here the split is EXACT and
seeded: every case gets a rank key u = sha256(f"split|{seed}|{dataset}|{case_id}") read as a number in [0, 1);
the cases are ordered by u and the first k = round(proxy_fraction x N) (halves rounded up) form the proxy set,
the rest the test set. k is kept between 1 and N - 1, so both sides are non-empty; fewer than 2 cases cannot be
split (ValueError). So 120 cases give 12 proxy cases, 300 give 30, 80 give 8, whatever the seed.

The order is STABLE WHEN THE FILE GROWS: a case's key depends only on (seed, dataset, case id), so appending
records never reorders the existing cases among themselves (the new ones are slotted in between; since k grows
with N, the proxy set of the grown file is again its first k cases in that order).

`shuffle_cases` orders cases by the same kind of hash (with a different salt), so a shuffled prefix (`limit`) of a
grown file keeps the old cases in their old relative order. The proxy union pools the proxy sets of several
datasets (Figure 2), each split exactly as above; (dataset, case id) pairs must be unique across them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goldenlayers.cases import EditCase


def hash_unit(*parts: object) -> float:
    """A number in [0, 1) determined by `parts` (sha256 of their "|"-joined text; same on every machine)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_key(case: EditCase, seed: int = 0) -> tuple[float, str, str]:
    """The rank of `case` in the split order of `seed` (hash first; dataset and id break the rare tie)."""
    return hash_unit("split", seed, case.dataset, case.case_id), str(case.dataset), str(case.case_id)


def proxy_size(n: int, proxy_fraction: float) -> int:
    """round(proxy_fraction x n), halves up, kept in [1, n - 1]; ValueError for n < 2 or a fraction outside (0, 1)."""
    if not 0.0 < proxy_fraction < 1.0:
        raise ValueError(f"proxy_fraction must lie strictly between 0 and 1, got {proxy_fraction}")
    if n < 2:
        raise ValueError(f"a proxy/test split needs at least 2 cases, got {n}")
    # the 1e-9 absorbs float error in the product (0.1 x 125 is 12.500000000000002, 0.3 x 5 is 1.4999999999999998)
    return min(max(math.floor(proxy_fraction * n + 0.5 + 1e-9), 1), n - 1)


@dataclass(frozen=True)
class Split:
    """A proxy/test split of one case list (both sides keep the input order)."""

    proxy: list[EditCase]
    test: list[EditCase]
    proxy_fraction: float
    seed: int

    def __iter__(self):  # `proxy, test = split_cases(...)`
        return iter((self.proxy, self.test))


def split_cases(cases: Iterable[EditCase], proxy_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split cases into exactly `proxy_size(N, proxy_fraction)` proxy cases (the first in the seeded hash order)
    and the test cases; both sides keep the input order."""
    cases = list(cases)
    k = proxy_size(len(cases), proxy_fraction)
    chosen = {id(c) for c in sorted(cases, key=lambda c: split_key(c, seed))[:k]}
    return Split([c for c in cases if id(c) in chosen], [c for c in cases if id(c) not in chosen],
                 proxy_fraction, seed)


def proxy_union(splits: Mapping[str, Split] | Iterable[Split]) -> list[EditCase]:
    """The union of several datasets' proxy sets, in order; a (dataset, case_id) seen twice is an error."""
    items = splits.values() if isinstance(splits, Mapping) else splits
    seen: set[tuple[str, str]] = set()
    out = []
    for s in items:
        for c in s.proxy:
            key = (c.dataset, c.case_id)
            if key in seen:
                raise ValueError(f"case {c.case_id!r} of dataset {c.dataset!r} appears in two proxy sets")
            seen.add(key)
            out.append(c)
    return out


def shuffle_cases(cases: Iterable[EditCase], seed: int) -> list[EditCase]:
    """Cases in a seeded pseudo-random order (sorted by a hash of seed, dataset and case id)."""
    return sorted(cases, key=lambda c: hash_unit("shuffle", seed, c.dataset, c.case_id))
