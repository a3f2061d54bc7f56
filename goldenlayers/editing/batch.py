"""Batches of templated prompts for keys and v* (docs/equations.md "Editing methods"): several cases, one forward.

Every row is one case's prompt inside one context template ("<text>. {prompt}"), optionally followed by the
target (teacher forcing through goldenlayers.text.encode_answers), or the KL prompt "{subject} is a", or a
preservation prompt (a KL row whose distribution is read at its last token, not at the subject). The fact
token of a row is the last token of the subject *inside the prompt part* (its character span is shifted by the
template prefix, so a subject that the generated prefix happens to contain is never picked) and is found from
token offsets (goldenlayers.cases.tokens_in_span). Rows are right-padded; positions come from the offsets and
the attention mask, never from the padding side. Bad inputs raise CaseError naming the case and the field.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, fields

import torch

from goldenlayers.cases import CaseError, EditCase, subject_char_span, tokens_in_span
from goldenlayers.text import PromptTooLongError, encode_answers, encode_prompts, join_prompt_answer, pad_id

KL_ROW = -1  # template index of a KL-prompt row (KL at the fact token)
PRESERVE_ROW = -2  # template index of a preservation-prompt row (KL at the prompt's last token)


@dataclass
class Rows:
    """input_ids, attention_mask: (R, T). fact, case, template: (R,) long (template KL_ROW marks KL rows,
    PRESERVE_ROW preservation rows). predict_mask: (R, T) bool, True where the logits predict a target token;
    next_ids: (R, T) that token. kl_at: (R,) long, the position whose next-token distribution the KL compares
    (the fact token of a KL row, the last token of a preservation row; the fact token elsewhere, unused)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    fact: torch.Tensor
    case: torch.Tensor
    template: torch.Tensor
    predict_mask: torch.Tensor
    next_ids: torch.Tensor
    kl_at: torch.Tensor

    def to(self, device) -> Rows:
        return Rows(*(getattr(self, f.name).to(device) for f in fields(self)))

    def index(self, row_idx: torch.Tensor) -> Rows:
        """The rows `row_idx` (R',) in that order."""
        return Rows(*(getattr(self, f.name)[row_idx] for f in fields(self)))

    def per_token(self, x: torch.Tensor) -> torch.Tensor:
        """A module's input/output as (R, T, d): OPT's MLP sees the batch flattened to (R*T, d)."""
        return x.reshape(*self.input_ids.shape, x.shape[-1])

    def rows_of(self, case_idx: torch.Tensor) -> torch.Tensor:
        """(R',) indices of the rows that belong to the cases `case_idx`."""
        return torch.isin(self.case, case_idx.to(self.case.device)).nonzero().squeeze(1)


def _fact_index(tok, text: str, span: tuple[int, int], case_id: str) -> int:
    offsets = [tuple(o) for o in tok(text, return_offsets_mapping=True)["offset_mapping"]]
    idx = tokens_in_span(offsets, *span)
    if not idx:
        raise CaseError(case_id, "subject", f"subject covers no token of {text!r}")
    return idx[-1]


def _encode(case: EditCase, field: str, fn, *args):
    try:
        return fn(*args)
    except PromptTooLongError as e:
        raise CaseError(case.case_id, field, f"{e}; shorten the prompt or use fewer/shorter context templates") from e
    except ValueError as e:
        raise CaseError(case.case_id, "target_new", str(e)) from e


def check_case(case: EditCase) -> None:
    """Re-check the fields the editors rely on (cases built with model_construct skip validation)."""
    if not case.target_new or not case.target_new.strip():
        raise CaseError(case.case_id, "target_new", "target is empty")
    subject_char_span(case.case_id, case.prompt, case.subject)


def build_rows(tok, cases: list[EditCase], templates: list[str], *, with_target: bool,
               kl_prompt: str | None = None, max_length: int | None = None,
               preserve_prompts: list[str] | tuple[str, ...] = ()) -> Rows:
    """Rows for every (case, template), case-major; then one KL row per case when `kl_prompt` is given; then
    one row per case and preservation prompt ("{}" = the subject)."""
    ids, answer, meta = [], [], []
    for ci, case in enumerate(cases):
        check_case(case)
        key = ("templated", _case_key(case), tuple(templates), with_target, max_length)
        c_ids, c_answer, facts = _memo(tok, key, lambda c=case: _templated_rows(tok, c, templates, with_target,
                                                                                max_length))
        ids += c_ids
        answer += c_answer
        meta += [(fact, ci, ti, fact) for ti, fact in enumerate(facts)]
    subject_prompts = ([(kl_prompt, KL_ROW)] if kl_prompt is not None else []) + \
        [(p, PRESERVE_ROW) for p in preserve_prompts]
    for prompt, kind in subject_prompts:  # "{}" = the subject; no target
        for ci, case in enumerate(cases):
            key = ("subject", _case_key(case), prompt, max_length)
            row, fact = _memo(tok, key, lambda c=case, p=prompt: _subject_row(tok, c, p, max_length))
            ids.append(row)
            answer.append([False] * len(row))
            meta.append((fact, ci, kind, fact if kind == KL_ROW else len(row) - 1))
    return _pad(tok, ids, answer, meta)


