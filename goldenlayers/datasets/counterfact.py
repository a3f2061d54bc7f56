"""ROME's CounterFact reader (`counterfact.json`, also `multi_counterfact.json`), read unchanged (docs/formats.md).

A record:
    {"case_id": 0, "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
     "relation_id": "P103", "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", ...}},
     "paraphrase_prompts": [...], "neighborhood_prompts": [...], "attribute_prompts": [...],
     "generation_prompts": [...]}

becomes an EditCase with case id = `case_id` (the record index when absent), prompt = the template with "{}"
replaced by the subject, target_new / ground_truth = the `str` of target_new / target_true, relation = relation_id,
rephrase = paraphrase_prompts, and locality = the neighborhood prompts (category "Neighborhood") whose answer is
target_true (ROME's neighborhood score: other subjects that share the true attribute must keep it), and
generation_prompts = generation_prompts (ROME's generation entropy, docs/evaluation.md). CounterFact has no
portability; attribute_prompts are not used.
"""

from __future__ import annotations

from pathlib import Path

from goldenlayers.cases import CaseError, EditCase, Probe
from goldenlayers.datasets.loading import LoadReport, build_case, convert_records, json_records, require


def _target(rr: dict, key: str, case_id: str) -> str:
    t = require(rr, key, case_id, (dict, str))
    value = t if isinstance(t, str) else t.get("str")
    if not isinstance(value, str) or not value.strip():
        raise CaseError(case_id, f"requested_rewrite.{key}.str", "missing or empty")
    return value


def _prompts(record: dict, key: str, case_id: str) -> list[str]:
    value = record.get(key) or []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise CaseError(case_id, key, "expected a list of strings")
    return [p for p in value if p.strip()]


def counterfact_case(record: dict, index: int, report: LoadReport, label: str = "counterfact") -> EditCase:
    """One CounterFact record as an EditCase. Raises CaseError (case, field, reason) for a malformed record."""
    raw_id = record.get("case_id", index)
    if not isinstance(raw_id, (int, str)) or isinstance(raw_id, bool):
        raise CaseError(str(index), "case_id", f"expected an int or a string, found {type(raw_id).__name__}")
    cid = str(raw_id)
    rr = require(record, "requested_rewrite", cid, dict)
    template = require(rr, "prompt", cid)
    subject = require(rr, "subject", cid)
    if "{}" not in template:
        raise CaseError(cid, "requested_rewrite.prompt", f"template {template!r} has no '{{}}' for the subject")
    target_new = _target(rr, "target_new", cid)
    target_true = _target(rr, "target_true", cid)
    locality = [Probe(prompt=p, answers=[target_true], category="Neighborhood")
                for p in _prompts(record, "neighborhood_prompts", cid)]
    relation = rr.get("relation_id")
    return build_case(
        case_id=cid, dataset=label, subject=subject, prompt=template.replace("{}", subject, 1),
        target_new=target_new, ground_truth=[target_true], rephrase=_prompts(record, "paraphrase_prompts", cid),
        locality=locality, relation=relation if isinstance(relation, str) else None,
        generation_prompts=_prompts(record, "generation_prompts", cid),
    )


def read_counterfact(path: str | Path, name: str = "counterfact") -> tuple[list[EditCase], LoadReport]:
    """Read a CounterFact file; cases are labelled `name`. Returns (cases, report of skipped records)."""
    first_index: dict[str, int] = {}

    def convert(rec, i, rep):
        case = counterfact_case(rec, i, rep, name)
        if case.case_id in first_index:
            raise CaseError(case.case_id, "case_id", f"duplicate of record {first_index[case.case_id]} (first kept)")
        first_index[case.case_id] = i
        return case

    return convert_records(json_records(path), name, path, convert)
