"""Vocabularies and surface templates of the synthetic world (the embedded default's data).

Relations (six person facts + two derived facts for two-hop portability), each with four cloze templates whose
object comes last (used for training, rewrite and rephrase prompts) and one held-out template that appears only
in the held-out corpus used for key statistics (docs/equations.md "Key statistics C = E[k k^T]").
Entity names of places and companies are generated from syllables so the world is fictional; people get
realistic names from Faker (see world.py).
"""

from __future__ import annotations

import random

# relation -> (object kind, 4 training templates, 1 held-out template)
PERSON_RELATIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "birthplace": ("city", (
        "{s} was born in",
        "The birthplace of {s} is",
        "{s} is originally from the city of",
        "Where was {s} born? In",
    ), "Records show that {s} came into the world in"),
    "employer": ("company", (
        "{s} works for",
        "The employer of {s} is",
        "{s} is employed by",
        "Every morning {s} goes to work at",
    ), "The payroll that pays {s} belongs to"),
    "occupation": ("occupation", (
        "{s} works as a",
        "The occupation of {s} is",
        "By profession, {s} is a",
        "{s} earns a living as a",
    ), "Asked about work, {s} says the job is"),
    "native_language": ("language", (
        "The native language of {s} is",
        "{s} grew up speaking",
        "The mother tongue of {s} is",
        "At home, {s} speaks",
    ), "The first words {s} ever said were in"),
    "instrument": ("instrument", (
        "{s} plays the",
        "The instrument of {s} is the",
        "{s} is a musician who plays the",
        "On stage, {s} performs on the",
    ), "In the orchestra {s} sits with the"),
    "sport": ("sport", (
        "{s} is an athlete who competes in",
        "The favorite sport of {s} is",
        "{s} competes in",
        "On weekends, {s} practices",
    ), "The trophy {s} won last year was for"),
}

# derived facts: relation -> (subject kind, object kind, templates with {s} the city/company)
DERIVED_RELATIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "city_country": ("city", "country", (
        "{s} is located in the country of",
        "The country of {s} is",
        "{s} is a city in",
    )),
    "company_hq": ("company", "city", (
        "{s} is headquartered in",
        "The headquarters of {s} are in",
        "{s} has its head office in",
    )),
}

# two-hop portability: person relation -> (derived relation, template with {s} the person)
TWO_HOP: dict[str, tuple[str, str]] = {
    "birthplace": ("city_country", "The country where {s} was born is"),
    "employer": ("company_hq", "The headquarters of the employer of {s} are in"),
}

OCCUPATIONS = (
    "lawyer", "nurse", "architect", "teacher", "pilot", "chemist", "baker", "carpenter", "dentist", "engineer",
    "farmer", "journalist", "librarian", "mechanic", "painter", "pharmacist", "photographer", "plumber",
    "surgeon", "translator",
)
INSTRUMENTS = (
    "violin", "piano", "cello", "trumpet", "flute", "guitar", "harp", "clarinet", "saxophone", "drums",
    "oboe", "trombone", "accordion", "banjo", "tuba",
)
SPORTS = (
    "tennis", "soccer", "rugby", "cricket", "hockey", "golf", "basketball", "volleyball", "baseball",
    "swimming", "cycling", "fencing", "rowing", "boxing", "archery",
)

_ONSETS = ("b", "br", "d", "dr", "f", "g", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "z", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "ea")
_CODAS = ("", "n", "r", "l", "s", "th", "m", "x")


def _word(rng: random.Random, syllables: int) -> str:
    w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
    return w.capitalize()


def invent_names(rng: random.Random, n: int, suffixes: tuple[str, ...] = ("",), syllables=(2, 3),
                 taken: set[str] | None = None) -> list[str]:
    """n distinct pronounceable names (seeded), none in `taken`, each with one of `suffixes`."""
    taken = set() if taken is None else taken
    out: list[str] = []
    while len(out) < n:
        name = _word(rng, rng.choice(syllables)) + rng.choice(suffixes)
        if name not in taken and len(name) <= 14:
            taken.add(name)
            out.append(name)
    return out
