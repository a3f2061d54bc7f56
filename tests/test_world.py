"""The synthetic world: determinism, scale, unambiguous facts, edit cases, corpora and benchmark-format exports."""

import json
import os
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from goldenlayers.cases import EditCase, Probe
from goldenlayers.datasets.synthetic import World, build_world, export_counterfact, export_knowedit
from goldenlayers.datasets.synthetic.vocab import PERSON_RELATIONS


@pytest.fixture(scope="module")
def default_world() -> World:
    return build_world()


@pytest.fixture(scope="module")
def small_world() -> World:
    return build_world(people=150, seed=3)


_FACTS: dict[int, dict[tuple[str, str], list[str]]] = {}


def _true_fact(world: World, relation: str, prompt: str) -> str:
    """The true object behind a person prompt, found by rendering every (person, template) independently."""
    table = _FACTS.get(id(world))
    if table is None:
        table = _FACTS[id(world)] = defaultdict(list)
        for q in world.people:
            for rel, (_, templates, _) in PERSON_RELATIONS.items():
                for t in templates:
                    table[(rel, t.format(s=q.name))].append(q.facts[rel])
    hits = table[(relation, prompt)]
    assert len(hits) == 1, prompt
    return hits[0]


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = build_world(people=120, seed=5), build_world(people=120, seed=5), build_world(people=120, seed=6)
    assert a.training_corpus() == b.training_corpus()
    assert a.heldout_corpus() == b.heldout_corpus()
    assert [x.model_dump() for x in a.edit_cases(30, seed=1)] == [x.model_dump() for x in b.edit_cases(30, seed=1)]
    assert a.training_corpus() != c.training_corpus()
    assert [p.name for p in a.people] != [p.name for p in c.people]
    assert [x.case_id for x in a.edit_cases(30, seed=1)] != [x.case_id for x in a.edit_cases(30, seed=2)]


def test_default_scale(default_world):
    w = default_world
    assert len(w.people) >= 1000 and len({p.name for p in w.people}) == len(w.people)
    assert len(w.relations) >= 6
    assert all(len(w.templates(r)) >= 4 for r in w.relations)
    firsts, lasts = defaultdict(int), defaultdict(int)
    for p in w.people:
        firsts[p.first] += 1
        lasts[p.last] += 1
    assert sum(n > 1 for n in firsts.values()) >= 50 and sum(n > 1 for n in lasts.values()) >= 50
    assert 30 <= len(w.cities) <= 60 and len(w.countries) == 15 and len(w.companies) == 40
    stats = w.stats()
    assert stats["facts"] == 6 * len(w.people) and stats["derived_facts"] == len(w.cities) + len(w.companies)


def test_every_query_is_in_training_and_unambiguous(small_world):
    """Each recall prompt is followed in training by its answer and by nothing else (no template is a prefix of
    another relation's sentence), so 100% greedy recall is attainable."""
    corpus = small_world.training_corpus()
    following = defaultdict(set)
    for sentence in corpus:
        words = sentence.rstrip(".").split(" ")
        for i in range(1, len(words)):
            following[" ".join(words[:i])].add(words[i])
    sentences = set(corpus)
    queries = small_world.recall_queries()
    assert len(queries) == len(small_world.people) * 24 + 3 * (len(small_world.cities) + len(small_world.companies))
    for _, prompt, answer in queries:
        assert f"{prompt} {answer}." in sentences
        assert following[prompt] == {answer.split(" ")[0]}, prompt


def test_heldout_corpus_is_disjoint_and_about_the_same_people(small_world):
    train, held = set(small_world.training_corpus()), small_world.heldout_corpus()
    assert len(held) == len(small_world.people) * 8 and not train & set(held)
    mentioned = {p.name for p in small_world.people if any(p.name in s for s in held)}
    assert len(mentioned) == len(small_world.people)


def test_two_hop_prompts_mostly_held_out(small_world):
    corpus = small_world.training_corpus()
    w = small_world
    trained = [p for p in w.people if any(s.startswith(f"The country where {p.name} was born is ") for s in corpus)]
    assert len(trained) == round(0.3 * len(w.people))
    p = trained[0]
    assert f"The country where {p.name} was born is {w.city_country[p.facts['birthplace']]}." in corpus


