"""Dataset readers on small files written in the exact published shapes (docs/formats.md)."""

import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from goldenlayers.datasets import (
    DatasetFileError,
    answer_aliases,
    load_dataset,
    proxy_union,
    shuffle_cases,
    split_cases,
)


def write(tmp_path, name, records):
    p = tmp_path / name
    p.write_text(json.dumps(records), encoding="utf-8")
    return p


ZSRE_GOOD = {
    "subject": "Epaspidoceras", "target_new": "Noctuidae", "prompt": "Which family does Epaspidoceras belong to?",
    "ground_truth": ["Aspidoceratidae"], "rephrase_prompt": "What family are Epaspidoceras?",
    "cond": "Geometridae >> Noctuidae || Which family does Epaspidoceras belong to?",
    "locality": {"Relation_Specificity": [{"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]},
                                          {"prompt": "Epaspidoceras taxon rank", "ground_truth": ["genus"]}]},
    "portability": {"Reasoning": [{"prompt": "What is the common name for the family Epaspidoceras belongs to?",
                                   "ground_truth": "Owlet moths"}]},
}


def zsre_records():
    return [
        ZSRE_GOOD,
        {**ZSRE_GOOD, "target_new": None},                                  # 1: missing target
        {**ZSRE_GOOD, "subject": "Ammonites"},                              # 2: subject not in prompt
        {**ZSRE_GOOD, "prompt": 17},                                        # 3: wrong type
        {**ZSRE_GOOD, "target_new": "   "},                                 # 4: empty target
        {k: v for k, v in ZSRE_GOOD.items() if k != "portability"},         # 5: no portability: fine
        {**ZSRE_GOOD, "portability": {"Subject_Aliasing": [                 # 6: list of alias lists, bad probe
            {"prompt": "Which family does E. belong to?", "ground_truth": [["Noctuidae", "owlet moths"], ["Noctuids"]]},
            {"ground_truth": "x"}]}},
        "not a record",                                                     # 7: not an object
    ]


def test_zsre_counts_skips_and_aliases(tmp_path):
    d = load_dataset("zsre", write(tmp_path, "ZsRE-test-all.json", zsre_records()))
    rep = d.report
    assert (rep.records, rep.loaded, len(d)) == (8, 3, 3)
    assert [(s.index, s.field) for s in rep.skipped] == [(1, "target_new"), (2, "subject"), (3, "prompt"),
                                                         (4, "target_new"), (7, "<record>")]
    assert "does not occur" in rep.skipped[1].reason and "expected str" in rep.skipped[2].reason
    assert "3 of 8 records loaded" in rep.summary() and "5 skipped" in rep.summary()
    c0, c5, c6 = d.cases
    assert (c0.case_id, c0.dataset, c0.ground_truth, c0.rephrase) == ("0", "zsre", ["Aspidoceratidae"],
                                                                        ["What family are Epaspidoceras?"])
    assert [(p.category, p.answers) for p in c0.locality] == [("Relation_Specificity", ["genus"])] * 2
    assert [(p.category, p.answers) for p in c0.portability] == [("Reasoning", ["Owlet moths"])]
    assert c5.case_id == "5" and c5.portability == []
    assert c6.portability[0].answers == ["Noctuidae", "owlet moths", "Noctuids"]
    assert [(s.index, s.field) for s in rep.dropped_probes] == [(6, "portability.Subject_Aliasing[1].prompt")]


def test_answer_shapes():
    assert answer_aliases("Paris", "c", "f") == ["Paris"]
    assert answer_aliases(["Paris", "Paris, France"], "c", "f") == ["Paris", "Paris, France"]
    assert answer_aliases([["Berlin", "DE-BE"], ["Berlin", "Berlin (Germany)"]], "c", "f") == \
        ["Berlin", "DE-BE", "Berlin (Germany)"]
    for bad in (None, [], [""], 3, [{"a": 1}]):
        with pytest.raises(ValueError, match="case 'c', field 'f'"):
            answer_aliases(bad, "c", "f")


def test_wikibio_wiki_counterfact_wiki_recent(tmp_path):
    wikibio = [{"text": "This is a Wikipedia passage about john russell reynolds. Sir John Russell Reynolds was a "
                        "British neurologist.", "labels": "He received general education from his father.",
                "concept": "john russell reynolds",
                "locality": {"Relation_Specificity": [{"prompt": "The field of work of john russell reynolds is",
                                                       "ground_truth": ["medicine"]}]}},
               {"text": "A passage.", "labels": "More.", "concept": "nobody"}]
    d = load_dataset("wikibio", write(tmp_path, "wikibio-test-all.json", wikibio))
    (c,) = d.cases
    assert c.subject == "john russell reynolds" and c.target_new.startswith("He received") and c.ground_truth is None
    assert c.prompt.startswith("This is a Wikipedia passage") and [p.answers for p in c.locality] == [["medicine"]]
    assert d.report.skipped[0].field == "concept"

    cf = [{"subject": "Frederic Piesch", "prompt": "The name of the position held by Frederic Piesch is",
           "target_new": "Archbishop of León, Mexico", "ground_truth": "mayor of Vienna",
           "portability": {"Subject_Aliasing": [{"prompt": "The name of the position held by Frederic of Pieschen is",
                                                 "ground_truth": "Archbishop of León, Mexico"}]},
           "locality": {"Relation_Specificity": [{"prompt": "The gender of Frederic Piesch is", "ground_truth": "male"}],
                        "Forgetfulness": [{"prompt": "The position held by Frederic Piesch, which is not X, is",
                                           "ground_truth": "mayor of Vienna"}]}}]
    (c,) = load_dataset("wiki_counterfact", write(tmp_path, "test_cf.json", cf)).cases
    assert c.ground_truth == ["mayor of Vienna"] and c.target_new == "Archbishop of León, Mexico"
    assert [p.category for p in c.locality] == ["Relation_Specificity", "Forgetfulness"]

    recent = [{"subject": "Leo Arons", "prompt": "The place of death of Leo Arons is", "target_new": "Berlin",
               "portability": {"Logical_Generalization": [{"prompt": "Is Leo Arons still alive?",
                                                           "ground_truth": [["no"], ["incorrect"], ["is dead"]]}],
                               "Reasoning": [{"prompt": "The continent of the place of death of Leo Arons is",
                                              "ground_truth": [["Europe", "European continent"]]}]},
               "locality": {"Relation_Specificity": [{"prompt": "The name of the father of Leo Arons is",
                                                      "ground_truth": [["Albert Arons"]]}]}}]
    (c,) = load_dataset("wiki_recent", write(tmp_path, "recent_test.json", recent)).cases
    assert c.ground_truth is None and c.old_answer is None
    assert [p.answers for p in c.portability] == [["no", "incorrect", "is dead"], ["Europe", "European continent"]]
    assert c.locality[0].answer == "Albert Arons"


def counterfact_record(i, subject="Danielle Darrieux"):
    return {"case_id": i, "pararel_idx": 2796,
            "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103",
                                  "target_new": {"str": "English", "id": "Q1860"},
                                  "target_true": {"str": "French", "id": "Q150"}, "subject": subject},
            "paraphrase_prompts": ["Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native"],
            "neighborhood_prompts": ["The mother tongue of Léon Blum is", "Raymond Barre is a native speaker of"],
            "attribute_prompts": ["J.R.R. Tolkien is a native speaker of"],
            "generation_prompts": ["Danielle Darrieux's mother tongue is"]}


