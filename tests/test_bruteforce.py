"""The cell loop as brute force sweeps it (evaluation/cells.py, bruteforce.py) with a fake editor on a tiny GPT-2: the editor adds
a per-(case, layer) random rank-one matrix to the layer's down-proj weight, and the scores are real numbers read
from the edited model, checked against an independent edit of a copy of the model."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import zlib

import pytest
import torch

from goldenlayers.cases import CaseError, EditCase
from goldenlayers.evaluation.cells import WeightsNotRestoredError, edit_cells
from goldenlayers.models.adapters import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.selection.bruteforce import bruteforce_scores

FACTS = [("Maria Lopez", "Maria Lopez was born in", "Paris"), ("Tom Baker", "Tom Baker works for", "Acme"),
         ("Anna Smith", "Anna Smith plays the", "violin"), ("Lionel Messi", "Lionel Messi plays", "soccer"),
         ("Danielle Darrieux", "Danielle Darrieux speaks", "French")]
LAYERS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_model("gpt2", n_layers=4), tiny_tokenizer()
    cases = [EditCase(case_id=f"c{i}", dataset="zsre", subject=s, prompt=p, target_new=t)
             for i, (s, p, t) in enumerate(FACTS)]
    return model, tok, get_adapter(model), cases


def delta_of(adapter, model, case_id: str, layer: int) -> torch.Tensor:
    """The fake edit: a rank-one (d_out, d_in) matrix seeded by case and layer, large enough to move the logits."""
    d_out, d_in = adapter.weight(model, layer).shape
    g = torch.Generator().manual_seed(zlib.crc32(case_id.encode()) * 10 + layer)
    return 3.0 * torch.randn(d_out, 1, generator=g) @ torch.randn(1, d_in, generator=g)


class Handle:
    def __init__(self, param, exact=True, delta=None):
        self.param, self.orig, self.exact, self.delta = param, param.detach().clone(), exact, delta

    def restore(self):
        with torch.no_grad():
            self.param.copy_(self.orig) if self.exact else self.param.sub_(self.delta)


def fake_editor(model, adapter, exact=True, calls=None):
    """prepare_fn computes every case's delta of the batch; apply_fn adds one to the weight in storage orientation."""
    def prepare(cases, layer):
        if calls is not None:
            calls.append(([c.case_id for c in cases], layer))
        if any(c.case_id == "bad" for c in cases):
            raise CaseError("bad", "subject", "refused by the fake editor")
        return [(layer, adapter.to_storage(delta_of(adapter, model, c.case_id, layer))) for c in cases]

    def apply(item):
        layer, d = item
        param = adapter.weight_param(model, layer)
        handle = Handle(param, exact, d)
        with torch.no_grad():
            param.add_(d)
        return handle
    return prepare, apply


def next_logprobs(model, tok, prompt: str) -> torch.Tensor:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    return model(ids).logits[0, -1].float().log_softmax(-1)


def scorer(model, tok):
    def pre(case):
        return int(next_logprobs(model, tok, case.prompt).argmax())

    def score(case, top_before):
        lp = next_logprobs(model, tok, case.prompt)
        target = tok(" " + case.target_new)["input_ids"][0]
        return {"target_logprob": float(lp[target]), "kept_top1": float(int(lp.argmax()) == top_before)}
    return pre, score


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(model, snap) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def values(rows):
    return {(r.case_id, r.layer, r.metric): r.post for r in rows}


