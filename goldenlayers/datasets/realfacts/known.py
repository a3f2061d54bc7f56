"""The known-fact filter: keep the facts a model already answers (docs/realfacts.md, "Known-fact filter").

A fact is *known* by a model when, for one of its relation's templates, greedy decoding after the prompt
reproduces every token of one of the fact's answer aliases (the prompt + " " + answer tokenised together,
as every metric of docs/evaluation.md does it). Under teacher forcing this is "the argmax at every answer
position is the answer token" (as the synthetic world's recall check, goldenlayers.datasets.synthetic.recall),
so it costs one batched forward per batch of (prompt, alias) pairs. Templates are tried in order and only for
the facts not yet known; the first template and alias that match become the case's rewrite prompt and first
answer. For each fact left unknown the model's greedy first token after the first template is kept, to say why.
Aliases after the first are checked only when their first token is the model's greedy first token.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from goldenlayers.datasets.realfacts.facts import Fact
from goldenlayers.text import encode_answers


@dataclass(frozen=True)
class Known:
    """How a model knows a fact: the index of the first template it answers, and of the alias it gives."""

    template: int
    alias: int


@torch.no_grad()
def greedy_hits(model, tok, pairs: list[tuple[str, str]], batch_size: int = 32) -> tuple[list[bool], list[int]]:
    """Per (prompt, answer): whether greedy decoding gives every answer token, and the greedy first token's id.

    Pairs are batched by length; only the logits of positions that predict answer tokens are computed (the
    model's `logits_to_keep`, where it has one), which matters for vocabularies of 262k tokens.
    """
    device = next(model.parameters()).device
    keep_ok = "logits_to_keep" in inspect.signature(model.forward).parameters
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]) + len(pairs[i][1]), i))
    hits, first = [False] * len(pairs), [0] * len(pairs)
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            b = encode_answers(tok, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx], device=device)
            start, T = int(b.prompt_last.min()), b.input_ids.shape[1]
            kw = {"logits_to_keep": torch.arange(start, T - 1, device=device)} if keep_ok else {}
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, **kw).logits
            if not keep_ok:
                logits = logits[:, start:T - 1]
            pred = logits.argmax(-1)  # (B, T-1-start): prediction of token start+1 ...
            ok = (pred == b.input_ids[:, start + 1:]) | ~b.answer_mask[:, start + 1:]
            for row, i in enumerate(idx):
                hits[i] = bool(ok[row].all())
                first[i] = int(pred[row, int(b.prompt_last[row]) - start])
    finally:
        model.train(was_training)
    return hits, first


def first_answer_token(tok, prompt: str, answer: str) -> int:
    """The id of the answer's first token when prompt + " " + answer is tokenised in one go."""
    b = encode_answers(tok, [prompt], [answer])
    return int(b.input_ids[0, int(b.prompt_last[0]) + 1])


def find_known(model, tok, facts: list[Fact], batch_size: int = 32,
               progress: Callable[[str], None] | None = None) -> tuple[dict[str, Known], dict[str, str]]:
    """({fact key: Known} for the facts the model knows, {fact key: greedy first token} for the others).

    Per template, one teacher-forced pass over (prompt, first alias) gives the greedy first token; the other
    aliases are checked only where their first token is that one (a full match needs it), so the cost grows
    with the facts, not with their aliases.
    """
    known: dict[str, Known] = {}
    said: dict[str, str] = {}
    templates = max((len(f.prompts()) for f in facts), default=0)
    for t in range(templates):
        pending = [f for f in facts if f.key not in known and t < len(f.prompts())]
        if not pending:
            break
        hits, first = greedy_hits(model, tok, [(f.prompts()[t], f.answers[0]) for f in pending], batch_size)
        more = [(f, a) for f, hit, tid in zip(pending, hits, first) if not hit
                for a in range(1, len(f.answers)) if first_answer_token(tok, f.prompts()[t], f.answers[a]) == tid]
        more_hits, _ = greedy_hits(model, tok, [(f.prompts()[t], f.answers[a]) for f, a in more], batch_size)
        for f, hit, tid in zip(pending, hits, first):
            if hit:
                known[f.key] = Known(t, 0)
            if t == 0:
                said[f.key] = tok.decode([tid])
        for (f, a), hit in zip(more, more_hits):
            if hit and f.key not in known:
                known[f.key] = Known(t, a)
        if progress:
            progress(f"template {t}: {len(pending)} + {len(more)} prompt/answer pairs, {len(known)} facts known so far")
    return known, {k: v for k, v in said.items() if k not in known}
