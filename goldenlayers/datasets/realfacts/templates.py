"""Relations of the real-world fact set and their English prompt templates (docs/realfacts.md).

Every relation has at least four cloze templates with the subject in them and the object completing the
sentence (the rewrite prompt is the first template the model answers, the others are its paraphrases, as in
CounterFact). Two-hop templates ask for a fact of the *object* through the subject (portability).
`{s}` stands for the subject's phrase: a country that takes the definite article in English ("the United
States") gets it, capitalised at the start of a sentence, while the subject itself stays the bare name, so it
occurs in every prompt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """subject kind ("country" or "city"), object kind, and the templates (first = preferred rewrite prompt)."""

    subject: str
    object: str
    templates: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    "capital": Relation("country", "city", (
        "The capital of {s} is",
        "The capital of {s} is the city of",
        "The capital city of {s} is",
        "The government of {s} sits in the city of",
        "{s}'s capital city is",
    )),
    "continent": Relation("country", "continent", (
        "{s} is located in the continent of",
        "{s} is a country in",
        "{s} is a country on the continent of",
        "The continent where {s} lies is",
    )),
    "currency": Relation("country", "currency", (
        "The currency of {s} is the",
        "The official currency of {s} is the",
        "In {s}, people pay with the",
        "The money used in {s} is the",
    )),
    "language": Relation("country", "language", (
        "The official language of {s} is",
        "People in {s} speak",
        "Most people in {s} speak",
        "The main language spoken in {s} is",
    )),
    "city_country": Relation("city", "country", (
        "{s} is a city in the country of",
        "{s} is located in the country of",
        "The city of {s} is in the country of",
        "{s} is a city in",
    )),
}

# Two-hop portability: edited relation -> [(template about the subject, the object's relation that answers it)].
# After "Osaka is a city in France", Osaka's continent is France's continent; after "The capital of France is
# Tokyo", the capital of France lies in Japan.
TWO_HOP: dict[str, tuple[tuple[str, str], ...]] = {
    "city_country": (("{s} is located on the continent of", "continent"), ("People in {s} speak", "language")),
    "capital": (("The capital of {s} is located in the country of", "country"),),
}

# English country names that take the definite article besides those of the rule in `takes_article`.
_ARTICLE_NAMES = frozenset({"Bahamas", "Comoros", "Gambia", "Maldives", "Netherlands", "Philippines", "Seychelles",
                            "Palestinian Territory"})


def takes_article(name: str) -> bool:
    """True for country names said with "the": United ..., ... Republic ..., ... Islands, and a few plurals."""
    return (name.startswith("United ") or "Republic" in name or name.endswith(" Islands")
            or name in _ARTICLE_NAMES)


def phrase(name: str, article: bool) -> str:
    """The name as it stands inside a sentence ("the United States" or "France")."""
    return f"the {name}" if article else name


def render(template: str, subject_phrase: str) -> str:
    """The prompt of `template` for a subject phrase; a phrase starting the sentence is capitalised."""
    if template.startswith("{s}"):
        subject_phrase = subject_phrase[:1].upper() + subject_phrase[1:]
    return template.replace("{s}", subject_phrase)