def test_sweep_rows_match_independent_edits(setup):
    model, tok, adapter, cases = setup
    snap, calls, seen = snapshot(model), [], []
    prepare, apply = fake_editor(model, adapter, calls=calls)
    pre, score = scorer(model, tok)

    def on_row(cell):
        assert same_weights(model, snap), f"weights not restored after {cell.key}"
        seen.append(cell.key)

    res = edit_cells(cases, LAYERS, score, prepare_fn=prepare, apply_fn=apply, pre_fn=pre, batch_size=2,
                on_cell=on_row, progress=False, weights_fn=lambda layer: [adapter.weight_param(model, layer)])
    assert not res.failures and res.skipped == 0 and len(res.rows) == 5 * 4 * 2
    # layer-major, batches of 2 cases: 3 prepare calls per layer
    assert seen == [(c.case_id, layer) for layer in LAYERS for c in cases]
    assert calls[:3] == [(["c0", "c1"], 0), (["c2", "c3"], 0), (["c4"], 0)] and len(calls) == 12
    assert all(r.seconds > 0 for r in res.rows) and res.seconds >= max(r.seconds for r in res.rows)
    got = values(res.rows)
    for case in cases:
        before = next_logprobs(model, tok, case.prompt)
        target = tok(" " + case.target_new)["input_ids"][0]
        for layer in LAYERS:  # the same edit made by hand on a copy of the model
            other = copy.deepcopy(model)
            with torch.no_grad():
                adapter.weight(other, layer).add_(delta_of(adapter, other, case.case_id, layer))
            lp = next_logprobs(other, tok, case.prompt)
            assert got[(case.case_id, layer, "target_logprob")] == pytest.approx(float(lp[target]), abs=1e-5)
            assert abs(float(lp[target]) - float(before[target])) > 1e-3  # the edit really changed the model
            kept = float(int(lp.argmax()) == int(before.argmax()))
            assert got[(case.case_id, layer, "kept_top1")] == kept
    assert same_weights(model, snap)
    # the unbatched form (edit_fn) gives the same numbers
    alone = edit_cells(cases, LAYERS, score, edit_fn=lambda case, layer: apply(prepare([case], layer)[0]), pre_fn=pre,
                  progress=False)
    assert values(alone.rows) == got


def test_failures_recorded_weights_restored_and_table(setup):
    model, tok, adapter, cases = setup
    bad = EditCase(case_id="bad", dataset="zsre", subject="Tom Baker", prompt="Tom Baker works for", target_new="x")
    snap, calls = snapshot(model), []
    prepare, apply = fake_editor(model, adapter, calls=calls)
    pre, score = scorer(model, tok)

    def flaky_score(case, top):
        if case.case_id == "c2" and top is not None:
            layer = edited_layer()
            if layer == 1:
                raise RuntimeError("scorer crashed while the model was edited")
            if layer == 3:
                return {"target_logprob": float("nan")}
        return score(case, top)

    def edited_layer():
        changed = [lay for lay in LAYERS if not torch.equal(adapter.weight_param(model, lay),
                                                            snap[adapter.down_proj_name(model, lay)])]
        assert len(changed) == 1
        return changed[0]

    restored = []
    res = edit_cells([cases[0], bad, *cases[1:]], LAYERS, flaky_score, prepare_fn=prepare, apply_fn=apply, pre_fn=pre,
                batch_size=3, progress=False, on_cell=lambda cell: restored.append(same_weights(model, snap)),
                weights_fn=lambda layer: [adapter.weight_param(model, layer)])
    assert all(restored) and len(restored) == 6 * 4 and same_weights(model, snap)
    fails = {(f.case_id, f.layer): f for f in res.failures}
    assert set(fails) == {("bad", layer) for layer in LAYERS} | {("c2", 1), ("c2", 3)}
    assert fails[("bad", 0)].stage == "prepare" and "refused by the fake editor" in fails[("bad", 0)].reason
    assert fails[("c2", 1)].stage == "score" and "RuntimeError: scorer crashed" in fails[("c2", 1)].reason
    assert "not finite" in fails[("c2", 3)].reason
    # the batch with the bad case fell back to one case at a time; the others in it were edited normally
    assert calls[:4] == [(["c0", "bad", "c1"], 0), (["c0"], 0), (["bad"], 0), (["c1"], 0)]
    assert len(res.rows) == (5 * 4 - 2) * 2

    table = bruteforce_scores(res.rows, "target_logprob", model="tiny-gpt2")
    assert (table.selector, table.dataset, table.model, table.layers) == ("bruteforce", "zsre", "tiny-gpt2", LAYERS)
    assert table.case_ids == ["c0", "c1", "c3", "c4"] and set(table.skipped) == {"c2"}
    got = values(res.rows)
    for j, layer in enumerate(LAYERS):
        col = [got[(c, layer, "target_logprob")] for c in table.case_ids]
        assert table.scores[j] == pytest.approx(sum(col) / 4, abs=1e-12)
        assert table.per_case[:, j].tolist() == col
    cells = {(r.case_id, r.layer): r.seconds for r in res.rows}
    assert table.seconds == pytest.approx(sum(cells.values()))
    assert table.to_rows()[0]["selector"] == "bruteforce" and table.meta["metric"] == "target_logprob"
    lower = bruteforce_scores(res.rows, "target_logprob", higher_is_better=False, selector="bruteforce-lp")
    assert lower.selector == "bruteforce-lp" and lower.meta["higher_is_better"] is False
    assert lower.scores.tolist() == (-table.scores).tolist()