def test_edit_cases(default_world):
    w = default_world
    cases = w.edit_cases(150, seed=0)
    assert len({(c.subject, c.relation) for c in cases}) == 150
    who = {(r, PERSON_RELATIONS[r][1][0].format(s=q.name)): q for q in w.people for r in PERSON_RELATIONS}
    for c in cases:
        assert isinstance(c, EditCase) and c.dataset == "world"
        assert c.subject in c.prompt and all(c.subject in r for r in c.rephrase) and len(c.rephrase) == 3
        assert c.target_new != c.ground_truth[0] and c.ground_truth[0] == _true_fact(w, c.relation, c.prompt)
        assert c.target_new in w.objects[PERSON_RELATIONS[c.relation][0]]
        first, last = c.subject.split(" ", 1)
        neigh = [p for p in c.locality if p.category == "Neighborhood"]
        other = [p for p in c.locality if p.category == "Other_Relation"]
        assert len(neigh) == 3 and len(other) == 2
        for p in neigh:
            assert c.subject not in p.prompt and p.answers == [_true_fact(w, c.relation, p.prompt)]
        # at least one neighbour shares the subject's first or last name
        assert any(who[(c.relation, p.prompt)].first == first or who[(c.relation, p.prompt)].last == last
                   for p in neigh), c.case_id
        for p in other:
            rel = next(r for r in PERSON_RELATIONS if r != c.relation and PERSON_RELATIONS[r][1][0].format(s=c.subject) == p.prompt)
            assert p.answers == [w.by_name[c.subject].facts[rel]]
        if c.relation == "birthplace":
            assert [p.answers for p in c.portability] == [[w.city_country[c.target_new]]]
            assert c.portability[0].answers != [w.city_country[c.ground_truth[0]]]
        elif c.relation == "employer":
            assert [p.answers for p in c.portability] == [[w.company_hq[c.target_new]]]
        else:
            assert c.portability == []
        assert all(p.category == "Reasoning" and c.subject in p.prompt for p in c.portability)
    with pytest.raises(ValueError, match="only"):
        build_world(people=10).edit_cases(61)


def test_world_json_round_trip(tmp_path, small_world):
    small_world.save(tmp_path / "world.json")
    again = World.load(tmp_path / "world.json")
    assert again.config == small_world.config and again.training_corpus() == small_world.training_corpus()
    assert json.loads((tmp_path / "world.json").read_text())["world_config"]["seed"] == 3


def _parse_knowedit(path) -> list[EditCase]:
    """A minimal reader of the wiki_counterfact shape, independent of goldenlayers.datasets.knowedit."""
    back = {"Relation_Specificity": "Neighborhood", "Forgetfulness": "Other_Relation"}
    out = []
    for i, r in enumerate(json.loads(path.read_text())):
        assert set(r) == {"subject", "prompt", "target_new", "ground_truth", "rephrase", "locality", "portability"}
        assert isinstance(r["ground_truth"], str) and isinstance(r["rephrase"], str)
        loc = [Probe(prompt=x["prompt"], answers=[x["ground_truth"]], category=back[k])
               for k, xs in r["locality"].items() for x in xs]
        port = [Probe(prompt=x["prompt"], answers=[x["ground_truth"]], category=k)
                for k, xs in r["portability"].items() for x in xs]
        out.append(EditCase(case_id=str(i), dataset="ke", subject=r["subject"], prompt=r["prompt"],
                            target_new=r["target_new"], ground_truth=[r["ground_truth"]], rephrase=[r["rephrase"]],
                            locality=loc, portability=port))
    return out


def test_knowedit_export_round_trip(tmp_path, small_world):
    cases = small_world.edit_cases(40, seed=2)
    back = _parse_knowedit(export_knowedit(cases, tmp_path / "sub" / "test_cf.json"))
    assert len(back) == 40
    for c, b in zip(cases, back):
        assert (b.subject, b.prompt, b.target_new, b.ground_truth) == (c.subject, c.prompt, c.target_new, c.ground_truth)
        assert b.rephrase == c.rephrase[:1]
        assert sorted(map(str, b.locality)) == sorted(map(str, c.locality))
        assert b.portability == c.portability


def test_counterfact_export_round_trip(tmp_path, small_world):
    w = small_world
    cases = w.edit_cases(40, seed=2)
    records = json.loads(export_counterfact(w, cases, tmp_path / "counterfact.json").read_text())
    assert [r["case_id"] for r in records] == list(range(40))
    for c, r in zip(cases, records):
        assert set(r) == {"case_id", "requested_rewrite", "paraphrase_prompts", "neighborhood_prompts",
                          "attribute_prompts", "generation_prompts"}
        rr = r["requested_rewrite"]
        assert set(rr) == {"prompt", "subject", "relation_id", "target_new", "target_true"}
        assert "{}" in rr["prompt"] and rr["prompt"].format(rr["subject"]) == c.prompt
        assert (rr["subject"], rr["target_new"]["str"], rr["target_true"]["str"], rr["relation_id"]) == (
            c.subject, c.target_new, c.ground_truth[0], c.relation)
        assert r["paraphrase_prompts"] == c.rephrase
        # CounterFact semantics: neighbourhood prompts are answered by target_true, attribute prompts by target_new
        assert r["neighborhood_prompts"] and all(
            _true_fact(w, c.relation, p) == c.ground_truth[0] and c.subject not in p for p in r["neighborhood_prompts"])
        assert all(_true_fact(w, c.relation, p) == c.target_new for p in r["attribute_prompts"])


def test_cli_world_exports(tmp_path):
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    ke, cf = tmp_path / "ke.json", tmp_path / "cf.json"
    res = CliRunner().invoke(app, ["world", "--people", "80", "--seed", "1", "--cases", "12", "--export-knowedit",
                                   str(ke), "--export-counterfact", str(cf), "--save", str(tmp_path / "w.json")])
    assert res.exit_code == 0, res.output
    expected = build_world(people=80, seed=1).stats()
    for key in ("facts", "training_sentences", "heldout_sentences"):
        assert any(key in line and line.split()[-2] == str(expected[key]) for line in res.output.splitlines())
    assert len(json.loads(ke.read_text())) == 12 and len(json.loads(cf.read_text())) == 12
    assert World.load(tmp_path / "w.json").config.people == 80
