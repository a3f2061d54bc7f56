"""Where goldenlayers keeps what it computes or fetches once and reuses: key statistics, dequantised GGUF models,
named real models (docs/models.md lists the layout).

The root is $GOLDENLAYERS_CACHE, else ~/.cache/goldenlayers; every user of the cache takes its folder from here.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GOLDENLAYERS_CACHE"


def cache_root(root: str | Path | None = None) -> Path:
    """`root` if given, else $GOLDENLAYERS_CACHE, else ~/.cache/goldenlayers (not created here)."""
    root = root or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "goldenlayers"
    return Path(root).expanduser()
