"""The facts of the real-world set: (relation, subject, answers) from the GeoNames data (docs/realfacts.md).

- capital:      country -> its capital (countries whose capital has the country's name, e.g. Singapore, are left out)
- continent:    country -> its continent (GeoNames' seven continents; Central America is in North America)
- currency:     country -> its currency (GeoNames' short name, "euro"; aliases "Euro", CLDR's "Euro")
- language:     country -> the first language GeoNames lists for it, named in English
- city_country: city -> the country it lies in (answers "the United States", "United States")
A fact's answers are all its aliases, the canonical object first; facts that share a canonical object share it
as their object (neighbourhood, target_new candidates).
"""

from __future__ import annotations

from dataclasses import dataclass

from goldenlayers.datasets.realfacts.source import Geo
from goldenlayers.datasets.realfacts.templates import RELATIONS, render


@dataclass(frozen=True)
class Fact:
    relation: str
    subject: str  # the bare name, in every prompt
    subject_phrase: str  # as it stands in a sentence ("the United States")
    answers: tuple[str, ...]

    @property
    def object(self) -> str:
        return self.answers[0]

    @property
    def key(self) -> str:
        return f"{self.relation}:{self.subject}"

    def prompts(self) -> list[str]:
        """The prompt of every template of the relation, in template order."""
        return [render(t, self.subject_phrase) for t in RELATIONS[self.relation].templates]


def build_facts(geo: Geo) -> list[Fact]:
    """Every fact of `geo`, countries (by ISO code) first, then cities (largest first); in RELATIONS order per subject."""
    facts = []
    for c in geo.countries.values():
        objects = {"capital": (c.capital,) if c.capital != c.name else None, "continent": (c.continent,),
                   "currency": c.currency, "language": (c.language,) if c.language else None}
        facts += [Fact(rel, c.name, c.phrase, answers) for rel, answers in objects.items() if answers]
    for city in geo.cities:
        country = geo.countries[city.country]
        facts.append(Fact("city_country", city.name, city.name,
                          tuple(dict.fromkeys((country.phrase, country.name)))))
    return facts


def objects_of(facts: list[Fact]) -> dict[str, list[str]]:
    """relation -> its distinct canonical objects, sorted."""
    out: dict[str, set[str]] = {r: set() for r in RELATIONS}
    for f in facts:
        out[f.relation].add(f.object)
    return {r: sorted(v) for r, v in out.items()}
