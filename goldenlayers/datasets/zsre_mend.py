"""The MEND-style zsRE file that ROME, MEMIT and MEND evaluate on (`zsre_mem_eval.json`, `zsre_mend_eval.json`),
read unchanged (docs/parity.md).

A record:
    {"subject": "Epaspidoceras", "src": "What family does Epaspidoceras belong to?", "pred": "Noctuidae",
     "rephrase": "What family are Epaspidoceras?", "alt": "Noctuidae", "answers": ["Aspidoceratidae"],
     "loc": "nq question: who sang nothing's gonna change my love for you", "loc_ans": "George Benson",
     "cond": "Geometridae >> Noctuidae || What family does Epaspidoceras belong to?", "case_id": 0}

(`case_id` is sometimes absent: the record's index then). The two published conventions are two dataset names:

| name             | target_new   | ground_truth | locality probe (answer `loc_ans`) | follows                        |
|------------------|--------------|--------------|-----------------------------------|--------------------------------|
| `zsre_mend`      | `alt`        | `answers`    | `loc`                             | EasyEdit's ZsreDataset/KnowEdit |
| `zsre_mend_rome` | `answers[0]` | none         | `loc` + "?"                       | ROME/MEMIT's MENDQADataset      |

ROME gives target_true as "<|endoftext|>" (no old answer; a selector then uses the model's own prediction).
The prompt is `src`, the rephrase `rephrase`, the subject `subject` (a record whose subject is not in `src` is
skipped and reported); `pred` (another model's answer) and `cond` are not used. Locality probes have category
"NQ" and are scored like every locality probe (teacher forced `prompt + " " + answer`, which for the ROME
convention is ROME's own `loc + "?" + " " + loc_ans`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from goldenlayers.cases import CaseError, EditCase, Probe
from goldenlayers.datasets.loading import (
    LoadReport,
    answer_aliases,
    build_case,
    convert_records,
    read_json_list,
    require,
)

Convention = Literal["easyedit", "rome"]


def zsre_mend_case(record: dict, index: int, convention: Convention, label: str) -> EditCase:
    """One MEND-style zsRE record as an EditCase under `convention`. Raises CaseError for a malformed record."""
    raw_id = record.get("case_id", index)
    if not isinstance(raw_id, (int, str)) or isinstance(raw_id, bool):
        raise CaseError(str(index), "case_id", f"expected an int or a string, found {type(raw_id).__name__}")
    cid = str(raw_id)
    subject, src = require(record, "subject", cid), require(record, "src", cid)
    answers = answer_aliases(record.get("answers"), cid, "answers")
    if convention == "rome":
        target_new, ground_truth, loc_suffix = answers[0], None, "?"
    else:
        target_new, ground_truth, loc_suffix = require(record, "alt", cid), answers, ""
    rephrase = record.get("rephrase")
    if rephrase is not None and not isinstance(rephrase, str):
        raise CaseError(cid, "rephrase", f"expected a string, found {type(rephrase).__name__}")
    locality = []
    loc, loc_ans = record.get("loc"), record.get("loc_ans")
    if isinstance(loc, str) and loc.strip() and isinstance(loc_ans, str) and loc_ans.strip():
        locality.append(Probe(prompt=loc + loc_suffix, answers=[loc_ans], category="NQ"))
    return build_case(case_id=cid, dataset=label, subject=subject, prompt=src, target_new=target_new,
                      ground_truth=ground_truth, rephrase=[rephrase] if rephrase and rephrase.strip() else [],
                      locality=locality)


def read_zsre_mend(path: str | Path, convention: Convention, name: str) -> tuple[list[EditCase], LoadReport]:
    """Read a MEND-style zsRE file under `convention` ("easyedit": towards `alt`; "rome": towards `answers[0]`)."""
    return convert_records(read_json_list(path), name, path,
                           lambda rec, i, rep: zsre_mend_case(rec, i, convention, name))
