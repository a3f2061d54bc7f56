"""KnowEdit readers: ZsRE, WikiBio, WikiData_counterfact, WikiData_recent, read unchanged (docs/formats.md).

The published files (`ZsRE-test-all.json`, `wikibio-test-all.json`, `test_cf.json`, `recent_test.json`, and their
train counterparts) are JSON lists of records; the case id is the record's index in the file.

| dataset          | subject   | prompt   | target_new | ground_truth      | rephrase          | probes                  |
|------------------|-----------|----------|------------|-------------------|-------------------|-------------------------|
| zsre             | `subject` | `prompt` | `target_new` | list            | `rephrase_prompt` | locality, portability   |
| wikibio          | `concept` | `text`   | `labels`   | -                 | -                 | locality                |
| wiki_counterfact | `subject` | `prompt` | `target_new` | string          | (`rephrase`)      | locality, portability   |
| wiki_recent      | `subject` | `prompt` | `target_new` | - (insertion)   | (`rephrase`)      | locality, portability   |

Probe groups are dicts {category: [{"prompt", "ground_truth"}]} (locality: Relation_Specificity, Forgetfulness;
portability: Reasoning, Subject_Aliasing, Logical_Generalization); any group or category may be absent, and every
category name is kept on its probes for KnowEdit's per-category averaging. Answers of every shape (string, list,
list of alias lists) keep all aliases (goldenlayers.datasets.loading.answer_aliases). The rephrase field may be a
string or a list of strings; both `rephrase_prompt` and `rephrase` are read.
"""

from __future__ import annotations

from pathlib import Path

from goldenlayers.cases import CaseError, EditCase, Probe
from goldenlayers.datasets.loading import (
    LoadReport,
    answer_aliases,
    build_case,
    convert_records,
    first_answer,
    json_records,
    probes,
    require,
)

KNOWEDIT_DATASETS = ("zsre", "wikibio", "wiki_counterfact", "wiki_recent")

# (subject, prompt, target) field names per dataset; every other field is shared.
_CORE_FIELDS = {"wikibio": ("concept", "text", "labels")}
_DEFAULT_FIELDS = ("subject", "prompt", "target_new")


def _rephrase(record: dict, case_id: str) -> list[str]:
    for key in ("rephrase_prompt", "rephrase"):
        value = record.get(key)
        if value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(r, str) for r in items):
            raise CaseError(case_id, key, f"expected a string or a list of strings, found {type(value).__name__}")
        return [r for r in items if r.strip()]
    return []


def knowedit_case(record: dict, index: int, report: LoadReport, shape: str, label: str | None = None) -> EditCase:
    """One KnowEdit record of `shape` as an EditCase (case id = its index, dataset = `label` or the shape).

    Raises CaseError (case, field, reason) for a malformed record; a malformed probe is dropped into `report`.
    """
    cid = str(index)
    subj_key, prompt_key, target_key = _CORE_FIELDS.get(shape, _DEFAULT_FIELDS)
    subject = require(record, subj_key, cid)
    prompt = require(record, prompt_key, cid)
    target = first_answer(require(record, target_key, cid, (str, list)), cid, target_key)
    if subject.strip() and subject not in prompt:
        raise CaseError(cid, subj_key, f"subject {subject!r} does not occur in {prompt_key} {prompt[:120]!r}")
    gt = record.get("ground_truth")
    locality = [Probe(prompt=p, answers=a, category=c) for p, a, c in
                probes(record.get("locality"), cid, "locality", index, report)]
    portability = [Probe(prompt=p, answers=a, category=c) for p, a, c in
                   probes(record.get("portability"), cid, "portability", index, report)]
    return build_case(
        case_id=cid, dataset=label or shape, subject=subject, prompt=prompt, target_new=target,
        ground_truth=answer_aliases(gt, cid, "ground_truth") if gt is not None else None,
        rephrase=_rephrase(record, cid), locality=locality, portability=portability,
        relation=record.get("relation") if isinstance(record.get("relation"), str) else None,
    )


def read_knowedit(path: str | Path, dataset: str, name: str | None = None) -> tuple[list[EditCase], LoadReport]:
    """Read a KnowEdit file of shape `dataset` (one of KNOWEDIT_DATASETS); cases are labelled `name` (default: dataset).

    Returns (cases, report): malformed records are skipped and listed in the report with index and reason.
    """
    if dataset not in KNOWEDIT_DATASETS:
        raise ValueError(f"unknown KnowEdit shape {dataset!r}; expected one of {', '.join(KNOWEDIT_DATASETS)}")
    label = name or dataset
    return convert_records(json_records(path), label, path,
                           lambda rec, i, report: knowedit_case(rec, i, report, dataset, label))
