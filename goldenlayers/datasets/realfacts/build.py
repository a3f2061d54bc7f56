"""Edit cases of the real-world fact set, built the way CounterFact was (docs/realfacts.md, "Construction").

For each fact (with a model: each fact the model knows, goldenlayers.datasets.realfacts.known):
- prompt: the rewrite template (the first one the model answers; without a model the first one), rephrase:
  the relation's other templates; ground_truth: the answer aliases, the one the model gives first;
- target_new: another canonical object of the same relation, drawn with a generator seeded by (seed, fact), so
  it does not depend on which other facts are kept; for city -> country a country on another continent, so the
  two-hop answers move too;
- locality "Neighborhood": up to `neighbours` other subjects of the relation whose true object is the same
  (CounterFact's neighbourhood; only these go to the CounterFact export); "Same_Relation": when fewer exist
  (every capital is unique), other subjects of the same relation, each with its own true object, fill up to
  `neighbours` (no neighbour's name contains the subject's or the other way round: not Sudan and South Sudan); "Other_Relation": the subject's facts of the other relations (countries only);
- portability "Reasoning": two-hop prompts answered from target_new (templates.TWO_HOP).
Probe facts the model knows are asked with the template and alias it answers. Cases are ordered relation by
relation in turn (each relation shuffled by `seed`), so the first N cases spread over all relations.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from goldenlayers.cases import EditCase, Probe
from goldenlayers.datasets.realfacts.facts import Fact, build_facts, objects_of
from goldenlayers.datasets.realfacts.known import Known, find_known
from goldenlayers.datasets.realfacts.known_cache import known_path, read_known, write_known
from goldenlayers.datasets.realfacts.source import Geo, load_geo
from goldenlayers.datasets.realfacts.templates import RELATIONS, TWO_HOP, render

DATASET = "realfacts"


@dataclass
class RelationCount:
    """What the known-fact filter did with one relation's facts."""

    facts: int = 0
    known: int = 0
    by_template: dict[int, int] = field(default_factory=dict)  # rewrite template index -> facts known through it
    dropped: list[dict] = field(default_factory=list)  # {subject, answer, said}: the model's greedy first token

    def as_dict(self, examples: int = 5) -> dict:
        return {"facts": self.facts, "known": self.known, "dropped": self.facts - self.known,
                "known_by_template": self.by_template, "dropped_examples": self.dropped[:examples]}


@dataclass
class RealFacts:
    """The cases, the facts they came from, and the filter's report (model None: no filter)."""

    cases: list[EditCase]
    facts: list[Fact]
    counts: dict[str, RelationCount]
    model: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def report(self) -> dict:
        total = sum(c.known for c in self.counts.values())
        return {"model": self.model, "filter": "greedy answer after a template (docs/realfacts.md)" if self.model
                else "none", "sources": self.versions, "facts": len(self.facts), "known": total,
                "cases": len(self.cases), "relations": {r: c.as_dict() for r, c in self.counts.items()}}


