"""Teacher-forced metrics: rewrite, rephrase, locality, portability (docs/equations.md "Metrics"; EasyEdit
conventions).

Every metric scores an answer after a prompt, teacher forced: `prompt + " " + answer` is encoded once by
goldenlayers.text.encode_answers (right padding, answer tokens found by character offsets), and the argmax of the
logits at each position that predicts an answer token is compared with that token.

- rewrite:     fraction of target_new tokens predicted correctly after the prompt (partial credit).
- rephrase:    the same after each rephrased prompt, averaged over the case's rephrasings.
- portability: the same for each portability probe's answer (its first alias).
- locality:    for each locality probe, the fraction of answer positions whose argmax TOKEN ID is the same for
               the unedited and the edited model (agreement with the model, not with the answer).
Portability and locality average within each probe category of a case, then over its categories (KnowEdit);
a case without probes has no value for that metric (it is skipped, not counted as 0).

The same forward also gives each answer's mean per-token negative log-likelihood (`Scored.nll`), which ROME's
CounterFact metrics compare (goldenlayers.evaluation.counterfact_rome).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from goldenlayers.metric_names import EASYEDIT_METRICS
from goldenlayers.metric_names import (
    LOWER_IS_BETTER as LOWER_IS_BETTER,  # the directions live with the metrics
)
from goldenlayers.models.loader import model_device
from goldenlayers.text import encode_answers, model_max_length

METRICS = EASYEDIT_METRICS  # the default family; goldenlayers.metric_names lists the others and the directions


@dataclass(frozen=True)
class Scored:
    """One teacher-forced prompt+answer: argmax token ids at the answer positions and the answer's token ids (A,);
    nll: the mean over the answer's tokens of -log p(token | everything before it) (not compared by ==)."""

    predicted: tuple[int, ...]
    gold: tuple[int, ...]
    nll: float = field(default=math.nan, compare=False)

    @property
    def accuracy(self) -> float:
        return sum(p == g for p, g in zip(self.predicted, self.gold)) / len(self.gold)

    def agreement(self, other: Scored) -> float:
        """Fraction of answer positions where both predictions are the same token id (locality)."""
        if other.gold != self.gold:
            raise ValueError("agreement needs the same prompt+answer tokens on both sides")
        return sum(a == b for a, b in zip(self.predicted, other.predicted)) / len(self.gold)


def check_pair(tok, prompt: str, answer: str, max_length: int | None) -> None:
    """Raise the encoding error a prompt+answer pair would cause (empty answer, no prompt token, too long)."""
    encode_answers(tok, [prompt], [answer], max_length)


@torch.no_grad()
def teacher_forced(model, tok, pairs: Sequence[tuple[str, str]], batch_size: int = 16, *,
                   context: Callable | None = None) -> list[Scored]:
    """Score (prompt, answer) pairs in batches of `batch_size`; one forward (B, T) -> logits (B, T, V) per batch.

    Results do not depend on batch size or padding: positions come from the answer mask of each row.
    context(start, stop), if given, is a context manager in force during the forward of pairs[start:stop] (per-row
    edits, goldenlayers.editing.row_edits).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, max_len = model_device(model), model_max_length(model)
    out: list[Scored] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start: start + batch_size]
        b = encode_answers(tok, [p for p, _ in chunk], [a for _, a in chunk], max_len, device)
        with context(start, start + len(chunk)) if context is not None else nullcontext():
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits  # (B, T, V)
        pred = logits.argmax(-1)  # (B, T)
        predict = b.predict_mask
        for i in range(len(chunk)):
            gold = b.input_ids[i][b.answer_mask[i]]  # (A,)
            logp = logits[i][predict[i]].float().log_softmax(-1)  # (A, V)
            nll = -logp.gather(1, gold[:, None].to(logp.device)).mean().item()
            out.append(Scored(tuple(pred[i][predict[i]].tolist()), tuple(gold.tolist()), nll))
    return out


def category_mean(values: Iterable[tuple[str, float]]) -> float | None:
    """KnowEdit averaging inside one case: mean within each category, then mean over categories (None if empty)."""
    groups: dict[str, list[float]] = {}
    for category, v in values:
        groups.setdefault(category, []).append(v)
    if not groups:
        return None
    return sum(sum(g) / len(g) for g in groups.values()) / len(groups)
