"""ROME's `known_1000.json`, the known facts its causal tracing runs on, read unchanged (docs/parity.md).

A record:
    {"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent",
     "prediction": " of Antarctica. It is the highest peak", "prompt": "Vinson Massif is located in the continent of",
     "relation_id": "P30"}

The file has no new target. Two dataset names:

- `known`: the facts as published. target_new is the true `attribute` itself (ground_truth the same), so an
  "edit" changes nothing and LGA's score is degenerate; what these cases are for is causal tracing (CMA traces the
  attribute's first token, after the known-fact filter: the model must predict it) and known-fact filtering
  (`evaluate` without an editor: rewrite = how much of the true attribute the model predicts).
- `known_counterfact`: CounterFact's own construction, usable for editing and every selector: target_new is the
  attribute of another record of the same relation (one of the relation's other distinct attributes, picked by a
  hash of the known_id, so it does not depend on the file's order); a record whose relation has no other
  attribute is skipped and reported.

case id = `known_id` (the index when absent), prompt = `prompt` (the template filled; it must contain the
subject), relation = `relation_id`. `prediction` (GPT-2 XL's continuation) is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from goldenlayers.cases import CaseError, EditCase
from goldenlayers.datasets.loading import LoadReport, build_case, convert_records, read_json_list, require
from goldenlayers.datasets.split import hash_unit

Target = Literal["attribute", "counterfact"]


def _id(record: dict, index: int) -> str:
    raw = record.get("known_id", index)
    if not isinstance(raw, (int, str)) or isinstance(raw, bool):
        raise CaseError(str(index), "known_id", f"expected an int or a string, found {type(raw).__name__}")
    return str(raw)


def other_attribute(case_id: str, attribute: str, candidates: list[str]) -> str:
    """CounterFact's target_new for a fact: one of its relation's other attributes, chosen by a hash of the id."""
    others = sorted(a for a in set(candidates) if a != attribute)
    if not others:
        raise CaseError(case_id, "relation_id", "no other record of this relation has another attribute to edit "
                        "towards (CounterFact's construction needs one)")
    return others[int(hash_unit("known_counterfact", case_id) * len(others))]


def read_known(path: str | Path, target: Target, name: str) -> tuple[list[EditCase], LoadReport]:
    """Read known_1000.json; target "attribute" (`known`) or "counterfact" (`known_counterfact`)."""
    data = read_json_list(path)
    by_relation: dict[str, list[str]] = {}
    for rec in data:
        if isinstance(rec, dict) and isinstance(rec.get("attribute"), str) and isinstance(rec.get("relation_id"), str):
            by_relation.setdefault(rec["relation_id"], []).append(rec["attribute"])

    def convert(rec: dict, index: int, report: LoadReport) -> EditCase:
        cid = _id(rec, index)
        subject, prompt = require(rec, "subject", cid), require(rec, "prompt", cid)
        attribute, relation = require(rec, "attribute", cid), require(rec, "relation_id", cid)
        if not attribute.strip():
            raise CaseError(cid, "attribute", "attribute is empty")
        new = attribute if target == "attribute" else other_attribute(cid, attribute, by_relation.get(relation, []))
        return build_case(case_id=cid, dataset=name, subject=subject, prompt=prompt, target_new=new,
                          ground_truth=[attribute], relation=relation)

    return convert_records(data, name, path, convert)
