"""Where a run's wall time goes, per process: start-up, model loading, each job kind, waiting for the other
processes, merging shards. `goldenlayers run` prints one line per process at the end, so a user can see what a
second GPU can and cannot speed up (the cells split; start-up and model loading are paid by every process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timeline:
    """Seconds per phase, summed over the phase's occurrences, in the order phases first occurred."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def describe(self) -> str:
        """e.g. 'start-up 4.1 s, load model 6.0 s, bruteforce 126.2 s, total 136.3 s'."""
        parts = [f"{name} {s:.1f} s" for name, s in self.seconds.items()]
        return ", ".join(parts + [f"total {sum(self.seconds.values()):.1f} s"])
