"""LGA (docs/equations.md "Layer selection"): the Gram-trick scores against materialised weight gradients, batching,
padding, variants and the greedy old-answer fallback, on tiny float64 models."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from goldenlayers.cases import EditCase
from goldenlayers.models import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.selection.answers import greedy_continuations
from goldenlayers.selection.lga import LGASettings, lga_scores, normalize_rows
from goldenlayers.text import encode_answers

FACTS = [
    ("Maria Lopez", "Maria Lopez was born in", "France", "Paris"),
    ("Tom Baker", "Tom Baker works for", "the violin player", "Acme"),
    ("Anna Smith", "The profession of Anna Smith is", "lawyer", "violin"),
]


def make_cases(with_truth=True):
    return [EditCase(case_id=f"c{i}", dataset="toy", subject=s, prompt=p, target_new=new,
                     ground_truth=[old] if with_truth else None) for i, (s, p, new, old) in enumerate(FACTS)]


def setup(model_type):
    model = tiny_model(model_type, dtype=torch.float64)
    tok = tiny_tokenizer(add_bos=model_type not in ("gpt2", "opt"))
    return model, tok, get_adapter(model)


def weight_grads(model, tok, adapter, prompt, answer):
    """Materialised d(sum of answer-token NLL)/dW for every layer's down-proj weight, one unpadded sequence."""
    params = [adapter.weight_param(model, layer) for layer in range(adapter.n_layers(model))]
    for p in params:
        p.requires_grad_(True)
    try:
        enc = encode_answers(tok, [prompt], [answer])  # the answer tokens, as LGA defines them
        ids = enc.input_ids[0]
        logp = torch.log_softmax(model(input_ids=ids[None]).logits[0], dim=-1)
        loss = -sum(logp[t - 1, ids[t]] for t in range(len(ids)) if enc.answer_mask[0, t])
        return [g.clone() for g in torch.autograd.grad(loss, params)]
    finally:
        for p in params:
            p.requires_grad_(False)