def test_skip_resume_yields_exactly_the_missing_rows(setup):
    model, tok, adapter, cases = setup
    prepare, apply = fake_editor(model, adapter)
    pre, score = scorer(model, tok)
    full = values(edit_cells(cases, LAYERS, score, prepare_fn=prepare, apply_fn=apply, pre_fn=pre, progress=False).rows)

    store = []

    def crash_after_seven(cell):
        store.append(cell)
        if len(store) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        edit_cells(cases, LAYERS, score, prepare_fn=prepare, apply_fn=apply, pre_fn=pre, batch_size=4, progress=False,
              on_cell=crash_after_seven)
    done = {cell.key for cell in store}
    assert len(done) == 7
    resumed = []
    res = edit_cells(cases, LAYERS, score, prepare_fn=prepare, apply_fn=apply, pre_fn=pre, batch_size=4, progress=False,
                on_cell=resumed.append, skip=done)
    assert res.skipped == 7
    assert sorted(c.key for c in resumed) == sorted({(c.case_id, layer) for c in cases for layer in LAYERS} - done)
    merged = [r for cell in store for r in cell.rows] + res.rows
    assert len(merged) == len(full) and values(merged) == full


def test_inexact_restore_and_half_applied_edit_stop_the_sweep(setup):
    model, tok, adapter, cases = setup
    snap = snapshot(model)
    pre, score = scorer(model, tok)
    prepare, apply = fake_editor(model, adapter, exact=False)  # restore() subtracts: float32 round-off remains
    watch = {"weights_fn": lambda layer: [adapter.weight_param(model, layer)]}
    with pytest.raises(WeightsNotRestoredError, match="case 'c0' at layer 0"):
        edit_cells(cases, LAYERS, score, prepare_fn=prepare, apply_fn=apply, progress=False, **watch)
    model.load_state_dict(snap)

    def half_apply(item):
        apply(item)
        raise FloatingPointError("solve failed half-way")
    with pytest.raises(WeightsNotRestoredError):
        edit_cells(cases, [2], score, prepare_fn=prepare, apply_fn=half_apply, progress=False, **watch)
    model.load_state_dict(snap)
    # an editor that fails cleanly is just a recorded failure
    good_prepare, good_apply = fake_editor(model, adapter)

    def refuse(item):
        raise FloatingPointError("update is not finite")
    res = edit_cells(cases[:2], [1], score, prepare_fn=good_prepare, apply_fn=refuse, progress=False, **watch)
    assert [(f.case_id, f.stage) for f in res.failures] == [("c0", "edit"), ("c1", "edit")] and not res.rows
    assert same_weights(model, snap)


def test_sweep_argument_errors(setup):
    model, tok, adapter, cases = setup
    prepare, apply = fake_editor(model, adapter)
    pre, score = scorer(model, tok)
    with pytest.raises(ValueError, match="either edit_fn"):
        edit_cells(cases, LAYERS, score, prepare_fn=prepare, progress=False)
    with pytest.raises(ValueError, match="either edit_fn"):
        edit_cells(cases, LAYERS, score, edit_fn=apply, prepare_fn=prepare, apply_fn=apply, progress=False)
    with pytest.raises(ValueError, match="unique"):
        edit_cells([cases[0], cases[0]], LAYERS, score, prepare_fn=prepare, apply_fn=apply, progress=False)


