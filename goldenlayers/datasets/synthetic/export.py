"""Write the synthetic world's edit cases in the published benchmark formats (docs/formats.md).

- KnowEdit **wiki_counterfact** (`test_cf.json` shape): a JSON list of records with `subject`, `prompt`,
  `target_new`, `ground_truth` (string), `rephrase` (string), `locality` {`Relation_Specificity`: [...],
  `Forgetfulness`: [...]} and `portability` {`Reasoning`: [...]}, each probe `{"prompt", "ground_truth"}`.
  The world's "Neighborhood" probes become Relation_Specificity (same relation, other people), its
  "Other_Relation" probes become Forgetfulness (the same person's other facts).
- ROME **CounterFact** (`counterfact.json` shape): `case_id`, `requested_rewrite` {`prompt` with "{}",
  `subject`, `relation_id`, `target_new` {`str`, `id`}, `target_true` {`str`, `id`}}, `paraphrase_prompts`,
  `neighborhood_prompts` (other people whose *true* object equals this case's true object, so that the
  answer is target_true as in CounterFact), `attribute_prompts` (people whose true object is target_new),
  `generation_prompts`.
So the same dataset readers (goldenlayers.datasets.knowedit / counterfact) read the world and the real files.
The real-world fact set (goldenlayers.datasets.realfacts) writes its files with the same functions.
"""

from __future__ import annotations

import json
from pathlib import Path

from goldenlayers.cases import EditCase
from goldenlayers.datasets.synthetic.vocab import PERSON_RELATIONS
from goldenlayers.datasets.synthetic.world import World

KNOWEDIT_LOCALITY = {"Neighborhood": "Relation_Specificity", "Other_Relation": "Forgetfulness"}


def _answer(answers: list[str]) -> str | list[str]:
    """A single answer as a plain string (as in test_cf.json); several aliases as a list."""
    return answers[0] if len(answers) == 1 else list(answers)


def to_knowedit_record(case: EditCase) -> dict:
    """One case as a wiki_counterfact record (rephrase: the first rephrased prompt, a string as published)."""
    locality: dict[str, list[dict]] = {}
    for p in case.locality:
        locality.setdefault(KNOWEDIT_LOCALITY.get(p.category, p.category), []).append(
            {"prompt": p.prompt, "ground_truth": _answer(p.answers)})
    portability: dict[str, list[dict]] = {}
    for p in case.portability:
        portability.setdefault(p.category, []).append({"prompt": p.prompt, "ground_truth": _answer(p.answers)})
    return {
        "subject": case.subject, "prompt": case.prompt, "target_new": case.target_new,
        "ground_truth": case.old_answer, "rephrase": case.rephrase[0] if case.rephrase else None,
        "locality": locality, "portability": portability,
    }


def counterfact_record(case: EditCase, index: int, neighborhood: list[str], attributes: list[str],
                       generation: list[str] | None = None) -> dict:
    """One case as a CounterFact record (case_id = `index`, relation_id = the case's relation): `neighborhood`
    are prompts of other subjects whose true object is the case's true object, `attributes` prompts of subjects
    whose true object is target_new (shared by every exporter of CounterFact files)."""
    rel = case.relation
    true, new = case.old_answer, case.target_new
    return {
        "case_id": index,
        "requested_rewrite": {
            "prompt": case.prompt.replace(case.subject, "{}", 1), "subject": case.subject, "relation_id": rel,
            "target_new": {"str": new, "id": f"{rel}:{new}"}, "target_true": {"str": true, "id": f"{rel}:{true}"},
        },
        "paraphrase_prompts": list(case.rephrase),
        "neighborhood_prompts": list(neighborhood),
        "attribute_prompts": list(attributes),
        "generation_prompts": generation if generation is not None else
        [f"{case.subject} is known for", f"People say that {case.subject}"],
    }


def to_counterfact_record(world: World, case: EditCase, index: int, neighbours: int = 5) -> dict:
    """One case as a CounterFact record (case_id = `index`; relation_id = the world's relation name)."""
    rel = case.relation
    templates = PERSON_RELATIONS[rel][1]
    true, new = case.old_answer, case.target_new
    same_true = [p.name for p in world.people if p.facts[rel] == true and p.name != case.subject][:neighbours]
    same_new = [p.name for p in world.people if p.facts[rel] == new][:neighbours]
    return counterfact_record(case, index, [templates[0].format(s=n) for n in same_true],
                              [templates[0].format(s=n) for n in same_new])


def write_json_list(records: list[dict], path: str | Path) -> Path:
    """Write `records` as an indented JSON list to `path` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


def export_knowedit(cases: list[EditCase], path: str | Path) -> Path:
    """Write `cases` as a KnowEdit wiki_counterfact JSON list to `path`."""
    return write_json_list([to_knowedit_record(c) for c in cases], path)


def export_counterfact(world: World, cases: list[EditCase], path: str | Path) -> Path:
    """Write `cases` (from `world`) as a CounterFact JSON list to `path`."""
    return write_json_list([to_counterfact_record(world, c, i) for i, c in enumerate(cases)], path)
