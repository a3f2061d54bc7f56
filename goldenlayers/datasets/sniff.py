"""Which published format a benchmark file is in, from its first record's fields (docs/parity.md).

`load_dataset` asks this when a reader loaded no case from a non-empty file, so that a file read under the wrong
dataset name gets "this looks like a <format> file: use --dataset X" instead of a list of skipped records.
"""

from __future__ import annotations

# format -> (what to call it, the dataset names that read it)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "counterfact": ("ROME CounterFact", ("counterfact", "world")),
    "zsre_mend": ("MEND-style zsRE (zsre_mem_eval.json)", ("zsre_mend", "zsre_mend_rome")),
    "known": ("ROME known_1000.json", ("known", "known_counterfact")),
    "wikibio": ("KnowEdit WikiBio", ("wikibio",)),
    "knowedit": ("KnowEdit", ("zsre", "wiki_counterfact", "wiki_recent", "world")),
}


def sniff_format(record) -> str | None:
    """The format of a file whose first record is `record`, or None when it is none of FORMATS."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "requested_rewrite" in keys:
        return "counterfact"
    if {"src", "answers"} <= keys and ({"alt", "loc"} & keys):
        return "zsre_mend"
    if "known_id" in keys or {"attribute", "template", "prompt"} <= keys:
        return "known"
    if {"concept", "labels"} <= keys:
        return "wikibio"
    if {"subject", "prompt", "target_new"} <= keys:
        return "knowedit"
    return None


def format_hint(name: str, data: list) -> str | None:
    """"this looks like a <format> file: use --dataset X" when `data` is in a format that `name` does not read."""
    fmt = sniff_format(next((r for r in data if isinstance(r, dict)), None))
    if fmt is None or name in FORMATS[fmt][1]:
        return None
    label, names = FORMATS[fmt]
    return f"this looks like a {label} file: use --dataset {' or '.join(n for n in names if n != 'world')}"
