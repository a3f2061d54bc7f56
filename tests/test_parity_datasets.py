"""The MEND-style zsRE and known_1000.json readers on small files in the exact published shapes, and the format
hint for a file read under the wrong dataset name (docs/parity.md)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from goldenlayers.datasets import DatasetFileError, load_dataset

# zsre_mem_eval.json as ROME/MEMIT ship it (MEND's file with `case_id`); the second record as MEND's own file has
# it (no case_id); the third has a subject that is not in its question
ZSRE_MEND = [
    {"subject": "Epaspidoceras", "src": "What family does Epaspidoceras belong to?", "pred": "Noctuidae",
     "rephrase": "What family are Epaspidoceras?", "alt": "Noctuidae", "answers": ["Aspidoceratidae"],
     "loc": "nq question: who sang nothing's gonna change my love for you", "loc_ans": "George Benson",
     "cond": "Geometridae >> Noctuidae || What family does Epaspidoceras belong to?", "case_id": 0},
    {"subject": "Sacramento", "src": "Which country is Sacramento in?", "pred": "Canada",
     "rephrase": "In which country is Sacramento located?", "alt": "Canada", "answers": ["United States", "USA"],
     "loc": "nq question: where is the eiffel tower", "loc_ans": "Paris",
     "cond": "Mexico >> Canada || Which country is Sacramento in?"},
    {"subject": "Nobody", "src": "Who wrote Hamlet?", "pred": "x", "rephrase": "Hamlet's author?", "alt": "Marlowe",
     "answers": ["Shakespeare"], "loc": "nq question: q", "loc_ans": "a", "cond": "c", "case_id": 2},
]

# known_1000.json's record shape
KNOWN = [
    {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent",
     "prediction": " of Antarctica. It is the highest peak", "prompt": "Vinson Massif is located in the continent of",
     "relation_id": "P30"},
    {"known_id": 1, "subject": "Beats Music", "attribute": "Apple", "template": "{} is owned by",
     "prediction": " Apple, which is", "prompt": "Beats Music is owned by", "relation_id": "P127"},
    {"known_id": 2, "subject": "Audible.com", "attribute": "Amazon", "template": "{} is owned by",
     "prediction": " Amazon.com, Inc.", "prompt": "Audible.com is owned by", "relation_id": "P127"},
    {"known_id": 3, "subject": "Mount Everest", "attribute": "Asia", "template": "{} is located in the continent",
     "prediction": " of Asia.", "prompt": "Mount Everest is located in the continent of", "relation_id": "P30"},
    {"known_id": 4, "subject": "Instagram", "attribute": "Facebook", "template": "{} is owned by",
     "prediction": " Facebook", "prompt": "Instagram is owned by", "relation_id": "P127"},
    {"known_id": 5, "subject": "Euro", "attribute": "Europe", "template": "{} is the currency of",
     "prediction": " Europe", "prompt": "Euro is the currency of", "relation_id": "P9999"},
]

COUNTERFACT = [{"case_id": 0, "requested_rewrite": {
    "prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux", "relation_id": "P103",
    "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", "id": "Q150"}},
    "paraphrase_prompts": ["Danielle Darrieux spoke"], "neighborhood_prompts": ["Léon Blum's mother tongue is"],
    "attribute_prompts": [], "generation_prompts": ["Danielle Darrieux's mother tongue is"]}]


def write(tmp_path, name, records):
    p = tmp_path / name
    p.write_text(json.dumps(records), encoding="utf-8")
    return p


def test_zsre_mend_both_conventions(tmp_path):
    path = write(tmp_path, "zsre_mem_eval.json", ZSRE_MEND)
    easy, rome = load_dataset("zsre_mend", path), load_dataset("zsre_mend_rome", tmp_path)  # folder: usual name
    for d in (easy, rome):
        assert [c.case_id for c in d] == ["0", "1"] and d.report.records == 3
        assert d.report.skipped[0].case_id == "2" and d.report.skipped[0].field == "subject"
    c0, c1 = easy.cases
    assert (c0.prompt, c0.subject, c0.target_new, c0.ground_truth, c0.rephrase) == (
        "What family does Epaspidoceras belong to?", "Epaspidoceras", "Noctuidae", ["Aspidoceratidae"],
        ["What family are Epaspidoceras?"])
    assert (c0.locality[0].prompt, c0.locality[0].answers) == (
        "nq question: who sang nothing's gonna change my love for you", ["George Benson"])
    assert (c1.target_new, c1.ground_truth, c1.dataset) == ("Canada", ["United States", "USA"], "zsre_mend")
    r0, r1 = rome.cases
    assert (r0.target_new, r0.ground_truth, r1.target_new) == ("Aspidoceratidae", None, "United States")
    assert r0.locality[0].prompt == "nq question: who sang nothing's gonna change my love for you?"
    assert r0.rephrase == ["What family are Epaspidoceras?"] and r0.dataset == "zsre_mend_rome"


def test_known_as_published_and_with_counterfact_targets(tmp_path):
    path = write(tmp_path, "known_1000.json", KNOWN)
    known = load_dataset("known", path)
    assert [(c.case_id, c.prompt, c.target_new, c.ground_truth, c.relation) for c in known][:2] == [
        ("0", "Vinson Massif is located in the continent of", "Antarctica", ["Antarctica"], "P30"),
        ("1", "Beats Music is owned by", "Apple", ["Apple"], "P127")]
    assert len(known) == 6
    cf = load_dataset("known_counterfact", path)
    by_id = {c.case_id: c for c in cf}
    assert [s.case_id for s in cf.report.skipped] == ["5"]  # the only record of its relation
    assert "no other record of this relation" in cf.report.skipped[0].reason
    assert (by_id["0"].target_new, by_id["3"].target_new) == ("Asia", "Antarctica")  # the relation's other one
    for cid, own in (("1", "Apple"), ("2", "Amazon"), ("4", "Facebook")):
        assert by_id[cid].ground_truth == [own]
        assert by_id[cid].target_new in {"Apple", "Amazon", "Facebook"} - {own}
    # the choice depends on the record, not on the file's order
    again = load_dataset("known_counterfact", write(tmp_path, "rev.json", KNOWN[::-1]))
    assert {c.case_id: c.target_new for c in again} == {c.case_id: c.target_new for c in cf}


@pytest.mark.parametrize(("records", "wrong", "want"), [
    (KNOWN, "zsre", "ROME known_1000.json file: use --dataset known or known_counterfact"),
    (ZSRE_MEND, "zsre", "MEND-style zsRE (zsre_mem_eval.json) file: use --dataset zsre_mend or zsre_mend_rome"),
    (ZSRE_MEND, "known", "MEND-style zsRE"),
    (COUNTERFACT, "zsre_mend", "ROME CounterFact file: use --dataset counterfact"),
    (COUNTERFACT, "wiki_counterfact", "use --dataset counterfact"),
    ([{"subject": "A B", "prompt": "A B is", "target_new": "x", "ground_truth": "y"}], "counterfact",
     "KnowEdit file: use --dataset zsre or wiki_counterfact or wiki_recent"),
    ([{"concept": "A B", "text": "A B was", "labels": "born"}], "zsre", "KnowEdit WikiBio file: use --dataset wikibio"),
])
def test_a_file_of_another_format_names_the_dataset_to_use(tmp_path, records, wrong, want):
    with pytest.raises(DatasetFileError, match="this looks like a") as e:
        load_dataset(wrong, write(tmp_path, "f.json", records))
    assert want in str(e.value) and "\n" not in str(e.value)


def test_a_broken_file_of_the_right_format_still_reports_its_records(tmp_path):
    bad = [{**r, "prompt": "no subject here"} for r in KNOWN]
    d = load_dataset("known", write(tmp_path, "k.json", bad))  # no hint: it is a known_1000 file
    assert len(d) == 0 and len(d.report.skipped) == 6


def test_cli_wrong_dataset_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    path = write(tmp_path, "known_1000.json", KNOWN)
    r = CliRunner().invoke(app, ["evaluate", "--dataset", "counterfact", "--data-file", str(path)])
    text = " ".join(r.output.split())  # the console wraps long lines at its width
    assert r.exit_code == 2 and "this looks like a ROME known_1000.json file: use --dataset known" in text
    assert "Traceback" not in text
