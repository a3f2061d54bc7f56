"""encode_answers / encode_prompts (goldenlayers.text): answer tokens from offsets, prompt_last, padding
independence (batch of 1 vs many, also through a model), and the errors for bad input."""

import pytest
import torch
import torch.nn.functional as F

from goldenlayers.models.tiny import tiny_model
from goldenlayers.text import PromptTooLongError, encode_answers, encode_prompts, join_prompt_answer

PROMPTS = ["Maria Lopez was born in", "The capital of France is", "Tom Baker works for", "Anna Smith plays the "]
ANSWERS = ["Paris", "the Eiffel Tower city", "Acme", "violin"]


def unpadded(b, i):
    n = int(b.attention_mask[i].sum())
    return b.input_ids[i, :n], b.answer_mask[i, :n]


@pytest.mark.parametrize("bos", [False, True])
def test_answer_tokens_and_prompt_last(tok, tok_bos, bos):
    tk = tok_bos if bos else tok
    b = encode_answers(tk, PROMPTS, ANSWERS)
    assert b.input_ids.shape == b.answer_mask.shape == b.attention_mask.shape
    for i, (p, a) in enumerate(zip(PROMPTS, ANSWERS)):
        ids, mask = unpadded(b, i)
        assert ids.tolist() == tk(join_prompt_answer(p, a))["input_ids"]
        assert tk.decode(ids[mask]).strip() == a  # exactly the answer's tokens ...
        assert tk.decode(ids[~mask], skip_special_tokens=True).rstrip() == p.rstrip()  # ... and nothing else
        first = int(mask.nonzero()[0])
        assert mask[first:].all() and int(b.prompt_last[i]) == first - 1
        assert not b.answer_mask[i, len(ids):].any()
        # predict_mask marks the positions whose logits predict answer tokens
        assert b.predict_mask[i].nonzero().squeeze(1).tolist() == list(range(first - 1, len(ids) - 1))
    assert join_prompt_answer(PROMPTS[3], "violin") == "Anna Smith plays the violin"


def test_batch_of_one_equals_batch_of_many(tok):
    model = tiny_model("llama", dtype=torch.float64)
    many = encode_answers(tok, PROMPTS, ANSWERS)
    assert many.attention_mask.sum(1).tolist() != [many.input_ids.shape[1]] * 4  # rows really are padded

    def answer_logprobs(b):  # (B, T) log p(answer token), 0 elsewhere
        with torch.no_grad():
            logp = F.log_softmax(model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits, -1)
        tgt = torch.zeros_like(logp[..., 0])
        tgt[:, :-1] = logp[:, :-1].gather(-1, b.input_ids[:, 1:, None])[..., 0]
        return tgt * b.predict_mask

    lp_many = answer_logprobs(many)
    for i in range(4):
        one = encode_answers(tok, PROMPTS[i:i + 1], ANSWERS[i:i + 1])
        n = one.input_ids.shape[1]
        assert torch.equal(one.input_ids[0], unpadded(many, i)[0])
        assert torch.equal(one.answer_mask[0], unpadded(many, i)[1])
        assert int(one.prompt_last[0]) == int(many.prompt_last[i])
        torch.testing.assert_close(answer_logprobs(one)[0], lp_many[i, :n], rtol=1e-9, atol=1e-9)
        assert lp_many[i].sum() < 0


def test_encode_prompts_last_and_padding(tok_bos):
    b = encode_prompts(tok_bos, PROMPTS)
    for i, p in enumerate(PROMPTS):
        ids = tok_bos(p)["input_ids"]
        assert int(b.last[i]) == len(ids) - 1 and b.input_ids[i, : len(ids)].tolist() == ids
        assert (b.input_ids[i, len(ids):] == tok_bos.pad_token_id).all()


def test_too_long(tok):
    n = len(tok(join_prompt_answer(PROMPTS[0], "Paris"))["input_ids"])
    encode_answers(tok, PROMPTS[:1], ["Paris"], max_length=n)  # exactly fits
    with pytest.raises(PromptTooLongError, match=f"is {n} tokens, longer than the model's {n - 1}"):
        encode_answers(tok, PROMPTS[:1], ["Paris"], max_length=n - 1)
    with pytest.raises(PromptTooLongError, match="prompt is"):
        encode_prompts(tok, PROMPTS, max_length=5)


@pytest.mark.parametrize("answer", ["", "   "])
def test_empty_answer(tok, answer):
    with pytest.raises(ValueError, match="empty answer for prompt 'Tom Baker works for'"):
        encode_answers(tok, PROMPTS[2:3], [answer])


def test_mismatched_lengths(tok):
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        encode_answers(tok, PROMPTS[:2], ["Paris"])
