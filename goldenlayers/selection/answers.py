"""The old answer a selector scores for a case: `ground_truth[0]`, or the model's own greedy prediction.

docs/equations.md "LGA": "Where the old answer is unknown (insertion datasets, e.g. WikiData_recent), the
model's own greedy prediction for the prompt serves as y_old." Our rule for that prediction: greedy decoding
(argmax, no sampling) of at most `max_new_tokens` tokens (8 by default), stopping at EOS or at the first
token whose text brings a period or a newline; the text before that stop character, stripped, is the
answer (so "Paris." gives "Paris"; a period inside an answer such as "St. Louis" cuts it short: a
documented limitation). It is then scored like a ground-truth string, i.e. teacher-forced after
`prompt + " "` (goldenlayers.text.join_prompt_answer). An empty prediction (EOS or "." first) is a
`CaseError` on the case's `ground_truth` field, which selectors record as a skipped case.

Decoding is batched: prompts are right-padded and each step reads the logits at every row's own last
token (positions come from the attention mask), so no position ids or left padding are involved.
"""

from __future__ import annotations

import torch

from goldenlayers.cases import CaseError, EditCase
from goldenlayers.models.loader import model_device
from goldenlayers.text import encode_prompts, model_max_length

STOP_CHARS = (".", "\n")


@torch.no_grad()
def greedy_continuations(model, tok, prompts: list[str], max_new_tokens: int = 8) -> list[str]:
    """Greedy continuation text of each prompt, cut before the first period/newline, stripped.

    One forward of the batch (B, T + step) per generated token; rows that stopped are carried along.
    """
    batch = encode_prompts(tok, prompts, model_max_length(model), model_device(model))
    ids, attn, last = batch.input_ids, batch.attention_mask, batch.last.clone()
    n = len(prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    generated: list[list[int]] = [[] for _ in range(n)]
    texts = [""] * n
    active = set(range(n))
    for _ in range(max_new_tokens):
        if not active:
            break
        grow = int(last.max()) + 2 - ids.shape[1]
        if grow > 0:
            ids = torch.cat([ids, ids.new_full((n, grow), pad)], dim=1)
            attn = torch.cat([attn, attn.new_zeros((n, grow))], dim=1)
        logits = model(input_ids=ids, attention_mask=attn).logits  # (B, T, V)
        nxt = logits[torch.arange(n, device=ids.device), last].argmax(-1).tolist()
        for i in sorted(active):
            if nxt[i] == tok.eos_token_id:
                active.discard(i)
                continue
            generated[i].append(nxt[i])
            texts[i] = tok.decode(generated[i], skip_special_tokens=True)
            if any(c in texts[i] for c in STOP_CHARS):
                active.discard(i)
                continue
            last[i] += 1
            ids[i, last[i]] = nxt[i]
            attn[i, last[i]] = 1
    out = []
    for text in texts:
        cut = min((text.find(c) for c in STOP_CHARS if c in text), default=len(text))
        out.append(text[:cut].strip())
    return out


def old_answers(model, tok, cases: list[EditCase], max_new_tokens: int = 8, batch_size: int = 16
                ) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Old answer per case id, the cases skipped (case_id -> reason) and the ids whose answer was predicted."""
    answers = {c.case_id: c.old_answer for c in cases if c.old_answer}
    skipped: dict[str, str] = {}
    limit = model_max_length(model)
    missing = []
    for c in cases:
        if c.old_answer:
            continue
        n = len(tok(c.prompt)["input_ids"])
        if limit is not None and n + max_new_tokens > limit:
            skipped[c.case_id] = str(CaseError(
                c.case_id, "prompt", f"{n} tokens + {max_new_tokens} predicted exceed the model's {limit}"))
        else:
            missing.append(c)
    for start in range(0, len(missing), batch_size):
        chunk = missing[start:start + batch_size]
        texts = greedy_continuations(model, tok, [c.prompt for c in chunk], max_new_tokens)
        for case, text in zip(chunk, texts, strict=True):
            if text:
                answers[case.case_id] = text
            else:
                err = CaseError(case.case_id, "ground_truth",
                                "no ground truth and the model's greedy prediction is empty (EOS or '.' first)")
                skipped[case.case_id] = str(err)
    return answers, skipped, {c.case_id for c in missing if c.case_id in answers}
