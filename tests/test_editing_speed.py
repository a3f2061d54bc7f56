"""The CPU speed-ups of an edit change no result: templates generated with the key/value cache and read back
from the on-disk cache, logits projected at the read positions only, tokenised rows memoised per case."""

import json
from types import SimpleNamespace

import pytest
import torch
from editing_helpers import setup_tiny
from torch import nn

from goldenlayers.cases import EditCase
from goldenlayers.editing import templates as tmpl
from goldenlayers.editing.batch import build_rows
from goldenlayers.editing.hparams import resolve_settings
from goldenlayers.editing.value_loss import LossIndex, case_losses
from goldenlayers.models.hooks import gather_positions

GROUPS = [(5, 3), (8, 4)]
CASES = [
    EditCase(case_id="c0", dataset="t", subject="Tom Baker", prompt="The lawyer is Tom Baker", target_new="Paris"),
    EditCase(case_id="c1", dataset="t", subject="Anna Smith", prompt="Anna Smith plays the",
             target_new="violin concerto"),
]


class NoCache(nn.Module):
    """The model without its key/value cache: every generation step runs the whole text (the old way)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=self.inner(input_ids=input_ids, use_cache=False).logits)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3_text"])
def test_templates_with_the_kv_cache_equal_full_recomputation(arch):
    model, tok, _ = setup_tiny(arch)
    cached = tmpl._generate(model, tok, GROUPS, seed=3, top_k=5)
    full = tmpl._generate(NoCache(model), tok, GROUPS, seed=3, top_k=5)
    assert cached == full
    assert len(cached) == 7 and len(set(cached)) > 1


def test_templates_are_read_back_from_disk_keyed_by_model_and_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    model, tok, _ = setup_tiny("gpt2")
    first = tmpl.context_templates(model, tok, GROUPS, seed=2)
    path = tmpl.template_file(model, tok, GROUPS, 2, 5)
    assert path.is_relative_to(tmp_path / "templates") and json.loads(path.read_text())["templates"] == first
    tmpl._CACHE.clear()
    calls = []
    monkeypatch.setattr(tmpl, "_generate", lambda *a: calls.append(a) or ["never"])
    assert tmpl.context_templates(model, tok, GROUPS, seed=2) == first and not calls  # from disk, not generated
    assert tmpl.template_file(model, tok, GROUPS, 3, 5) != path  # another seed, another file
    assert tmpl.template_file(model, tok, [(5, 3)], 2, 5) != path
    assert tmpl.template_file(model, tok, GROUPS, 2, 4) != path
    other, _, _ = setup_tiny("gpt2", seed=2)  # other weights: another identity
    assert tmpl.template_file(other, tok, GROUPS, 2, 5).parent != path.parent
    tmpl._CACHE.clear()
    path.write_text("{not json")  # a damaged file is regenerated and overwritten
    monkeypatch.undo()
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path))
    assert tmpl.context_templates(model, tok, GROUPS, seed=2) == first
    assert json.loads(path.read_text())["templates"] == first
    tmpl._CACHE.clear()
    assert tmpl.context_templates(model, tok, GROUPS, seed=2, disk=False) == first


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt"])
def test_logits_at_the_read_positions_equal_the_full_logits(arch):
    model, tok, adapter = setup_tiny(arch)
    hp = resolve_settings(None, "rome", None, dict(preserve_prompts=["{} lives in"]))
    rows = build_rows(tok, CASES, ["{}", "Short. {}", "A longer text here. {}"], with_target=True,
                      kl_prompt=hp.kl_prompt, preserve_prompts=hp.preserve_prompts)
    ix = LossIndex.of(rows, hp)
    assert ix.read.shape[1] == int(max(rows.predict_mask.sum(1).max(), 1)) < rows.input_ids.shape[1]
    with torch.no_grad():
        full = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
        with gather_positions(adapter.lm_head_module(model), ix.read):
            some = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
    assert some.shape == (*ix.read.shape, full.shape[-1])
    torch.testing.assert_close(some, full.gather(1, ix.read[..., None].expand(-1, -1, full.shape[-1])))
    # the loss over the read positions equals the loss written over every position
    pred_row, pred_pos = rows.predict_mask.nonzero(as_tuple=True)
    assert torch.equal(ix.read[pred_row, ix.pred_slot], pred_pos)
    assert torch.equal(ix.read[ix.kl_rows, ix.kl_slot], rows.kl_at[ix.kl_rows])
    nll, kl = case_losses(some, rows, ix, len(CASES), 3, None, hp)
    logp = torch.log_softmax(full[pred_row, pred_pos], -1).gather(1, rows.next_ids[pred_row, pred_pos][:, None])[:, 0]
    want = torch.zeros(len(CASES))
    for r in range(len(rows.case)):
        if rows.template[r] >= 0:
            want[rows.case[r]] -= logp[pred_row == r].mean() / 3
    torch.testing.assert_close(nll, want)
    torch.testing.assert_close(kl, torch.log_softmax(full[ix.kl_rows, rows.kl_at[ix.kl_rows]], -1))


def test_rows_of_a_case_are_tokenised_once(monkeypatch):
    _, tok, _ = setup_tiny("gpt2")
    templates = ["{}", "Short. {}"]
    calls = []
    real = type(tok).__call__

    def counting(self, *a, **kw):
        calls.append(a)
        return real(self, *a, **kw)

    first = build_rows(tok, CASES, templates, with_target=True, kl_prompt="{} is a")
    monkeypatch.setattr(type(tok), "__call__", counting)
    again = build_rows(tok, CASES, templates, with_target=True, kl_prompt="{} is a")
    other = build_rows(tok, CASES[:1], templates, with_target=True, kl_prompt="{} was a")
    monkeypatch.undo()
    for a, b in zip(vars(first).values(), vars(again).values(), strict=True):
        assert torch.equal(a, b)
    assert len(calls) == 2  # only the new KL prompt's row: tokenised for the row and for its offsets
    assert other.input_ids.shape[0] == 3

