"""CMA / causal tracing (docs/equations.md "Layer selection"): restorations against an unbatched hand-written reference,
exact recovery, window clipping, zero effect before the subject, seeding, batching and the noise std."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from goldenlayers.cases import EditCase
from goldenlayers.models import get_adapter
from goldenlayers.models.hooks import edit_output, record
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.selection.cma import cma_scores, cma_scores_windows, plot_trace, trace_case
from goldenlayers.selection.tracing import draw_noise, embedding_noise_std, restored_probs, window_layers

CASE = EditCase(case_id="anna", dataset="toy", subject="Anna Smith", prompt="The profession of Anna Smith is",
                target_new="lawyer")
CASE2 = EditCase(case_id="maria", dataset="toy", subject="Maria Lopez", prompt="Maria Lopez was born in",
                 target_new="Rome")


def setup(model_type="gpt2", n_layers=6):
    """A tiny float64 model with its matrices scaled x8, so that output probabilities react visibly to noise."""
    model = tiny_model(model_type, n_layers=n_layers, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8)
    tok = tiny_tokenizer(add_bos=model_type != "gpt2")
    return model, tok, get_adapter(model)


def subject_positions(tok, case):
    ids = tok(case.prompt, return_offsets_mapping=True)
    start = case.prompt.index(case.subject)
    end = start + len(case.subject)
    return [i for i, (s, e) in enumerate(ids["offset_mapping"]) if e > s and s < end and e > start]


def reference_probability(model, adapter, ids, subj, answer, noise, sites):
    """Unbatched: one clean run to record states, then one run per noise sample with hooks."""
    mods = {(k, layer): {"mlp": adapter.mlp_module, "attn": adapter.attn_module}[k](model, layer)
            if k != "residual" else adapter.block(model, layer) for k, layer, _ in sites}
    with record({str(key): m for key, m in mods.items()}, inputs=False) as clean:
        model(input_ids=ids[None])
    probs = []
    for s in range(noise.shape[0]):
        def add_noise(e, s=s):
            e = e.clone()
            e[0, subj] += noise[s].to(e)
            return e
        hooks = [edit_output(adapter.embed_module(model), add_noise)]
        for (k, layer), m in mods.items():
            toks = [t for kk, ll, t in sites if (kk, ll) == (k, layer)]
            def restore(y, toks=toks, ref=clean[str((k, layer))]["out"]):
                shape, n = y.shape, len(ids)  # OPT's fc2 output is flattened (T, d)
                y = y.reshape(1, n, -1).clone()
                y[0, toks] = ref.reshape(1, n, -1)[0, toks]
                return y.reshape(shape)
            hooks.append(edit_output(m, restore))
        for h in hooks:
            h.__enter__()
        try:
            logits = model(input_ids=ids[None]).logits[0, -1]
        finally:
            for h in reversed(hooks):
                h.__exit__(None, None, None)
        probs.append(torch.softmax(logits, -1)[answer].item())
    return float(np.mean(probs))


def test_window_clipping():
    assert window_layers(5, 10, 48) == list(range(0, 10))
    assert window_layers(20, 10, 48) == list(range(15, 25))
    assert window_layers(46, 10, 48) == list(range(41, 48))
    assert window_layers(0, 10, 4) == [0, 1, 2, 3]
    assert window_layers(7, 1, 48) == [7]
    assert window_layers(3, 2, 6) == [2, 3] and window_layers(0, 3, 6) == [0, 1]
    with pytest.raises(ValueError):
        window_layers(3, 0, 6)


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "opt", "gemma3"])
def test_restorations_match_unbatched_reference(model_type):
    model, tok, adapter = setup(model_type)
    ids = torch.tensor(tok(CASE.prompt)["input_ids"])
    subj = subject_positions(tok, CASE)
    noise = draw_noise(3, len(subj), 32, 0.5, seed=1)
    answer = 17
    groups = [[("mlp", 1, subj[-1]), ("mlp", 2, subj[-1])], [("attn", 0, subj[0])], [("residual", 3, subj[-1])],
              [("mlp", 4, subj[-1] - 1), ("attn", 4, subj[-1])]]
    p_clean, p_corr, p_rest = restored_probs(model, adapter, ids, subj, answer, noise, groups, batch_size=7)
    clean = torch.softmax(model(input_ids=ids[None]).logits[0, -1], -1)[answer].item()
    assert p_clean == pytest.approx(clean, rel=1e-12)
    assert p_corr == pytest.approx(reference_probability(model, adapter, ids, subj, answer, noise, []), rel=1e-10)
    assert abs(p_corr - p_clean) > 1e-4  # the noise does something
    for g, p in zip(groups, p_rest.tolist(), strict=True):
        assert p == pytest.approx(reference_probability(model, adapter, ids, subj, answer, noise, g), rel=1e-10)


def test_restoring_every_state_recovers_the_clean_probability():
    model, tok, adapter = setup("llama")
    ids = torch.tensor(tok(CASE.prompt)["input_ids"])
    subj = subject_positions(tok, CASE)
    noise = draw_noise(10, len(subj), 32, 1.0, seed=0)
    every = [("residual", layer, t) for layer in range(6) for t in range(len(ids))]
    last_layer = [("residual", 5, t) for t in range(len(ids))]
    answer = int(model(input_ids=ids[None]).logits[0, -1].argmax())
    p_clean, p_corr, p = restored_probs(model, adapter, ids, subj, answer, noise, [every, last_layer])
    assert abs(p_corr - p_clean) > 1e-3
    np.testing.assert_allclose(p.numpy(), [p_clean, p_clean], rtol=1e-12)


def test_pre_subject_tokens_have_zero_effect_and_plot(tmp_path):
    model, tok, _ = setup("gpt2", n_layers=4)
    trace = trace_case(model, tok, CASE, noise_std=0.5)
    first = trace["subject"][0]
    assert first >= 3  # "The profession of" precedes the subject
    for kind in ("residual", "mlp", "attn"):
        ie = trace["ie"][kind]
        assert ie.shape == (len(trace["tokens"]), 4)
        assert np.abs(ie[:first]).max() < 1e-15  # before the subject nothing was corrupted
    assert np.abs(trace["ie"]["residual"][first:]).max() > 1e-4
    last = len(trace["tokens"]) - 1  # restoring the last token's final residual restores the output exactly
    assert trace["ie"]["residual"][last, 3] == pytest.approx(trace["p_clean"] - trace["p_corrupted"], rel=1e-10)
    assert trace["windows"] == {"residual": 1, "mlp": 10, "attn": 10}
    png = plot_trace(trace, tmp_path / "trace.png")
    assert os.path.getsize(png) > 1000


def test_seed_determinism_and_batching():
    model, tok, _ = setup("qwen2")
    kw = dict(window=3, noise_samples=4, noise_std=0.5, progress=False)
    a = cma_scores(model, tok, [CASE, CASE2], seed=3, known_only=False, **kw)
    b = cma_scores(model, tok, [CASE, CASE2], seed=3, known_only=False, batch_size=5, **kw)  # one group/forward
    c = cma_scores(model, tok, [CASE, CASE2], seed=4, known_only=False, **kw)
    assert a.per_case.shape == (2, 6) and a.selector == "cma-mlp-w3"
    np.testing.assert_allclose(a.per_case, b.per_case, rtol=1e-10, atol=1e-15)
    assert np.abs(a.per_case - c.per_case).max() > 1e-8
    assert np.abs(a.per_case).max() > 1e-4


def test_windows_share_runs_and_match_reference():
    model, tok, adapter = setup("gpt2")
    both = cma_scores_windows(model, tok, [CASE], windows=(1, 3), noise_samples=3, noise_std=0.5,
                              known_only=False, progress=False)
    ids = torch.tensor(tok(CASE.prompt)["input_ids"])
    subj = subject_positions(tok, CASE)
    noise = draw_noise(3, len(subj), 32, 0.5, seed=0)
    answer = int(model(input_ids=ids[None]).logits[0, -1].argmax())
    p_corr = reference_probability(model, adapter, ids, subj, answer, noise, [])
    for w, width in ((1, 0), (3, 1)):  # window 3 restores layer-1..layer+1, clipped to 0..5 by hand here
        ref = []
        for layer in range(6):
            restored = [j for j in range(layer - width, layer + width + 1) if 0 <= j < 6]
            sites = [("mlp", j, subj[-1]) for j in restored]
            ref.append(reference_probability(model, adapter, ids, subj, answer, noise, sites) - p_corr)
        np.testing.assert_allclose(both[w].scores, ref, rtol=1e-9, atol=1e-15)
        assert both[w].best() == int(np.argmax(ref))


def test_known_fact_filter():
    model = tiny_model("gpt2", n_layers=4, dtype=torch.float64)
    tok = tiny_tokenizer()
    ids = tok(CASE2.prompt)["input_ids"]
    assert tok.decode([int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())]) == " in"
    known = CASE2.model_copy(update=dict(ground_truth=["in the south"]))  # first answer token " in": known
    wrong = CASE2.model_copy(update=dict(case_id="wrong", ground_truth=["Paris"]))
    insert = CASE.model_copy(update=dict(case_id="insert"))  # no ground truth: the prediction is the answer
    kw = dict(window=1, noise_samples=2, noise_std=0.1, progress=False)
    table = cma_scores(model, tok, [known, wrong, insert], **kw)
    assert table.case_ids == ["maria", "insert"] and table.meta["known"] == 2 and table.meta["total"] == 3
    assert "case 'wrong', field 'ground_truth': unknown fact" in table.skipped["wrong"]
    kept_all = cma_scores(model, tok, [known, wrong], known_only=False, **kw)
    assert kept_all.case_ids == ["maria", "wrong"]
    np.testing.assert_allclose(kept_all.per_case[0], table.per_case[0], rtol=1e-12)


def test_noise_std_is_computed_from_subject_embeddings():
    model, tok, adapter = setup("gpt2")
    wte = model.transformer.wte.weight
    rows = [wte[tok(c.prompt)["input_ids"][i]] for c in (CASE, CASE2) for i in subject_positions(tok, c)]
    expected = torch.stack(rows).std().item()  # one scalar over all elements, unbiased (ROME)
    assert embedding_noise_std(model, tok, [CASE, CASE2], adapter) == pytest.approx(expected, rel=1e-12)
    assert embedding_noise_std(model, tok, [], adapter, "embeddings") == pytest.approx(wte.std().item(), rel=1e-9)
    table = cma_scores(model, tok, [CASE], window=1, noise_samples=2, known_only=False, progress=False)
    assert table.meta["noise_std_used"] == pytest.approx(3 * embedding_noise_std(model, tok, [CASE], adapter))
    noise = draw_noise(200, 5, 32, 0.7, seed=0)
    assert noise.std().item() == pytest.approx(0.7, rel=0.02)
