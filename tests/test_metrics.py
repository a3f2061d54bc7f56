"""Metric values checked by hand on a bigram model whose every prediction we choose (docs/equations.md "Metrics")."""

import math
import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from torch import nn

from goldenlayers.cases import EditCase, Probe
from goldenlayers.evaluation import (
    CaseScorer,
    EvalSettings,
    OverallSpec,
    category_mean,
    fluency,
    fluency_entropy,
    ngram_entropy,
    overall,
    overall_note,
    sample_text,
    teacher_forced,
    word_tokens,
)
from goldenlayers.models.tiny import tiny_tokenizer

# Token ids of the tiny tokenizer: "Tom Baker works for" ends with 'or' (273); " Paris" = [279];
# " Paris France" = [279, 277, 296]; " Acme" = [288, 69, 79, 71]; " in" = [276].
OR, PARIS, FR, ANCE, ACME, IN = 273, 279, 277, 296, 288, 276
PROMPT = "Tom Baker works for"


class BigramLM(nn.Module):
    """logits[b, t] = scale * one_hot(next_tok[input_ids[b, t]]): the prediction after token x is next_tok[x]."""

    def __init__(self, vocab=300, table=None, default=0, scale=30.0):
        super().__init__()
        nxt = torch.full((vocab,), default, dtype=torch.long)
        for k, v in (table or {}).items():
            nxt[k] = v
        self.register_buffer("next_tok", nxt)
        self.vocab, self.scale = vocab, scale
        self.anchor = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(name_or_path="bigram", model_type="bigram")

    def forward(self, input_ids, attention_mask=None, **kwargs):
        logits = nn.functional.one_hot(self.next_tok[input_ids], self.vocab).float() * self.scale + self.anchor
        return SimpleNamespace(logits=logits, past_key_values=None)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def btok():
    return tiny_tokenizer()


def test_token_ids_are_what_the_hand_computations_assume(btok):
    assert btok(PROMPT)["input_ids"][-1] == OR
    assert btok(PROMPT + " Paris France")["input_ids"][-3:] == [PARIS, FR, ANCE]
    assert btok(" Acme")["input_ids"] == [ACME, 69, 79, 71] and btok(" in")["input_ids"] == [IN]


def test_partial_credit_multi_token_target(btok):
    m = BigramLM(table={OR: PARIS, PARIS: IN, FR: ANCE})  # Paris right, France's first piece wrong, 'ance' right
    s1, s2, s3 = teacher_forced(m, btok, [(PROMPT, "Paris France"), (PROMPT, "Paris"), (PROMPT, "Acme")])
    assert s1.predicted == (PARIS, IN, ANCE) and s1.gold == (PARIS, FR, ANCE)
    assert s1.accuracy == pytest.approx(2 / 3) and s2.accuracy == 1.0 and s3.accuracy == 0.0
    # locality: agreement of token ids with another model, not with the answer
    m2 = BigramLM(table={OR: PARIS, PARIS: IN, FR: 5})
    (t1,) = teacher_forced(m2, btok, [(PROMPT, "Paris France")])
    assert s1.agreement(t1) == pytest.approx(2 / 3) and s3.agreement(s3) == 1.0


def test_category_mean_is_knowedit_averaging():
    assert category_mean([("R", 1.0), ("R", 0.0), ("S", 1.0)]) == pytest.approx(0.75)
    assert category_mean([]) is None


def case(**kw):
    base = dict(case_id="c", dataset="zsre", subject="Tom Baker", prompt=PROMPT, target_new="Paris France")
    return EditCase(**{**base, **kw})


def test_case_metrics_by_hand(btok):
    m = BigramLM(table={OR: PARIS, PARIS: IN, FR: ANCE, 264: PARIS})
    c = case(rephrase=[PROMPT + ",", "Tom Baker is"],
             portability=[Probe(prompt=PROMPT, answers=["Paris France", "Paris"], category="R"),
                          Probe(prompt=PROMPT, answers=["Acme"], category="R"),
                          Probe(prompt=PROMPT, answers=["Paris"], category="S")],
             locality=[Probe(prompt=PROMPT, answers=["Paris France"], category="RS"),
                       Probe(prompt=PROMPT, answers=["Acme"], category="F")])
    scorer = CaseScorer(m, btok, EvalSettings(metrics=("rewrite", "rephrase", "locality", "portability")))
    pre = scorer.pre(c)
    m.next_tok[FR] = 7  # the "edit": after 'or' now Acme's first piece, after 'Fr' no longer 'ance'
    m.next_tok[OR] = ACME
    out = scorer.compare(c, pre, scorer.state(c))
    # rewrite: pre (PARIS, IN, ANCE) vs gold (PARIS, FR, ANCE) = 2/3; post (ACME, IN, 7) = 0
    assert out["rewrite"] == (pytest.approx(2 / 3), 0.0)
    # rephrase: "...for," -> (0, IN, ANCE) = 1/3 and "...is" -> (PARIS, IN, ANCE) = 2/3 before;
    # after: (0, IN, 7) = 0 and (PARIS, IN, 7) = 1/3
    assert out["rephrase"] == (pytest.approx(0.5), pytest.approx(1 / 6))
    # portability, first alias only: R = mean(2/3, 0), S = 1 -> (1/3 + 1) / 2;
    # after: R = mean(0, Acme 1/4 (its first piece now predicted)), S = 0 -> (1/8 + 0) / 2
    assert out["portability"] == (pytest.approx(2 / 3), pytest.approx(1 / 16))
    # locality: RS (PARIS, IN, ANCE) vs (ACME, IN, 7) = 1/3; F (Acme) only the first of 4 positions changed = 3/4
    assert out["locality"] == (None, pytest.approx((1 / 3 + 3 / 4) / 2))
    assert len(scorer.cache) == 5  # distinct (prompt, answer) pairs (rewrite = a portability = a locality pair)