def test_counterfact(tmp_path):
    recs = [counterfact_record(0), counterfact_record(7, "Edwin of Northumbria"), counterfact_record(7),
            {"case_id": 9}, {**counterfact_record(10), "requested_rewrite": {**counterfact_record(10)["requested_rewrite"],
                                                                              "target_new": {"id": "Q1"}}}]
    d = load_dataset("counterfact", write(tmp_path, "counterfact.json", recs))
    assert [c.case_id for c in d] == ["0", "7"]
    c = d[0]
    assert (c.prompt, c.target_new, c.ground_truth, c.relation) == ("The mother tongue of Danielle Darrieux is",
                                                                   "English", ["French"], "P103")
    assert c.rephrase[0].endswith("a native") and c.portability == []
    assert [(p.prompt, p.answers, p.category) for p in c.locality][0] == \
        ("The mother tongue of Léon Blum is", ["French"], "Neighborhood")
    assert [(s.index, s.field) for s in d.report.skipped] == [(2, "case_id"), (3, "requested_rewrite"),
                                                              (4, "requested_rewrite.target_new.str")]


def test_world_reads_both_export_shapes(tmp_path):
    a = load_dataset("world", write(tmp_path, "a.json", [counterfact_record(3)]))
    b = load_dataset("world", write(tmp_path, "b.json", [ZSRE_GOOD]))
    assert [(c.dataset, c.case_id, c.target_new) for c in (*a, *b)] == [("world", "3", "English"),
                                                                        ("world", "0", "Noctuidae")]


