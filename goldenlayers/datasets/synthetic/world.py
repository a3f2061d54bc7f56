"""A seeded synthetic world of facts: the embedded default models' ground truth (docs/world.md).

`build_world(WorldConfig(people=1000, seed=0))` creates fictional countries, cities (each in a country) and
companies (each headquartered in a city), and people with realistic Faker names (drawn from deliberately small
first- and last-name pools so that many people share a first or a last name, which makes locality non-trivial)
and six facts each (vocab.PERSON_RELATIONS). From it come:
- `training_corpus()`: every fact in every training template, the derived facts (repeated), and two-hop
  sentences for a fraction of people (so two-hop recall is learnable while most portability prompts stay held out);
- `heldout_corpus()`: held-out phrasings and multi-fact sentences, disjoint from training (key statistics);
- `recall_queries()`: (relation, prompt, answer) for every fact and template, for greedy recall;
- `edit_cases(n, seed)`: EditCase records with rephrase, locality ("Neighborhood" incl. name-sharers,
  "Other_Relation") and two-hop portability ("Reasoning") probes that follow from the *new* target.
Everything is a pure function of the config: the same seed gives the same world, byte for byte.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from goldenlayers.cases import EditCase, Probe
from goldenlayers.datasets.synthetic.vocab import (
    DERIVED_RELATIONS,
    INSTRUMENTS,
    OCCUPATIONS,
    PERSON_RELATIONS,
    SPORTS,
    TWO_HOP,
    invent_names,
)


class WorldConfig(BaseModel):
    """Scale and seed of a world. Pools of first/last names smaller than `people` guarantee shared names."""

    model_config = ConfigDict(extra="forbid")

    people: int = Field(1000, ge=10)
    seed: int = 0
    countries: int = Field(15, ge=2)
    cities: int = Field(48, ge=4)
    companies: int = Field(40, ge=4)
    languages: int = Field(15, ge=2)
    first_name_pool: int | None = Field(None, ge=5, description="distinct first names (default people // 4)")
    last_name_pool: int | None = Field(None, ge=5, description="distinct last names (default 3 * people // 10)")
    derived_repeats: int | None = Field(None, ge=1, description="copies of each derived-fact sentence in "
                                        "training (default people // 50, at least 1: about 1/5 of the corpus)")
    two_hop_train_fraction: float = Field(0.3, ge=0.0, le=1.0)


@dataclass(frozen=True)
class Person:
    name: str
    first: str
    last: str
    facts: dict[str, str]


class World:
    """The entities and facts of one seeded world (see the module docstring)."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        c = self.config
        rng = random.Random(c.seed)
        taken: set[str] = set()
        self.countries = invent_names(rng, c.countries, ("ia", "land", "ora", "any"), (1, 2), taken)
        self.cities = invent_names(rng, c.cities, ("",), (2, 3), taken)
        self.companies = invent_names(rng, c.companies, ("corp", "tech", "works", "ex"), (1, 2), taken)
        self.languages = invent_names(rng, c.languages, ("ish", "ese", "ic"), (1, 2), taken)
        self.city_country = {city: self.countries[i % c.countries] for i, city in enumerate(self.cities)}
        self.company_hq = {co: rng.choice(self.cities) for co in self.companies}
        self.objects = {
            "city": self.cities, "company": self.companies, "occupation": list(OCCUPATIONS),
            "language": self.languages, "instrument": list(INSTRUMENTS), "sport": list(SPORTS),
        }
        self.people = self._make_people(rng)
        self.by_name = {p.name: p for p in self.people}

    def _make_people(self, rng: random.Random) -> list[Person]:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(self.config.seed)
        c = self.config
        n_first = c.first_name_pool or max(8, c.people // 4)
        n_last = c.last_name_pool or max(8, 3 * c.people // 10)
        firsts = sorted({fake.first_name() for _ in range(n_first * 3)})
        lasts = sorted({fake.last_name() for _ in range(n_last * 3)})
        firsts = rng.sample(firsts, min(len(firsts), n_first))
        lasts = rng.sample(lasts, min(len(lasts), n_last))
        if len(firsts) * len(lasts) < 2 * c.people:
            raise ValueError(f"name pools ({len(firsts)} first x {len(lasts)} last names) are too small "
                             f"for {c.people} people; raise first_name_pool / last_name_pool")
        seen: set[str] = set()
        people = []
        while len(people) < c.people:
            first, last = rng.choice(firsts), rng.choice(lasts)
            name = f"{first} {last}"
            if name in seen:
                continue
            seen.add(name)
            facts = {rel: rng.choice(self.objects[kind]) for rel, (kind, _, _) in PERSON_RELATIONS.items()}
            people.append(Person(name, first, last, facts))
        return people

    # -- facts ---------------------------------------------------------------------------------------
    @property
    def relations(self) -> list[str]:
        return list(PERSON_RELATIONS)

    def templates(self, relation: str) -> tuple[str, ...]:
        if relation in PERSON_RELATIONS:
            return PERSON_RELATIONS[relation][1]
        return DERIVED_RELATIONS[relation][2]

    def derived_facts(self) -> list[tuple[str, str, str]]:
        """(relation, subject, object) of the derived facts (city -> country, company -> headquarters city)."""
        return [("city_country", k, v) for k, v in self.city_country.items()] + [
            ("company_hq", k, v) for k, v in self.company_hq.items()
        ]

    def two_hop_answer(self, relation: str, obj: str) -> str | None:
        if relation not in TWO_HOP:
            return None
        derived = TWO_HOP[relation][0]
        return (self.city_country if derived == "city_country" else self.company_hq)[obj]

    @cached_property
    def _two_hop_trained(self) -> set[str]:
        rng = random.Random(self.config.seed + 7)
        k = int(round(self.config.two_hop_train_fraction * len(self.people)))
        return {p.name for p in rng.sample(self.people, k)}

    # -- corpora -------------------------------------------------------------------------------------
    def training_corpus(self) -> list[str]:
        """Sentences the default models are trained on (shuffled with the seed)."""
        repeats = self.config.derived_repeats or max(1, len(self.people) // 50)
        out = []
        for p in self.people:
            for rel, (_, templates, _) in PERSON_RELATIONS.items():
                out += [f"{t.format(s=p.name)} {p.facts[rel]}." for t in templates]
            if p.name in self._two_hop_trained:
                for rel, (_, tmpl) in TWO_HOP.items():
                    out.append(f"{tmpl.format(s=p.name)} {self.two_hop_answer(rel, p.facts[rel])}.")
        for rel, s, o in self.derived_facts():
            out += [f"{t.format(s=s)} {o}." for t in DERIVED_RELATIONS[rel][2]] * repeats
        random.Random(self.config.seed + 1).shuffle(out)
        return out

    def heldout_corpus(self) -> list[str]:
        """Held-out text for key statistics: the held-out template of each fact, and multi-fact sentences
        ("{s}, who was born in X, works for Y and plays the Z."); no sentence appears in the training corpus."""
        out = []
        for p in self.people:
            f = p.facts
            out += [f"{held.format(s=p.name)} {f[rel]}." for rel, (_, _, held) in PERSON_RELATIONS.items()]
            out.append(f"{p.name}, who was born in {f['birthplace']}, works for {f['employer']} "
                       f"and plays the {f['instrument']}.")
            out.append(f"Fluent in {f['native_language']}, {p.name} is a {f['occupation']} who loves {f['sport']}.")
        random.Random(self.config.seed + 2).shuffle(out)
        return out

    def recall_queries(self, include_derived: bool = True) -> list[tuple[str, str, str]]:
        """(relation, prompt, answer) for every trained fact and template."""
        q = [(rel, t.format(s=p.name), p.facts[rel]) for p in self.people
             for rel, (_, templates, _) in PERSON_RELATIONS.items() for t in templates]
        if include_derived:
            q += [(rel, t.format(s=s), o) for rel, s, o in self.derived_facts() for t in DERIVED_RELATIONS[rel][2]]
        return q

    # -- edit cases ----------------------------------------------------------------------------------
    def name_sharers(self, person: Person) -> list[Person]:
        return [q for q in self.people if q.name != person.name and (q.first == person.first or q.last == person.last)]

    def edit_cases(self, n: int = 100, seed: int = 0, neighbours: int = 3) -> list[EditCase]:
        """n distinct (person, relation) edits, deterministic for (world seed, seed)."""
        pairs = [(p, r) for p in self.people for r in PERSON_RELATIONS]
        if n > len(pairs):
            raise ValueError(f"asked for {n} edit cases but the world has only {len(pairs)} facts")
        rng = random.Random(f"{self.config.seed}-{seed}")
        index = {p.name: i for i, p in enumerate(self.people)}
        return [self._case(p, r, rng, neighbours, index[p.name]) for p, r in rng.sample(pairs, n)]

    def _case(self, p: Person, rel: str, rng: random.Random, neighbours: int, idx: int) -> EditCase:
        kind, templates, _ = PERSON_RELATIONS[rel]
        true = p.facts[rel]
        candidates = [o for o in self.objects[kind] if o != true]
        if rel in TWO_HOP:  # prefer targets whose two-hop answer changes too, so portability is informative
            moved = [o for o in candidates if self.two_hop_answer(rel, o) != self.two_hop_answer(rel, true)]
            candidates = moved or candidates
        new = rng.choice(candidates)
        sharers = self.name_sharers(p)
        others = [q for q in self.people if q.name != p.name]
        picked = rng.sample(sharers, min(1, len(sharers))) + rng.sample(others, neighbours)
        picked = list({q.name: q for q in picked}.values())[:neighbours]
        locality = [Probe(prompt=templates[0].format(s=q.name), answers=[q.facts[rel]], category="Neighborhood")
                    for q in picked]
        other_rels = rng.sample([r for r in PERSON_RELATIONS if r != rel], 2)
        locality += [Probe(prompt=PERSON_RELATIONS[r][1][0].format(s=p.name), answers=[p.facts[r]],
                           category="Other_Relation") for r in other_rels]
        portability = []
        if rel in TWO_HOP:
            portability.append(Probe(prompt=TWO_HOP[rel][1].format(s=p.name), answers=[self.two_hop_answer(rel, new)],
                                     category="Reasoning"))
        return EditCase(
            case_id=f"world-{self.config.seed}-{idx}-{rel}", dataset="world", subject=p.name,
            prompt=templates[0].format(s=p.name), target_new=new, ground_truth=[true],
            rephrase=[t.format(s=p.name) for t in templates[1:]], locality=locality, portability=portability,
            relation=rel,
        )

    # -- persistence and summary ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"world_config": self.config.model_dump()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> World:
        data = json.loads(Path(path).read_text())
        return cls(WorldConfig(**data["world_config"]))

    def stats(self) -> dict[str, int]:
        firsts = [p.first for p in self.people]
        lasts = [p.last for p in self.people]
        return {
            "people": len(self.people), "relations": len(PERSON_RELATIONS),
            "templates_per_relation": min(len(t) for _, t, _ in PERSON_RELATIONS.values()),
            "facts": len(self.people) * len(PERSON_RELATIONS), "derived_facts": len(self.derived_facts()),
            "cities": len(self.cities), "countries": len(self.countries), "companies": len(self.companies),
            "people_sharing_first_name": sum(firsts.count(f) > 1 for f in firsts),
            "people_sharing_last_name": sum(lasts.count(x) > 1 for x in lasts),
            "training_sentences": len(self.training_corpus()), "heldout_sentences": len(self.heldout_corpus()),
        }


def build_world(config: WorldConfig | None = None, **overrides) -> World:
    """A world from a config and/or keyword overrides (`build_world(people=200, seed=3)`), validated."""
    base = (config or WorldConfig()).model_dump()
    return World(WorldConfig(**{**base, **overrides}))
