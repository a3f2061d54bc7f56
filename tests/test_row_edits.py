"""Per-row edits (goldenlayers.editing.row_edits) and the batched scoring built on them: each row of one forward
runs under its own edit and gives what the weight-edited model gives; batched fluency samples equal the samples
of one row at a time; the cell loop's batched scoring gives the rows of edit -> score -> restore per cell."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from test_evaluate import make_cases

from goldenlayers.editing.delta import WeightDelta
from goldenlayers.editing.row_edits import row_edits
from goldenlayers.evaluation import evaluate
from goldenlayers.evaluation.cells import edit_cells
from goldenlayers.evaluation.fluency import sample_text, sample_texts
from goldenlayers.evaluation.scorer import CaseScorer, EvalSettings
from goldenlayers.models.adapters import ATTN_OUT, MLP_OUT, get_adapter
from goldenlayers.models.tiny import TINY_ARCHITECTURES
from goldenlayers.selection.sweep_fns import make_default_fns

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["The capital of France is", "Tom", "Maria Lopez was born in Paris. Tom Baker works for", "Anna Smith plays"]


def random_edit(model, adapter, layer, site, seed, scale=0.5) -> dict:
    d_out, d_in = adapter.site_weight(model, layer, site).shape
    g = torch.Generator().manual_seed(seed)
    return {(layer, site): scale * torch.randn(d_out, d_in, generator=g, dtype=torch.float64)}


def logits(model, tok, prompts):
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits, enc["attention_mask"].bool()


@pytest.mark.parametrize("arch,site", [("gpt2", MLP_OUT), ("llama", MLP_OUT), ("opt", MLP_OUT),
                                       ("gemma3_text", MLP_OUT), ("gpt2", ATTN_OUT), ("llama", ATTN_OUT)])
def test_each_row_sees_its_own_edit(arch, site, make_tiny, tok_for):
    model, tok = make_tiny(arch).eval(), tok_for(arch)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    adapter = get_adapter(model)
    edits = [random_edit(model, adapter, 1, site, 1), random_edit(model, adapter, 2, site, 2)]
    rows = [0, -1, 1, 0]  # rows 0 and 3 share an edit; row 1 is unedited
    plain, mask = logits(model, tok, PROMPTS)
    with row_edits(model, adapter, edits, rows):
        mixed, _ = logits(model, tok, PROMPTS)
    after, _ = logits(model, tok, PROMPTS)
    assert torch.equal(after, plain)  # the hooks are gone: nothing was written to the weights
    assert torch.equal(mixed[1], plain[1])  # the row without an edit is bitwise the unedited model's
    for j in (0, 1):
        delta = WeightDelta(model, adapter)
        (layer, s), dw = next(iter(edits[j].items()))
        delta.apply(layer, dw, s)
        try:
            edited, _ = logits(model, tok, PROMPTS)
        finally:
            delta.restore()
        for b in [b for b, r in enumerate(rows) if r == j]:
            m = mask[b]
            assert not torch.allclose(edited[b][m], plain[b][m], atol=1e-3)  # the edit changes this row...
            torch.testing.assert_close(mixed[b][m], edited[b][m], atol=2e-5, rtol=1e-4)  # ...as the weights would


def test_a_forward_of_another_batch_size_is_refused(make_tiny, tok):
    model = make_tiny("gpt2").eval()
    adapter = get_adapter(model)
    with row_edits(model, adapter, [random_edit(model, adapter, 1, MLP_OUT, 0)], [0, -1]):
        with pytest.raises(RuntimeError, match="batch of 1 rows, expected 2"):
            model(**tok(["Tom"], return_tensors="pt"))
    with pytest.raises(IndexError, match="outside 0..0"):
        with row_edits(model, adapter, [random_edit(model, adapter, 1, MLP_OUT, 0)], [1]):
            pass


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_batched_samples_equal_one_row_at_a_time(arch, make_tiny, tok_for):
    """Left padding with per-row positions and one generator per row: every architecture's rows sample the same
    texts together as alone, also when a prompt reaches the length limit (no new token) before the others."""
    model, tok = make_tiny(arch).eval(), tok_for(arch)
    prompts = PROMPTS + ["Lionel Messi plays soccer. Danielle Darrieux speaks French. The Eiffel Tower is in"]
    seeds = [3, 1, 4, 1, 5]
    alone = [sample_text(model, tok, p, s, max_tokens=20) for p, s in zip(prompts, seeds)]
    assert len(tok(prompts[-1])["input_ids"]) >= 20  # the last prompt gets no new token
    assert sample_texts(model, tok, prompts, seeds, max_tokens=20, batch_size=3) == alone
    assert len({len(t) for t in alone[:4]}) > 1 and alone[1].startswith("Tom")


def test_batched_samples_under_row_edits_equal_edited_weights(make_tiny, tok):
    model = make_tiny("gpt2").eval()
    adapter = get_adapter(model)
    edits = [random_edit(model, adapter, 1, MLP_OUT, 7, scale=2.0), random_edit(model, adapter, 2, MLP_OUT, 8, 2.0)]
    rows = [1, 0, -1, 0]
    mixed = sample_texts(model, tok, PROMPTS, [0, 1, 2, 3], max_tokens=24, batch_size=4,
                         context=lambda a, b: row_edits(model, adapter, edits, rows[a:b]))
    for b, r in enumerate(rows):
        delta = WeightDelta(model, adapter)
        if r >= 0:
            (layer, site), dw = next(iter(edits[r].items()))
            delta.apply(layer, dw, site)
        try:
            assert mixed[b] == sample_text(model, tok, PROMPTS[b], b, max_tokens=24)
        finally:
            delta.restore()
    plain = sample_texts(model, tok, PROMPTS, [0, 1, 2, 3], max_tokens=24)
    assert plain[2] == mixed[2] and plain[0] != mixed[0]  # the strong edits change the other rows' texts


def test_states_under_row_edits_equal_the_state_of_the_edited_model(make_tiny, tok):
    model = make_tiny("llama").eval()
    adapter = get_adapter(model)
    cases = make_cases(n=4)
    scorer = CaseScorer(model, tok, EvalSettings(metrics=("rewrite", "rephrase", "locality", "portability",
                                                          "fluency"), fluency_max_tokens=20, batch_size=5))
    edits = [random_edit(model, adapter, 1 + i % 2, MLP_OUT, 10 + i) for i in range(4)]
    batched = scorer.states(cases, edits)
    for case, edit, got in zip(cases, edits, batched):
        delta = WeightDelta(model, adapter)
        (layer, site), dw = next(iter(edit.items()))
        delta.apply(layer, dw, site)
        try:
            want = scorer.state(case)
        finally:
            delta.restore()
        assert got.fluency == want.fluency and set(got.scored) == set(want.scored)
        for pair, sc in want.scored.items():
            assert got.scored[pair] == sc  # predicted and gold token ids
            assert got.scored[pair].nll == pytest.approx(sc.nll, rel=1e-4, abs=1e-5)


def test_a_case_that_cannot_be_scored_fails_alone_in_its_batch(make_tiny, tok):
    model = make_tiny("gpt2").eval()
    adapter = get_adapter(model)
    cases = make_cases(n=3)
    cases[1] = cases[1].model_copy(update=dict(prompt="word " * 2000))  # longer than the model's context
    scorer = CaseScorer(model, tok, EvalSettings(metrics=("rewrite", "locality")))
    out = scorer.states(cases, [random_edit(model, adapter, 1, MLP_OUT, i) for i in range(3)])
    assert isinstance(out[1], Exception) and "longer than the model" in str(out[1])
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_scoring_gives_the_rows_of_cell_by_cell_scoring(arch, make_tiny, tok_for):
    """The cell loop with R-ROME at two layers, scored per cell on the edited weights or per batch under row
    edits: the same cells, the same values; the weights bitwise as before."""
    model, tok = make_tiny(arch).eval(), tok_for(arch)
    cases = make_cases(n=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fns = make_default_fns(model, tok, "r-rome", {"v_num_grad_steps": 10},
                           metrics=("rewrite", "rephrase", "locality", "portability", "fluency"), batch_size=4)
    kw = fns.kwargs()
    batched = edit_cells(cases, [1, 2], batch_size=3, progress=False, **kw)
    torch.manual_seed(0)
    single = edit_cells(cases, [1, 2], batch_size=3, progress=False,
                        **dict(kw, score_batch_fn=None, pre_batch_fn=None))
    assert not batched.failures and not single.failures
    key = lambda r: (r.case_id, r.layer, r.metric)  # noqa: E731
    a, b = sorted(batched.rows, key=key), sorted(single.rows, key=key)
    assert [key(r) for r in a] == [key(r) for r in b] and len(a) == 4 * 2 * 5 - 2  # case 1 has no portability
    for x, y in zip(a, b):
        assert x.post == pytest.approx(y.post, abs=1e-9) and x.pre == y.pre
    assert any(x.metric == "locality" and x.post < 1 for x in a)  # the edits changed predictions
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_evaluate_scores_a_method_in_batches_and_restores(make_tiny, tok):
    model = make_tiny("gpt2").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = evaluate(model, tok, make_cases(n=3), editor="r-rome", layer=[1, 2], hparams={"v_num_grad_steps": 3},
                   progress=False, fluency_max_tokens=16, edit_batch_size=3)
    assert not res.failures and {r.layer for r in res.rows} == {1, 2}
    assert {r.metric for r in res.rows} >= {"rewrite", "locality", "fluency"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
