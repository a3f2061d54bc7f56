"""EditCase validation and the fact token (docs/equations.md "Terms": last subject token, from offsets) with
tokenizers that do and do not add BOS."""

import pytest
from pydantic import ValidationError

from goldenlayers.cases import CaseError, EditCase, Probe, fact_token_index, subject_token_indices

TWICE = "Paris is the capital of France, said Paris Hilton"
DD = "The mother tongue of Danielle Darrieux is"


def pieces(tok, prompt, idx):
    ids = tok(prompt)["input_ids"]
    return [tok.decode([ids[i]]) for i in idx]


@pytest.mark.parametrize("bos", [False, True])
def test_fact_token_with_and_without_bos(tok, tok_bos, bos):
    tk = tok_bos if bos else tok
    idx = subject_token_indices(tk, DD, "Danielle Darrieux", "c1")
    assert "".join(pieces(tk, DD, idx)) == " Danielle Darrieux"
    assert idx == list(range(17 + bos, 30 + bos))  # BOS shifts every index by one
    t = fact_token_index(tk, DD, "Danielle Darrieux", "c1")
    assert t == idx[-1] == 29 + bos and pieces(tk, DD, [t]) == ["x"]
    assert pieces(tk, DD, [t + 1]) == [" is"]


@pytest.mark.parametrize("bos", [False, True])
def test_subject_at_prompt_start(tok, tok_bos, bos):
    tk = tok_bos if bos else tok
    idx = subject_token_indices(tk, TWICE, "Paris", "c2")
    assert idx == [0 + bos, 1 + bos] and "".join(pieces(tk, TWICE, idx)) == "Paris"
    if bos:
        assert tk(TWICE)["input_ids"][0] == tk.bos_token_id  # the zero-width BOS is never part of the subject


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("subject", [" Danielle Darrieux", "Danielle Darrieux ", " Danielle Darrieux "])
def test_spaces_around_the_subject(tok, tok_bos, bos, subject):
    tk = tok_bos if bos else tok
    plain = subject_token_indices(tk, DD, "Danielle Darrieux", "c3")
    assert subject_token_indices(tk, DD, subject, "c3") == plain  # never the " of" before or " is" after
    assert fact_token_index(tk, DD, subject, "c3") == 29 + bos


@pytest.mark.parametrize("bos", [False, True])
def test_subject_appearing_twice(tok, tok_bos, bos):
    tk = tok_bos if bos else tok
    first = fact_token_index(tk, TWICE, "Paris", "c4")
    last = fact_token_index(tk, TWICE, "Paris", "c4", occurrence="last")
    assert first == 1 + bos and pieces(tk, TWICE, [first]) == ["is"]
    assert last == 22 + bos and pieces(tk, TWICE, [last]) == [" Paris"]
    assert pieces(tk, TWICE, [last + 1]) == [" "]  # then "Hilton"


def test_subject_absent_names_case_and_field(tok):
    with pytest.raises(CaseError) as e:
        fact_token_index(tok, DD, "danielle darrieux", "case-7")
    assert (e.value.case_id, e.value.field) == ("case-7", "subject")
    assert "case 'case-7', field 'subject'" in str(e.value) and "does not occur" in str(e.value)
    with pytest.raises(CaseError, match="case 'case-8', field 'subject'"):
        EditCase(case_id="case-8", dataset="toy", subject="Tom Baker", prompt=DD, target_new="English")
    with pytest.raises(CaseError, match="field 'subject'"):
        fact_token_index(tok, DD, "   ", "case-9")


@pytest.mark.parametrize("field,value", [("target_new", "  "), ("target_new", ""), ("prompt", " "), ("subject", "")])
def test_empty_fields_are_case_errors(field, value):
    kw = dict(case_id="c9", dataset="toy", subject="Danielle Darrieux", prompt=DD, target_new="English")
    kw[field] = value
    with pytest.raises(CaseError) as e:
        EditCase(**kw)
    assert (e.value.case_id, e.value.field) == ("c9", field)


def test_valid_case_and_probes():
    case = EditCase(case_id="c10", dataset="toy", subject="Danielle Darrieux", prompt=DD, target_new="English",
                    ground_truth=["French", "francais"],
                    locality=[Probe(prompt="The capital of France is", answers=["Paris"], category="Relation")])
    assert case.old_answer == "French" and case.locality[0].answer == "Paris"
    assert EditCase(case_id="c11", dataset="toy", subject="Anna", prompt="Anna plays", target_new="x").old_answer is None


@pytest.mark.parametrize("answers", [[], [""], ["  "], ["", "Paris"]])
def test_probe_with_empty_answer_is_rejected(answers):
    with pytest.raises(ValidationError, match="answers"):
        Probe(prompt="The capital of France is", answers=answers)


def test_pydantic_field_errors_become_case_errors():
    with pytest.raises(CaseError) as e:
        EditCase(case_id="c12", dataset="toy", subject="Anna", prompt="Anna plays", target_new="x", rephrase="oops")
    assert (e.value.case_id, e.value.field) == ("c12", "rephrase")
    with pytest.raises(CaseError, match="case 'c13', field 'target_new'"):
        EditCase(case_id="c13", dataset="toy", subject="Anna", prompt="Anna plays")
    with pytest.raises(CaseError, match="field 'colour'"):
        EditCase(case_id="c14", dataset="toy", subject="Anna", prompt="Anna plays", target_new="x", colour="red")
