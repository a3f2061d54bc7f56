"""Tokenising prompts and prompt+answer pairs with positions taken from offsets and attention masks.

Every metric (docs/equations.md "Metrics"), the v* loss ("v*") and the LGA loss ("LGA") score an
answer teacher-forced after a prompt. This module builds those batches once, the same way for all of
them: the full text `prompt + " " + answer` is tokenised in one go, answer tokens are those whose
character offsets lie past the prompt, and padding is on the right with positions read from the mask,
so padding side and batch size cannot change a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def pad_id(tok) -> int:
    """The id right-padded rows are filled with (masked out everywhere): the pad token, else 0."""
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def join_prompt_answer(prompt: str, answer: str) -> str:
    """prompt + " " + answer, without doubling a space that one of them already has."""
    if prompt.endswith((" ", "\n")) or answer.startswith((" ", "\n")):
        return prompt + answer
    return prompt + " " + answer


@dataclass
class AnswerBatch:
    """A right-padded batch of prompt+answer texts.

    input_ids, attention_mask: (B, T). answer_mask: (B, T) bool, True at answer tokens.
    prompt_last: (B,) index of the last prompt token (whose logits predict the first answer token).
    The logits at position t-1 predict the token at t: use `answer_logits_positions`.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prompt_last: torch.Tensor

    def to(self, device) -> AnswerBatch:
        return AnswerBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.answer_mask,
                                                      self.prompt_last)))

    @property
    def predict_mask(self) -> torch.Tensor:
        """(B, T) bool: positions whose logits predict an answer token (answer_mask shifted left by one)."""
        m = torch.zeros_like(self.answer_mask)
        m[:, :-1] = self.answer_mask[:, 1:]
        return m


class PromptTooLongError(ValueError):
    pass


def encode_answers(tok, prompts: list[str], answers: list[str], max_length: int | None = None,
                   device=None) -> AnswerBatch:
    """Tokenise prompt+answer pairs; mark answer tokens by offsets. Raises on an empty answer or overflow."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    rows, amask, plast = [], [], []
    for p, a in zip(prompts, answers):
        if not a or not a.strip():
            raise ValueError(f"empty answer for prompt {p!r}")
        text = join_prompt_answer(p, a)
        enc = tok(text, return_offsets_mapping=True)
        ids, offs = enc["input_ids"], enc["offset_mapping"]
        cut = len(p.rstrip())
        # An answer token starts at or after the prompt's end. Zero-width tokens there count too (a byte-level
        # BPE with trimmed offsets gives a standalone space token the span (cut, cut)); (0, 0) is a special token.
        is_ans = [s >= cut and (s, e) != (0, 0) for s, e in offs]
        if not any(is_ans):
            raise ValueError(f"answer {a!r} produced no token after prompt {p!r}")
        first = is_ans.index(True)
        if first == 0:
            raise ValueError(f"prompt {p!r} produced no token before the answer")
        if max_length is not None and len(ids) > max_length:
            raise PromptTooLongError(f"prompt+answer is {len(ids)} tokens, longer than the model's {max_length}: {text[:80]!r}")
        rows.append(ids)
        amask.append(is_ans)
        plast.append(first - 1)
    T = max(len(r) for r in rows)
    pad = pad_id(tok)
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    ans = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, amask)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        ans[i, : len(m)] = torch.tensor(m)
    batch = AnswerBatch(input_ids, attn, ans, torch.tensor(plast))
    return batch.to(device) if device is not None else batch


@dataclass
class PromptBatch:
    """Right-padded prompts. input_ids, attention_mask: (B, T); last: (B,) index of each prompt's last token."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    last: torch.Tensor

    def to(self, device) -> PromptBatch:
        return PromptBatch(self.input_ids.to(device), self.attention_mask.to(device), self.last.to(device))


def encode_prompts(tok, prompts: list[str], max_length: int | None = None, device=None) -> PromptBatch:
    enc = [tok(p)["input_ids"] for p in prompts]
    for p, ids in zip(prompts, enc):
        if max_length is not None and len(ids) > max_length:
            raise PromptTooLongError(f"prompt is {len(ids)} tokens, longer than the model's {max_length}: {p[:80]!r}")
    T = max(len(e) for e in enc)
    pad = pad_id(tok)
    ids = torch.full((len(enc), T), pad, dtype=torch.long)
    attn = torch.zeros((len(enc), T), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        attn[i, : len(e)] = 1
    b = PromptBatch(ids, attn, attn.sum(1) - 1)
    return b.to(device) if device is not None else b


def model_max_length(model) -> int | None:
    """Context length from the config (n_positions / max_position_embeddings), if the model declares one."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None