def _rewrite_by_hand(model, tok, case) -> float:
    """Teacher-forced token accuracy of target_new after the prompt, computed here without the evaluator."""
    full = tok(case.prompt + " " + case.target_new)["input_ids"]
    n_prompt = len(tok(case.prompt)["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0]
    pred = logits[n_prompt - 1:len(full) - 1].argmax(-1).tolist()
    return sum(p == t for p, t in zip(pred, full[n_prompt:])) / (len(full) - n_prompt)


def test_default_fns_drive_the_real_editor_and_scorer(setup):
    """make_default_fns with the real R-ROME editor (edit_each, batched v*) and the real evaluator on the tiny
    model: a too-long prompt fails alone (already when its unedited state is measured), weights come back
    bitwise, and each rewrite value equals a hand-computed one under the same edit applied on its own."""
    from goldenlayers.editing import edit
    from goldenlayers.selection.bruteforce import make_default_fns

    model, tok, adapter, cases = setup
    hp = dict(v_num_grad_steps=8, context_templates=[], kl_factor=0.0, v_weight_decay=1e-3)
    long_prompt = "Tom Baker" + " works for Acme." * 60 + " Tom Baker works for"
    bad = EditCase(case_id="long", dataset="zsre", subject="Tom Baker", prompt=long_prompt, target_new="Paris")
    snap, restored = snapshot(model), []
    fns = make_default_fns(model, tok, "r-rome", hp, metrics=("rewrite", "locality"))
    res = edit_cells([cases[0], bad, cases[1]], [1, 2], batch_size=3, progress=False,
                on_cell=lambda cell: restored.append(same_weights(model, snap)), **fns.kwargs())
    assert restored and all(restored) and same_weights(model, snap)
    assert {f.case_id for f in res.failures} == {"long"}
    assert "longer than" in res.failures[0].reason
    got = values(res.rows)
    for case in (cases[0], cases[1]):
        for layer in (1, 2):
            one = edit(model, tok, [case], "r-rome", layer=layer, hparams=hp)
            expected = _rewrite_by_hand(model, tok, case)
            one.restore()
            assert got[(case.case_id, layer, "rewrite")] == pytest.approx(expected, abs=1e-9)
    # a batch without the bad case is edited in one edit_each pass and gives the same numbers
    clean = edit_cells(cases[:2], [1, 2], batch_size=2, progress=False, **fns.kwargs())
    assert not clean.failures
    for key, v in values(clean.rows).items():
        assert v == pytest.approx(got[key], abs=1e-4)


def test_layer_batch_optimises_several_layers_at_once_with_the_same_cells(setup, monkeypatch):
    """layer_batch > 1 with the real editor: the v* of every (case, layer) of a group are optimised in one batch
    (edit_grid), yet the rows equal the layer-by-layer sweep's (float64, so up to rounding), weights come back
    bitwise, a bad case fails alone at every layer, and cells in `skip` are left out (their edits are passed over)."""
    from goldenlayers.selection.bruteforce import make_default_fns

    model, tok, adapter, cases = setup
    model = copy.deepcopy(model).double()
    hp = dict(v_num_grad_steps=6, context_templates=[], kl_factor=0.5, v_weight_decay=1e-3)
    long_prompt = "Tom Baker" + " works for Acme." * 60 + " Tom Baker works for"
    bad = EditCase(case_id="long", dataset="zsre", subject="Tom Baker", prompt=long_prompt, target_new="Paris")
    fns = make_default_fns(model, tok, "r-rome", hp, metrics=("rewrite", "locality"))
    grid_calls = []
    grid_fn = fns.prepare_grid_fn

    def counting_grid(chunk, group):
        grid_calls.append(([c.case_id for c in chunk], list(group)))
        return grid_fn(chunk, group)

    import goldenlayers.editing.api as api

    optimised = []  # (cases, layers) of every v* optimisation with several layers
    real = api.optimise_values_layers
    monkeypatch.setattr(api, "optimise_values_layers", lambda *a, **k: optimised.append(
        ([c.case_id for c in a[3]], list(a[7]))) or real(*a, **k))
    snap = snapshot(model)
    one_by_one = values(edit_cells(cases[:3], LAYERS, batch_size=4, progress=False, **fns.kwargs()).rows)
    assert optimised == []
    kw = dict(fns.kwargs(), prepare_grid_fn=counting_grid)
    res = edit_cells([cases[0], bad, *cases[1:3]], LAYERS, batch_size=4, layer_batch=3, progress=False,
                     skip=[("c1", 0)], **kw)
    assert same_weights(model, snap)
    assert grid_calls == [(["c0", "long", "c1", "c2"], [0, 1, 2])]  # layer 3 is a group of one: no grid call
    assert optimised == [(["c0", "c1", "c2"], [0, 1, 2])]  # the bad case left the batch; one optimisation
    assert sorted((f.case_id, f.layer) for f in res.failures) == [("long", layer) for layer in LAYERS]
    got = values(res.rows)
    assert set(got) == set(one_by_one) - {("c1", 0, "rewrite"), ("c1", 0, "locality")}
    for key, v in got.items():
        assert v == pytest.approx(one_by_one[key], abs=1e-9)
    assert res.skipped == 1