class _Builder:
    def __init__(self, geo: Geo, facts: list[Fact], known: dict[str, Known] | None, seed: int, neighbours: int):
        self.geo, self.facts, self.known, self.seed, self.neighbours = geo, facts, known, seed, neighbours
        self.by_relation: dict[str, list[Fact]] = defaultdict(list)
        self.by_subject: dict[str, list[Fact]] = defaultdict(list)
        for f in facts:
            self.by_relation[f.relation].append(f)
            self.by_subject[f.subject].append(f)
        self.objects = objects_of(facts)
        self.by_phrase = {c.phrase: c for c in geo.countries.values()}
        self.by_capital = {c.capital: c for c in geo.countries.values()}

    def asked(self, f: Fact) -> tuple[str, list[str]]:
        """(prompt, answers) of a fact as the model answers it (first template and canonical order if unknown)."""
        k = (self.known or {}).get(f.key) or Known(0, 0)
        answers = [f.answers[k.alias]] + [a for i, a in enumerate(f.answers) if i != k.alias]
        return f.prompts()[k.template], answers

    def probe(self, f: Fact, category: str) -> Probe:
        prompt, answers = self.asked(f)
        return Probe(prompt=prompt, answers=answers, category=category)

    def target_new(self, f: Fact, rng: random.Random) -> str:
        candidates = [o for o in self.objects[f.relation] if o not in f.answers]
        if f.relation == "city_country":
            own = self.by_phrase[f.object].continent
            candidates = [o for o in candidates if self.by_phrase[o].continent != own] or candidates
        return rng.choice(candidates)

    def two_hop(self, f: Fact, new: str) -> list[Probe]:
        out = []
        for template, rel in TWO_HOP.get(f.relation, ()):
            c = self.by_phrase[new] if f.relation == "city_country" else self.by_capital[new]
            answer = {"continent": c.continent, "language": c.language, "country": c.phrase}[rel]
            if answer:
                out.append(Probe(prompt=render(template, f.subject_phrase), answers=list(dict.fromkeys(
                    (answer, c.name) if rel == "country" else (answer,))), category="Reasoning"))
        return out

    def case(self, f: Fact) -> EditCase:
        rng = random.Random(f"realfacts:{self.seed}:{f.key}")
        new = self.target_new(f, rng)
        others = [g for g in self.by_relation[f.relation]  # "South Sudan" is no neighbour of "Sudan"
                  if f.subject not in g.subject and g.subject not in f.subject]
        same = [g for g in others if g.object == f.object]
        picked = rng.sample(same, min(self.neighbours, len(same)))
        rest = [g for g in others if g.object != f.object]
        fill = rng.sample(rest, min(self.neighbours - len(picked), len(rest)))
        locality = [self.probe(g, "Neighborhood") for g in picked] + [self.probe(g, "Same_Relation") for g in fill]
        locality += [self.probe(g, "Other_Relation") for g in self.by_subject[f.subject] if g.relation != f.relation]
        prompt, answers = self.asked(f)
        rephrase = [p for p in f.prompts() if p != prompt]
        return EditCase(case_id=f"{DATASET}-{f.relation}-{f.subject}", dataset=DATASET, subject=f.subject,
                        prompt=prompt, target_new=new, ground_truth=answers, rephrase=rephrase,
                        locality=locality, portability=self.two_hop(f, new), relation=f.relation)


def known_facts(model, tok, facts: list[Fact], batch_size: int, progress, cache: bool
                ) -> tuple[dict[str, Known], dict[str, str]]:
    """find_known, through the on-disk cache when `cache` (and the model has an identity)."""
    path = known_path(model, tok, facts, batch_size) if cache else None
    stored = read_known(path) if path is not None and path.exists() else None
    if stored is not None:
        if progress:
            progress(f"known facts read from {path}")
        return stored
    known, said = find_known(model, tok, facts, batch_size=batch_size, progress=progress)
    if path is not None:
        write_known(path, known, said)
    return known, said


def interleave(facts: list[Fact], seed: int) -> list[Fact]:
    """Facts relation by relation in turn (RELATIONS order), each relation's facts shuffled by `seed`."""
    groups = []
    for rel in RELATIONS:
        group = sorted((f for f in facts if f.relation == rel), key=lambda f: f.subject)
        random.Random(f"realfacts-order:{seed}:{rel}").shuffle(group)
        groups.append(group)
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def build_realfacts(lm=None, limit: int | None = None, seed: int = 0, neighbours: int = 5, batch_size: int = 32,
                    geo: Geo | None = None, progress=None, known_only: bool = True, cache: bool = True) -> RealFacts:
    """The real-fact cases: with `lm` (a LoadedModel, or (model, tokenizer)) only the facts it knows, unless
    `known_only` is False (then every fact, those it knows asked the way it answers them).

    limit: keep the first `limit` cases of the interleaved order (None: all).
    cache: read the known-fact filter's result from the cache root, or store it there after computing it
    (goldenlayers.datasets.realfacts.known_cache; keyed by the model's identity and the fact set).
    """
    geo = geo or load_geo()
    facts = build_facts(geo)
    counts = {r: RelationCount() for r in RELATIONS}
    for f in facts:
        counts[f.relation].facts += 1
    known = None
    if lm is not None:
        model, tok = (lm.model, lm.tokenizer) if hasattr(lm, "model") else lm
        known, said = known_facts(model, tok, facts, batch_size, progress, cache)
        for f in facts:
            c = counts[f.relation]
            if f.key in known:
                c.known += 1
                t = known[f.key].template
                c.by_template[t] = c.by_template.get(t, 0) + 1
            else:
                c.dropped.append({"subject": f.subject, "answer": f.object, "said": said.get(f.key, "")})
    else:
        for c in counts.values():
            c.known = c.facts
    builder = _Builder(geo, facts, known, seed, neighbours)
    chosen = [f for f in interleave(facts, seed) if known is None or not known_only or f.key in known]
    if limit is not None:
        chosen = chosen[:limit]
    name = getattr(lm, "name", None) if lm is not None else None
    return RealFacts([builder.case(f) for f in chosen], facts, counts,
                     model=name or ("model" if lm is not None else None), versions=dict(geo.versions))
