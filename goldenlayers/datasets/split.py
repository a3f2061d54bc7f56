"""Proxy/test splits, the proxy union, and deterministic shuffling (REFERENCE.md section 2; paper section 3).

The paper splits each dataset at random into a proxy set (10%) and a test set (90%). Here membership is decided
per case by a seeded hash of (dataset, case id): u = sha256(f"{seed}|{dataset}|{case_id}") read as a number in
[0, 1), and the case is in the proxy set when u < proxy_fraction. So a split is reproducible from the seed, and it
is STABLE WHEN THE FILE GROWS: appending records never moves an existing case from one side to the other. The
price is that the proxy share is proportional only on average (about 10% of a 1,000-case file, not exactly 100).

`shuffle_cases` orders cases by the same kind of hash (with a different salt), so a shuffled prefix (`limit`) of a
grown file keeps the old cases in their old relative order. The proxy union pools the proxy sets of several
datasets (Figure 2); (dataset, case id) pairs must be unique across them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from goldenlayers.cases import EditCase


def hash_unit(*parts: object) -> float:
    """A number in [0, 1) determined by `parts` (sha256 of their "|"-joined text; same on every machine)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_proxy(case: EditCase, proxy_fraction: float = 0.1, seed: int = 0) -> bool:
    """Whether `case` belongs to the proxy set of the (proxy_fraction, seed) split."""
    return hash_unit("split", seed, case.dataset, case.case_id) < proxy_fraction


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
    """Split cases into proxy (about `proxy_fraction`) and test by a seeded hash of each case's (dataset, id)."""
    if not 0.0 < proxy_fraction < 1.0:
        raise ValueError(f"proxy_fraction must lie strictly between 0 and 1, got {proxy_fraction}")
    proxy, test = [], []
    for c in cases:
        (proxy if in_proxy(c, proxy_fraction, seed) else test).append(c)
    return Split(proxy, test, proxy_fraction, seed)


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
