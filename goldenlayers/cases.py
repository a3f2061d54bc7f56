"""EditCase: the one record every dataset becomes (docs/equations.md "Terms" and docs/formats.md).

An edit case holds a prompt that mentions a subject, the new target, optionally the old answer, and the
prompts that measure generalisation (rephrase), specificity (locality) and reasoning (portability).
Answers are kept as *all* their aliases (`answers[0]` is the one scored by default), and every probe
carries the KnowEdit category it came from so that metrics can be averaged the KnowEdit way
(within a category, then over categories, then over records: docs/equations.md "Metrics").

The fact token (the last token of the subject inside the prompt, "subject_last") is found from the
tokenizer's character offsets, never by re-tokenising substrings, so BOS tokens, leading spaces and
subjects at the start of the prompt all work. A subject that is not in the prompt raises
`CaseError` naming the case and the field; so does any other invalid field of `EditCase(**fields)`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class CaseError(ValueError):
    """A problem with one edit case's data: names the case and the field, so a run can skip and report it."""

    def __init__(self, case_id: str, field: str, reason: str):
        self.case_id, self.field, self.reason = case_id, field, reason
        super().__init__(f"case {case_id!r}, field {field!r}: {reason}")


class Probe(BaseModel):
    """A prompt with its expected answer(s): used for locality and portability.

    `answers` holds every alias (first one scored by default); `category` is the KnowEdit group name
    (e.g. "Relation_Specificity", "Reasoning") or a synthetic-world label.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    answers: list[str] = Field(min_length=1)
    category: str = "default"

    @field_validator("answers")
    @classmethod
    def _non_empty_answers(cls, v: list[str]) -> list[str]:
        if not v or not v[0].strip():
            raise ValueError("first answer is empty")
        return v

    @property
    def answer(self) -> str:
        return self.answers[0]


class EditCase(BaseModel):
    """One knowledge edit: make `prompt` (which mentions `subject`) continue with `target_new`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    dataset: str
    subject: str
    prompt: str
    target_new: str
    ground_truth: list[str] | None = None
    rephrase: list[str] = Field(default_factory=list)
    locality: list[Probe] = Field(default_factory=list)
    portability: list[Probe] = Field(default_factory=list)
    relation: str | None = None
    generation_prompts: list[str] = Field(default_factory=list)  # CounterFact's, for ROME's generation entropy

    def __init__(self, **fields) -> None:
        """Validate; any problem (including pydantic's own: missing field, wrong type) raises CaseError."""
        try:
            super().__init__(**fields)
        except ValidationError as e:
            raise case_error_from(e, fields.get("case_id")) from None

    def model_post_init(self, __context) -> None:  # noqa: D401 - validation with case-aware messages
        if not self.subject.strip():
            raise CaseError(self.case_id, "subject", "subject is empty")
        if not self.prompt.strip():
            raise CaseError(self.case_id, "prompt", "prompt is empty")
        if not self.target_new.strip():
            raise CaseError(self.case_id, "target_new", "target is empty")
        if self.subject not in self.prompt:
            raise CaseError(
                self.case_id,
                "subject",
                f"subject {self.subject!r} does not occur in prompt {self.prompt!r} (matching is case- and space-sensitive)",
            )

    @property
    def old_answer(self) -> str | None:
        return self.ground_truth[0] if self.ground_truth else None


def case_error_from(error: ValidationError, case_id=None) -> CaseError:
    """The CaseError behind a pydantic ValidationError (which wraps errors raised in validators), or one
    built from its first error's location and message."""
    err = error.errors()[0]
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, CaseError):
        return inner
    loc = ".".join(str(x) for x in err.get("loc", ())) or "?"
    return CaseError(str(case_id if case_id is not None else "?"), loc, err.get("msg", str(error)))


SubjectOccurrence = Literal["first", "last"]


def subject_char_span(case_id: str, prompt: str, subject: str, occurrence: SubjectOccurrence = "first") -> tuple[int, int]:
    """Character span [start, end) of `subject` in `prompt` (the first occurrence by default, as ROME's templates do).

    Whitespace at either end of `subject` is matched but left out of the span, so that a subject given as
    "Paris " does not pull in the next word's token (byte-level BPE tokens carry their leading space).
    """
    start = prompt.find(subject) if occurrence == "first" else prompt.rfind(subject)
    if start < 0 or not subject.strip():
        raise CaseError(case_id, "subject", f"subject {subject!r} does not occur in prompt {prompt!r}")
    end = start + len(subject.rstrip())
    return start + len(subject) - len(subject.lstrip()), end


def tokens_in_span(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of tokens whose character offsets overlap [start, end). Zero-width tokens (BOS/EOS) never do."""
    return [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]


def fact_token_index(
    tokenizer, prompt: str, subject: str, case_id: str = "?", occurrence: SubjectOccurrence = "first"
) -> int:
    """Index (in `tokenizer(prompt)` input_ids, special tokens included) of the subject's last token.

    Uses offsets, so it is right whether or not the tokenizer adds BOS, and whether the subject's first
    token carries the leading space ("Ġ") or not.
    """
    idx = subject_token_indices(tokenizer, prompt, subject, case_id, occurrence)
    return idx[-1]


def subject_token_indices(
    tokenizer, prompt: str, subject: str, case_id: str = "?", occurrence: SubjectOccurrence = "first"
) -> list[int]:
    """Indices of all tokens of the subject in `tokenizer(prompt)` (special tokens included)."""
    start, end = subject_char_span(case_id, prompt, subject, occurrence)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    idx = tokens_in_span(offsets, start, end)
    if not idx:
        raise CaseError(case_id, "subject", f"subject {subject!r} covers no token of prompt {prompt!r}")
    return idx
