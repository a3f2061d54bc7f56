"""Greedy recall of the world's facts (train-world stopping rule; the shipped models must reach >= 99%).

A fact counts as recalled when greedy decoding after the prompt reproduces every token of the answer. Under
teacher forcing this is exactly "the argmax at every answer position is the answer token", so one batched
forward per batch of queries measures it (goldenlayers.text.encode_answers positions the answer tokens).
Queries are tokenised once (`encode_queries`) so that repeated checks during training cost forwards only.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from goldenlayers.text import AnswerBatch, encode_answers

Query = tuple[str, str, str]  # (relation, prompt, answer)


def encode_queries(tok, queries: list[Query], batch_size: int = 512, device=None) -> list[AnswerBatch]:
    """The queries as right-padded teacher-forced batches of at most `batch_size` rows, in order."""
    return [encode_answers(tok, [q[1] for q in queries[i:i + batch_size]], [q[2] for q in queries[i:i + batch_size]],
                           device=device) for i in range(0, len(queries), batch_size)]


@torch.no_grad()
def recall_hits(model, batches: list[AnswerBatch]) -> list[bool]:
    """Per query: True when greedy decoding reproduces the whole answer."""
    hits: list[bool] = []
    for b in batches:
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits  # (B, T, V)
        pred = logits[:, :-1].argmax(-1)  # (B, T-1): prediction of token t+1
        ok = (pred == b.input_ids[:, 1:]) | ~b.answer_mask[:, 1:]
        hits += ok.all(-1).tolist()
    return hits


def recall_by_relation(queries: list[Query], hits: list[bool]) -> dict[str, float]:
    """Mean hit rate per relation, plus "all" over every query."""
    per: dict[str, list[bool]] = defaultdict(list)
    for (rel, _, _), h in zip(queries, hits):
        per[rel].append(h)
    out = {rel: sum(v) / len(v) for rel, v in per.items()}
    out["all"] = sum(hits) / len(hits)
    return out


def measure_recall(model, tok, world, batch_size: int = 512, queries: list[Query] | None = None) -> dict[str, float]:
    """Greedy recall per relation (and "all") over `world.recall_queries()` or the given queries."""
    queries = world.recall_queries() if queries is None else queries
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = recall_hits(model, encode_queries(tok, queries, batch_size, device))
    model.train(was_training)
    return recall_by_relation(queries, hits)
