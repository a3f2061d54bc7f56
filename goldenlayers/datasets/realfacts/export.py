"""The real-fact cases in the published formats, through the synthetic world's writers (docs/realfacts.md, "Formats").

KnowEdit wiki_counterfact: `goldenlayers.datasets.synthetic.export.export_knowedit` as it is (the "Neighborhood"
and "Same_Relation" probes go to locality under Relation_Specificity and Same_Relation, "Other_Relation" under
Forgetfulness, two-hop probes to portability under Reasoning). CounterFact: `counterfact_record` with the
case's "Neighborhood" prompts (other subjects with the same true object, so that target_true answers them as
the reader assumes) and, as attribute prompts, the first template of subjects whose true object is target_new.
"""

from __future__ import annotations

from pathlib import Path

from goldenlayers.datasets.realfacts.build import RealFacts
from goldenlayers.datasets.synthetic.export import counterfact_record, export_knowedit, write_json_list

__all__ = ["counterfact_records", "export_counterfact", "export_knowedit"]


def counterfact_records(data: RealFacts, attributes: int = 5) -> list[dict]:
    """The cases of `data` as CounterFact records (case_id = position)."""
    by_object: dict[tuple[str, str], list] = {}
    for f in data.facts:
        by_object.setdefault((f.relation, f.object), []).append(f)
    out = []
    for i, case in enumerate(data.cases):
        same_new = [f.prompts()[0] for f in by_object.get((case.relation, case.target_new), [])][:attributes]
        neighbourhood = [p.prompt for p in case.locality if p.category == "Neighborhood"]
        out.append(counterfact_record(case, i, neighbourhood, same_new))
    return out


def export_counterfact(data: RealFacts, path: str | Path) -> Path:
    """Write the cases of `data` as a CounterFact JSON list to `path`."""
    return write_json_list(counterfact_records(data), path)