def naive_phi(model, tok, adapter, case, old, cosine=False):
    g_old = weight_grads(model, tok, adapter, case.prompt, old)
    g_new = weight_grads(model, tok, adapter, case.prompt, case.target_new)
    out = []
    for a, b in zip(g_old, g_new, strict=True):
        dot = (a * b).sum().item()
        out.append(dot / (a.norm() * b.norm()).item() if cosine else dot)
    return np.array(out)


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma3", "opt", "gpt_neox"])
def test_gram_trick_equals_materialised_gradients(model_type):
    model, tok, adapter = setup(model_type)
    cases = make_cases()
    table = lga_scores(model, tok, cases, batch_size=16, progress=False)
    ref = np.stack([naive_phi(model, tok, adapter, c, c.ground_truth[0]) for c in cases])
    assert table.per_case.shape == (3, adapter.n_layers(model))
    assert np.abs(ref).max() > 1e-4  # a real signal, not zeros
    np.testing.assert_allclose(table.per_case, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(table.scores, ref.mean(0), rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    assert table.case_ids == ["c0", "c1", "c2"] and table.cases == 3 and table.skipped == {}
    assert table.selector == "lga" and table.dataset == "toy"
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_cosine_variant_equals_materialised():
    model, tok, adapter = setup("gpt2")
    cases = make_cases()
    table = lga_scores(model, tok, cases, variant="cosine", progress=False)
    ref = np.stack([naive_phi(model, tok, adapter, c, c.ground_truth[0], cosine=True) for c in cases])
    np.testing.assert_allclose(table.per_case, ref, rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(table.per_case) <= 1 + 1e-12) and table.selector == "lga-cosine"


def test_batch_of_identical_cases_and_padding_invariance():
    model, tok, _ = setup("llama")
    case = make_cases()[1]  # old "Acme" and new "the violin player" differ in length: padding inside the batch
    copies = [case.model_copy(update=dict(case_id=f"copy{i}")) for i in range(5)]
    one = lga_scores(model, tok, [case], batch_size=1, progress=False).per_case
    many = lga_scores(model, tok, copies, batch_size=5, progress=False).per_case
    np.testing.assert_allclose(many, np.repeat(one, 5, axis=0), rtol=1e-10)
    mixed = make_cases()
    alone = np.concatenate([lga_scores(model, tok, [c], batch_size=1, progress=False).per_case for c in mixed])
    together = lga_scores(model, tok, mixed, batch_size=3, progress=False).per_case
    np.testing.assert_allclose(together, alone, rtol=1e-10)


def test_layer_subset_sign_and_normalisation():
    model, tok, _ = setup("qwen2")
    cases = make_cases()
    full = lga_scores(model, tok, cases, progress=False)
    part = lga_scores(model, tok, cases, layers=[3, 1], progress=False)
    assert part.layers == [1, 3]
    np.testing.assert_allclose(part.per_case, full.per_case[:, [1, 3]], rtol=1e-10)
    neg = lga_scores(model, tok, cases, sign=-1, progress=False)
    np.testing.assert_allclose(neg.per_case, -full.per_case, rtol=1e-12)
    assert neg.selector == "lga-neg"
    z = lga_scores(model, tok, cases, normalize="zscore", progress=False)
    m = full.per_case
    np.testing.assert_allclose(z.per_case, (m - m.mean(1, keepdims=True)) / m.std(1, keepdims=True), rtol=1e-9)
    mx = lga_scores(model, tok, cases, normalize="max", progress=False)
    np.testing.assert_allclose(mx.per_case, m / np.abs(m).max(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(mx.scores, mx.per_case.mean(0))


def test_normalize_rows_hand_example():
    m = np.array([[1.0, -4.0, 2.0], [0.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    np.testing.assert_allclose(normalize_rows(m, "max"), [[0.25, -1, 0.5], [0, 0, 0], [1, 1, 1]])
    z = normalize_rows(m, "zscore")
    np.testing.assert_allclose(z[0], (m[0] - (-1 / 3)) / np.std(m[0]))
    np.testing.assert_allclose(z[1:], 0)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_rows(m, "l2")


def test_settings_reject_unknown_options():
    with pytest.raises(ValueError):
        LGASettings(variant="euclid")
    with pytest.raises(ValueError):
        LGASettings(batch_size=16, colour="red")


def reference_greedy(model, tok, prompt, n):
    ids = tok(prompt)["input_ids"]
    out = []
    for _ in range(n):
        nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
        text = tok.decode(out, skip_special_tokens=True)
        if "." in text or "\n" in text:
            break
    text = tok.decode(out, skip_special_tokens=True)
    return text.split(".")[0].split("\n")[0].strip()


def test_greedy_old_answer_fallback():
    model, tok, adapter = setup("gpt2")
    prompts = [p for _, p, _, _ in FACTS]
    got = greedy_continuations(model, tok, prompts, max_new_tokens=6)  # batched, right-padded
    assert got == [reference_greedy(model, tok, p, 6) for p in prompts]
    assert all(got)
    without = lga_scores(model, tok, make_cases(with_truth=False), max_new_tokens=6, progress=False)
    with_pred = [c.model_copy(update=dict(ground_truth=[g])) for c, g in zip(make_cases(), got, strict=True)]
    explicit = lga_scores(model, tok, with_pred, progress=False)
    np.testing.assert_allclose(without.per_case, explicit.per_case, rtol=1e-12)
    assert without.meta["predicted_old_answers"] == 3 and explicit.meta["predicted_old_answers"] == 0
    np.testing.assert_allclose(without.per_case[0], naive_phi(model, tok, adapter, with_pred[0], got[0]),
                               rtol=1e-9)


def test_unusable_case_is_skipped_not_fatal():
    model, tok, _ = setup("gpt2")
    long_prompt = "Maria Lopez was born in " + "Paris " * 200  # beyond the tiny model's 128 positions
    bad = EditCase(case_id="long", dataset="toy", subject="Maria Lopez", prompt=long_prompt.strip(),
                   target_new="France", ground_truth=["Paris"])
    no_truth = bad.model_copy(update=dict(case_id="long-insert", ground_truth=None))
    table = lga_scores(model, tok, [*make_cases(), bad, no_truth], progress=False)
    assert table.cases == 3 and table.case_ids == ["c0", "c1", "c2"]
    assert "case 'long', field 'ground_truth'" in table.skipped["long"]
    assert "case 'long-insert', field 'prompt'" in table.skipped["long-insert"]