def test_bad_files_and_names(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(DatasetFileError, match="bad.json.*not valid JSON"):
        load_dataset("zsre", bad)
    obj = write(tmp_path, "obj.json", {"data": []})
    with pytest.raises(DatasetFileError, match="obj.json.*JSON list.*dict"):
        load_dataset("zsre", obj)
    with pytest.raises(DatasetFileError, match="does not exist"):
        load_dataset("zsre", tmp_path / "missing.json")
    with pytest.raises(KeyError, match="did you mean 'zsre'"):
        load_dataset("zsrre", bad)
    folder = tmp_path / "knowedit" / "ZsRE"
    folder.mkdir(parents=True)
    write(folder, "ZsRE-test-all.json", [ZSRE_GOOD])
    assert len(load_dataset("zsre", tmp_path / "knowedit")) == 1  # the usual file name found inside a folder
    with pytest.raises(DatasetFileError, match="no test_cf.json"):
        load_dataset("wiki_counterfact", tmp_path / "knowedit")


def many(n, start=0):
    return [{**ZSRE_GOOD, "target_new": f"T{i}"} for i in range(start, start + n)]


def test_limit_shuffle_and_stable_split(tmp_path):
    path = write(tmp_path, "z.json", many(400))
    d = load_dataset("zsre", path)
    assert [c.case_id for c in load_dataset("zsre", path, limit=3)] == ["0", "1", "2"]
    s1 = [c.case_id for c in load_dataset("zsre", path, shuffle_seed=1, limit=50)]
    assert s1 == [c.case_id for c in load_dataset("zsre", path, shuffle_seed=1, limit=50)]
    assert s1 != [c.case_id for c in load_dataset("zsre", path, shuffle_seed=2, limit=50)]
    assert sorted(s1) != s1 and len(set(s1)) == 50

    proxy, test = split_cases(d.cases, 0.1, seed=0)
    assert len(proxy) == 40 and len(test) == 360  # exactly round(0.1 x 400)
    assert not {c.case_id for c in proxy} & {c.case_id for c in test}
    assert [c.case_id for c in proxy] == sorted((c.case_id for c in proxy), key=int)  # input order kept
    assert {c.case_id for c in split_cases(d.cases, 0.1, seed=1).proxy} != {c.case_id for c in proxy}
    # the proxy set is the first 40 cases in the seeded hash order, computed here independently
    by_hash = sorted(d.cases, key=lambda c: hashlib.sha256(f"split|0|zsre|{c.case_id}".encode()).digest()[:8])
    assert {c.case_id for c in proxy} == {c.case_id for c in by_hash[:40]}

    path.write_text(json.dumps(many(400) + many(200, 400)), encoding="utf-8")  # the file grows
    grown = load_dataset("zsre", path)
    g_split = grown.split(0.1, seed=0)
    assert len(g_split.proxy) == 60
    # growing the file does not reorder the old cases: the old ones among the grown proxy set are a prefix of
    # the old hash order (so the old and the grown proxy sets are nested)
    old_rank = {c.case_id: i for i, c in enumerate(by_hash)}
    g_old = sorted(old_rank[c.case_id] for c in g_split.proxy if int(c.case_id) < 400)
    assert g_old == list(range(len(g_old)))
    assert any(int(c.case_id) >= 400 for c in g_split.proxy)
    # a shuffled grown file keeps the old cases in their old relative order
    old_order = [c.case_id for c in shuffle_cases(d.cases, 5)]
    assert [c.case_id for c in shuffle_cases(grown.cases, 5) if int(c.case_id) < 400] == old_order


def test_proxy_union(tmp_path):
    z = load_dataset("zsre", write(tmp_path, "z.json", many(200)))
    cf = load_dataset("counterfact", write(tmp_path, "cf.json", [counterfact_record(i) for i in range(200)]))
    splits = {"zsre": z.split(), "counterfact": cf.split()}
    union = proxy_union(splits)
    assert len(union) == len(splits["zsre"].proxy) + len(splits["counterfact"].proxy)
    assert {c.dataset for c in union} == {"zsre", "counterfact"}
    assert [c for c in union if c.dataset == "zsre"] == splits["zsre"].proxy
    with pytest.raises(ValueError, match="appears in two proxy sets"):
        proxy_union([splits["zsre"], splits["zsre"]])
    assert len(splits["zsre"].proxy) == 20 and len(splits["counterfact"].proxy) == 20 and len(union) == 40
    with pytest.raises(ValueError, match="strictly between"):
        split_cases(z.cases, 1.0)


@pytest.mark.parametrize(("n", "fraction", "proxy"), [(120, 0.1, 12), (300, 0.1, 30), (80, 0.1, 8), (125, 0.1, 13),
                                                     (5, 0.1, 1), (2, 0.1, 1), (2, 0.9, 1), (10, 0.95, 9),
                                                     (7, 0.5, 4)])
def test_split_sizes_are_exact(tmp_path, n, fraction, proxy):
    cases = load_dataset("zsre", write(tmp_path, "z.json", many(n))).cases
    for seed in (0, 3):
        s = split_cases(cases, fraction, seed=seed)
        assert (len(s.proxy), len(s.test)) == (proxy, n - proxy)
        assert sorted(c.case_id for c in s.proxy + s.test) == sorted(c.case_id for c in cases)


def test_split_needs_two_cases(tmp_path):
    one = load_dataset("zsre", write(tmp_path, "z.json", many(1))).cases
    with pytest.raises(ValueError, match="at least 2 cases, got 1"):
        split_cases(one, 0.1)
    with pytest.raises(ValueError, match="at least 2 cases, got 0"):
        split_cases([], 0.1)
def test_records_stream_in_chunks_and_limit_stops_reading(tmp_path):
    """The incremental decoder gives json.load's records at any chunk size (a record, a string escape or a
    multi-byte character cut between chunks); with a limit and no shuffle, reading stops once the limit's cases
    are loaded, so a broken tail after them is never read (the whole file is read when every case is asked for)."""
    from goldenlayers.datasets.loading import json_records

    records = many(30) + [{"nested": [1, 2.5e-3, None, True, {"k": "é \u2603 \\\" ]["}]}, -7, "x", []]
    path = tmp_path / "r.json"
    path.write_text(" \n[\n" + ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n] \n",
                    encoding="utf-8")
    for chunk in (1, 7, 64, 1 << 20):
        assert list(json_records(path, chunk=chunk)) == json.loads(path.read_text(encoding="utf-8"))
    assert list(json_records(write(tmp_path, "e.json", []))) == []

    broken = tmp_path / "broken.json"
    good = json.dumps(many(4))
    broken.write_text(good[:-1] + ", {\"subject\": " + " " * 3_000_000 + "oops", encoding="utf-8")
    d = load_dataset("zsre", broken, limit=3)
    assert [c.target_new for c in d] == ["T0", "T1", "T2"] and d.report.stopped_early
    assert "stopped at the limit" in d.report.summary() and d.report.records == 3
    with pytest.raises(DatasetFileError, match="broken.json.*not valid JSON"):
        load_dataset("zsre", broken)
    with pytest.raises(DatasetFileError, match="broken.json.*not valid JSON"):
        load_dataset("zsre", broken, limit=3, shuffle_seed=0)  # shuffling needs every record
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_dataset("zsre", path, limit=0)
