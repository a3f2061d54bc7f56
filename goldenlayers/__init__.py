"""goldenlayers: find golden layers for knowledge editing (Layer Gradient Analysis) and edit facts there.

See README.md for the quick start and docs/ for the details; the paper is "Golden Layers and Where to
Find Them" (LGA).
"""

__version__ = "0.1.0"