def test_entropy_by_hand():
    assert word_tokens("Paris, France.") == ["Paris", ",", "France", "."]
    assert fluency_entropy("a a a a") == 0.0
    assert ngram_entropy(["a", "b", "a", "b"], 2) == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    assert fluency_entropy("a b a b") == pytest.approx((2 / 3 * 0.9182958340544896 + 4 / 3 * 1.0) / 2)
    assert fluency_entropy("a b") == pytest.approx(0.0)  # one bigram, no trigram
    assert fluency_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3 * 1.0) / 2)


def test_fluency_of_degenerate_and_varied_samples(btok):
    degenerate = BigramLM(default=PARIS)
    text = sample_text(degenerate, btok, PROMPT, seed=1, max_tokens=100, top_k=5)
    n_new = 100 - len(btok(PROMPT)["input_ids"])  # 100 tokens in total, prompt included
    assert text == PROMPT + " Paris" * n_new
    # words: Tom Baker works for + n_new x Paris; bigrams: 4 distinct + (Paris, Paris) x (n_new - 1)
    b, t = n_new + 3, n_new + 2
    h2 = -(4 / b * math.log2(1 / b) + (n_new - 1) / b * math.log2((n_new - 1) / b))
    h3 = -(4 / t * math.log2(1 / t) + (n_new - 2) / t * math.log2((n_new - 2) / t))
    assert fluency(degenerate, btok, PROMPT, "case-1", max_tokens=100) == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)

    class FiveWords(BigramLM):  # equal logits on 5 one-token words: top-5 sampling picks among them uniformly
        def forward(self, input_ids, attention_mask=None, **kwargs):
            logits = torch.zeros(*input_ids.shape, self.vocab)
            logits[..., [264, 276, 279, 294, 295]] = 10.0
            return SimpleNamespace(logits=logits + self.anchor, past_key_values=None)

    varied = FiveWords()
    f_var = fluency(varied, btok, PROMPT, "case-1")
    assert f_var > 3.0 > fluency(degenerate, btok, PROMPT, "case-1")
    assert f_var == fluency(varied, btok, PROMPT, "case-1")          # seeded per case: same case, same text
    assert sample_text(varied, btok, PROMPT, 1) != sample_text(varied, btok, PROMPT, 2)


def test_cached_and_uncached_generation_agree(make_tiny, tok):
    model = make_tiny("gpt2").eval()

    class NoCache(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, **kwargs):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            return SimpleNamespace(logits=out.logits, past_key_values=None)

    assert sample_text(model, tok, PROMPT, 3, max_tokens=40) == sample_text(NoCache(model), tok, PROMPT, 3, max_tokens=40)


def test_overall_is_a_fixed_function_of_one_row():
    bits = math.log2(100)  # fluency 6.644 bits -> score 0, 0 bits -> score 1
    row = dict(rewrite=1.0, locality=0.2, fluency=5.0, rephrase=0.5, cases=7, overall=123.0)  # non-metrics ignored
    assert overall(row) == pytest.approx((1.0 + 0.2 + 0.5 + (1 - 5.0 / bits)) / 4)
    # the paper's own numbers: WikiBio R-ROME / CMA (FLC 0.8927 on a 0-1 scale) and Counterfact R-ROME / CMA
    assert overall(dict(rewrite=0.6894, locality=0.5692, fluency=0.8927 * bits)) == pytest.approx(0.4553, abs=1e-4)
    assert overall(dict(rewrite=0.9420, rephrase=0.6284, locality=0.9613, portability=0.4387)) == \
        pytest.approx(0.7426, abs=1e-4)
    # clipped fluency, absent and NaN metrics, weights
    assert overall(dict(rewrite=0.5, fluency=9.0)) == pytest.approx(0.25)
    assert overall(dict(rewrite=0.5, fluency=-1.0, portability=None, locality=math.nan)) == pytest.approx(0.75)
    assert math.isnan(overall({})) and math.isnan(overall(dict(cases=3)))
    spec = OverallSpec.parse("rewrite=2, fluency=0")
    assert overall(row, spec) == pytest.approx((2 * 1.0 + 0.2 + 0.5) / 4)
    assert overall(row, OverallSpec(fluency_max_bits=10.0)) == pytest.approx((1.7 + 0.5) / 4)
    # arrays (e.g. per-layer means): element-wise, each element as its own row
    layers = dict(rewrite=np.array([1.0, 0.5, 0.0]), fluency=np.array([5.0, np.nan, 0.0]))
    expect = [overall(dict(rewrite=r, fluency=f)) for r, f in zip(layers["rewrite"], layers["fluency"], strict=True)]
    assert overall(layers) == pytest.approx(expect) and expect[1] == 0.5 and expect[2] == 0.5
    assert overall_note(["rewrite", "fluency"]) == "Overall = mean of rewrite, (1 - fluency/6.64 bits) (fixed per row)"
    assert "2*rewrite" in overall_note(["rewrite", "locality"], OverallSpec.parse("rewrite=2"))


@pytest.mark.parametrize(("text", "message"), [("rewrite=x", "metric=number"), ("fooo=1", "unknown metric"),
                                               ("rewrite=-1", ">= 0"), ("rewrite", "metric=number"),
                                               ("rewrite=0,rephrase=0,locality=0,portability=0,fluency=0", "> 0")])
def test_overall_weights_are_checked(text, message):
    with pytest.raises(ValueError, match=message):
        OverallSpec.parse(text)