# Tokenised rows per tokenizer and (case, layout): a layer sweep builds the same case's rows at every layer, and
# every edit builds them twice (once to check the input before any weight changes, once for the v*). Entries
# are immutable tuples of lists that build_rows only copies from; errors are not kept (they are raised again).
_ROWS_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MEMO_SIZE = 4096


def _case_key(case: EditCase) -> tuple:
    return (case.case_id, case.prompt, case.subject, case.target_new)


def _memo(tok, key: tuple, compute):
    try:
        store = _ROWS_MEMO.setdefault(tok, OrderedDict())
    except TypeError:  # a tokenizer that cannot be weakly referenced: no memo
        return compute()
    key = (len(tok), *key)  # tokens added to the tokenizer later change the rows
    if key in store:
        store.move_to_end(key)
        return store[key]
    value = store[key] = compute()
    if len(store) > _MEMO_SIZE:
        store.popitem(last=False)
    return value


def _templated_rows(tok, case: EditCase, templates: list[str], with_target: bool, max_length: int | None
                    ) -> tuple[list[list[int]], list[list[bool]], list[int]]:
    """One case's rows in every template: token ids, answer flags and the fact token of each."""
    start, end = subject_char_span(case.case_id, case.prompt, case.subject)
    texts = [t.replace("{}", case.prompt, 1) for t in templates]
    spans = [(t.index("{}") + start, t.index("{}") + end) for t in templates]
    if with_target:
        b = _encode(case, "prompt", encode_answers, tok, texts, [case.target_new] * len(texts), max_length)
        full = [join_prompt_answer(t, case.target_new) for t in texts]
        answer = [m[: int(n)].tolist() for m, n in zip(b.answer_mask, b.attention_mask.sum(1), strict=True)]
    else:
        b = _encode(case, "prompt", encode_prompts, tok, texts, max_length)
        full = texts
        answer = [[False] * int(n) for n in b.attention_mask.sum(1)]
    ids = [r[: int(n)].tolist() for r, n in zip(b.input_ids, b.attention_mask.sum(1), strict=True)]
    facts = [_fact_index(tok, f, s, case.case_id) for f, s in zip(full, spans, strict=True)]
    return ids, answer, facts


def _subject_row(tok, case: EditCase, prompt: str, max_length: int | None) -> tuple[list[int], int]:
    """The row of a subject prompt ("{}" = the subject; no target): token ids and the fact token."""
    slot = prompt.index("{}")
    text = prompt.replace("{}", case.subject, 1)
    row = _encode(case, "subject", encode_prompts, tok, [text], max_length).input_ids[0].tolist()
    return row, _fact_index(tok, text, (slot, slot + len(case.subject)), case.case_id)


def _pad(tok, ids: list[list[int]], answer: list[list[bool]], meta: list[tuple[int, int, int, int]]) -> Rows:
    R, T = len(ids), max(len(r) for r in ids)
    pad = pad_id(tok)
    input_ids = torch.full((R, T), pad, dtype=torch.long)
    attn = torch.zeros((R, T), dtype=torch.long)
    ans = torch.zeros((R, T), dtype=torch.bool)
    for i, (r, a) in enumerate(zip(ids, answer, strict=True)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        ans[i, : len(a)] = torch.tensor(a, dtype=torch.bool)
    predict = torch.zeros_like(ans)
    predict[:, :-1] = ans[:, 1:]
    next_ids = torch.zeros_like(input_ids)
    next_ids[:, :-1] = input_ids[:, 1:]
    fact, case, template, kl_at = (torch.tensor(c, dtype=torch.long) for c in zip(*meta, strict=True))
    return Rows(input_ids, attn, fact, case, template, predict, next_ids, kl_at)
