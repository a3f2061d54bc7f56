"""evaluate() end to end on tiny models with callable editors (docs/equations.md "Metrics")."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from cli_helpers import flat

from goldenlayers.cases import EditCase, Probe
from goldenlayers.evaluation import PreCache, WeightsNotRestoredError, combine, evaluate, model_key
from goldenlayers.models.adapters import get_adapter

pytestmark = pytest.mark.usefixtures("one_thread")


def make_cases(dataset="zsre", n=4):
    subjects = ["Maria Lopez", "Tom Baker", "Anna Smith", "Lionel Messi", "Danielle Darrieux", "John Smith"]
    out = []
    for i in range(n):
        s = subjects[i % len(subjects)]
        out.append(EditCase(
            case_id=str(i), dataset=dataset, subject=s, prompt=f"{s} was born in" if i % 2 else f"The home of {s} is",
            target_new=["Paris", "the violin", "Acme in France", "soccer"][i % 4], ground_truth=["France"],
            rephrase=[f"{s} is from", f"Where was {s} born? In"][: 1 + i % 2],
            locality=[Probe(prompt="The capital of France is", answers=["Paris"], category="Relation_Specificity"),
                      Probe(prompt="Tom Baker works for", answers=["Acme, a firm"], category="Forgetfulness")][: 1 + i % 2],
            portability=[Probe(prompt=f"The language of the birthplace of {s} is", answers=["French", "Francais"],
                               category="Reasoning")] if i != 1 else []))
    return out


def identity_editor(model, tok, case, layer):
    class Handle:
        def restore(self):
            pass
    return Handle()


def noise_editor(scale=0.3, fail_on=None, restore=True):
    """Adds seeded noise to the down-proj of `layer`; restores the saved tensor (unless restore=False)."""
    def editor(model, tok, case, layer):
        if case.case_id == fail_on:
            raise RuntimeError("editor refused this case")
        w = get_adapter(model).weight_param(model, layer)
        saved = w.detach().clone()
        g = torch.Generator().manual_seed(int(case.case_id))
        with torch.no_grad():
            w.add_(scale * torch.randn(w.shape, generator=g, dtype=w.dtype))

        class Handle:
            def restore(self):
                if restore:
                    with torch.no_grad():
                        w.copy_(saved)
        return Handle()
    return editor


def by_key(result):
    return {(r.case_id, r.metric, r.layer): (r.pre, r.post) for r in result.rows}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_identity_edit_gives_locality_one_and_batch_size_invariance(arch, make_tiny, tok, tok_bos):
    t = tok_bos if arch == "llama" else tok
    model = make_tiny(arch)
    cases = make_cases()
    r16 = evaluate(model, t, cases, editor=identity_editor, layer=1, batch_size=16, progress=False,
                   fluency_max_tokens=30)
    r1 = evaluate(model, t, cases, editor=identity_editor, layer=1, batch_size=1, progress=False, fluency_max_tokens=30)
    assert not r16.failures and by_key(r16) == by_key(r1)
    loc = [r.post for r in r16.rows if r.metric == "locality"]
    assert len(loc) == 4 and all(v == 1.0 for v in loc)
    assert all(r.pre == r.post for r in r16.rows if r.metric != "locality")
    assert {r.metric for r in r16.rows if r.case_id == "1"} == {"rewrite", "rephrase", "locality", "fluency"}


def independent_predictions(model, tok, prompt, answer):
    """argmax ids at the answer positions, from one unpadded forward of prompt + " " + answer."""
    p_ids, full = tok(prompt)["input_ids"], tok(prompt + " " + answer)["input_ids"]
    assert full[: len(p_ids)] == p_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0]
    return logits[len(p_ids) - 1: len(full) - 1].argmax(-1).tolist(), full[len(p_ids):]


def test_metrics_match_an_independent_computation(make_tiny, tok):
    model = make_tiny("gpt2")
    cases = make_cases(n=3)
    w_before = get_adapter(model).weight_param(model, 2).detach().clone()
    res = evaluate(model, tok, cases, editor=noise_editor(0.5), layer=2, fluency=False, progress=False)
    assert torch.equal(w_before, get_adapter(model).weight_param(model, 2))
    rows = by_key(res)
    for c in cases:
        pre = {p.prompt: independent_predictions(model, tok, p.prompt, p.answer) for p in c.locality}
        rw_pre, gold = independent_predictions(model, tok, c.prompt, c.target_new)
        noise_editor(0.5)(model, tok, c, 2)
        post = {p.prompt: independent_predictions(model, tok, p.prompt, p.answer) for p in c.locality}
        rw_post, _ = independent_predictions(model, tok, c.prompt, c.target_new)
        with torch.no_grad():
            get_adapter(model).weight_param(model, 2).copy_(w_before)
        agree = [sum(a == b for a, b in zip(pre[k][0], post[k][0])) / len(pre[k][0]) for k in pre]
        assert rows[(c.case_id, "locality", 2)] == (None, pytest.approx(sum(agree) / len(agree)))
        acc = [sum(a == g for a, g in zip(p, gold)) / len(gold) for p in (rw_pre, rw_post)]
        assert rows[(c.case_id, "rewrite", 2)] == pytest.approx(tuple(acc))
    assert any(rows[(c.case_id, "locality", 2)][1] < 1.0 for c in cases)  # the noise did change predictions


def test_failures_are_recorded_and_the_run_goes_on(make_tiny, tok):
    model = make_tiny("gpt2")
    cases = make_cases(n=3) + [EditCase(case_id="long", dataset="zsre", subject="Tom", prompt="Tom " * 140 + "is",
                                        target_new="Paris")]
    res = evaluate(model, tok, cases, editor=noise_editor(fail_on="1"), layer=[0, 1], fluency=False, progress=False)
    stages = sorted((f.case_id, f.layer, f.stage) for f in res.failures)
    assert stages == [("1", 0, "edit"), ("1", 1, "edit"), ("long", 0, "pre"), ("long", 1, "pre")]
    reasons = {f.stage: f.reason for f in res.failures}
    assert reasons["edit"] == "RuntimeError: editor refused this case"
    assert "longer than the model's 128" in reasons["pre"]
    assert {r.case_id for r in res.rows} == {"0", "2"}
    with pytest.raises(WeightsNotRestoredError, match="layer 1"):
        evaluate(model, tok, cases[:1], editor=noise_editor(restore=False), layer=1, fluency=False, progress=False)


def test_pre_edit_cache_and_fluency_independent_of_batch(make_tiny, tok):
    model = make_tiny("gpt2")
    cases = make_cases(n=3)
    cache = PreCache()
    res = evaluate(model, tok, cases, editor=noise_editor(), layer=[0, 1], progress=False, cache=cache,
                   fluency_max_tokens=40)
    misses = cache.misses
    assert misses == len(cache) > 0 and res.cache_misses == misses
    again = evaluate(model, tok, cases[1:2], editor=noise_editor(), layer=0, progress=False, cache=cache,
                     fluency_max_tokens=40)
    assert cache.misses == misses  # all pre-edit results came from the cache
    alone = evaluate(model, tok, cases[1:2], editor=noise_editor(), layer=0, progress=False, fluency_max_tokens=40)
    assert by_key(again) == by_key(alone) == {k: v for k, v in by_key(res).items() if k[0] == "1" and k[2] == 0}
    # same case id, other dataset and prompt: its own cache entries, not the zsre case's values
    other = cases[0].model_copy(update={"dataset": "counterfact", "prompt": "Where is Maria Lopez? In"})
    evaluate(model, tok, [other], editor=identity_editor, layer=0, progress=False, cache=cache, fluency_max_tokens=40)
    assert cache.misses > misses
    key = model_key(model)
    with torch.no_grad():
        get_adapter(model).weight_param(model, 0).mul_(1.5)
    assert model_key(model) != key  # an edited model never reads the unedited model's cache


def test_table_overall_and_combine(make_tiny, tok):
    model = make_tiny("gpt2")
    cases = make_cases(n=4)
    a = evaluate(model, tok, cases, editor=noise_editor(0.05), layer=0, fluency=False, progress=False)
    b = evaluate(model, tok, cases, editor=noise_editor(2.0), layer=3, fluency=False, progress=False)
    table = combine(a, b).table()
    assert [(t["layer"], t["cases"]) for t in table] == [(0, 4), (3, 4)]
    loc = [t["locality"] for t in table]
    assert loc == [pytest.approx(sum(r.post for r in x.rows if r.metric == "locality") / 4) for x in (a, b)]
    assert loc[0] > loc[1]
    port = [r.post for r in a.rows if r.metric == "portability"]
    assert len(port) == 3 and table[0]["portability"] == pytest.approx(sum(port) / 3)  # case 1 has none: skipped
    assert table[0]["rewrite_pre"] == table[1]["rewrite_pre"]
    for t in table:  # Overall: the plain mean of the row's accuracies (no fluency here), whatever else is in the table
        assert t["overall"] == pytest.approx((t["rewrite"] + t["rephrase"] + t["locality"] + t["portability"]) / 4)
        assert t["normalisation"] == "Overall = mean of rewrite, rephrase, locality, portability (fixed per row)"
    assert a.table()[0]["overall"] == table[0]["overall"]  # the same row alone or compared: the same Overall


def test_method_name_editor_runs_r_rome_and_restores(make_tiny, tok):
    model = make_tiny("gpt2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = evaluate(model, tok, make_cases(n=1), editor="r-rome", layer=1, hparams={"v_num_grad_steps": 3},
                   fluency=False, progress=False)
    assert not res.failures and {r.method for r in res.rows} == {"r-rome"} and {r.layer for r in res.rows} == {1}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="hparams"):
        evaluate(model, tok, make_cases(n=1), editor=identity_editor, layer=1, hparams={"a": 1}, progress=False)


def test_cli_evaluate(tmp_path, make_tiny, tok):
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    model = make_tiny("gpt2")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rec = {"subject": "Maria Lopez", "prompt": "Maria Lopez was born in", "target_new": "Paris", "ground_truth": "x",
           "locality": {"Relation_Specificity": [{"prompt": "Tom Baker works for", "ground_truth": "Acme"}]}}
    (tmp_path / "cf.json").write_text(json.dumps([rec, {**rec, "subject": "Nobody"}]), encoding="utf-8")
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--dataset", "wiki_counterfact",
                                 "--data-file", str(tmp_path / "cf.json"), "--method", "none", "--no-fluency",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "1 of 2 records loaded" in flat(r) and "skipped record 1" in flat(r)
    data = json.loads(out.read_text())
    assert {(x["metric"], x["post"]) for x in data["rows"]} >= {("locality", 1.0)}
    row = data["table"][0]
    accuracies = [row[m] for m in ("rewrite", "rephrase", "locality", "portability") if row.get(m) is not None]
    assert row["locality"] == 1.0 and row["overall"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert data["skipped"][0]["field"] == "subject"
    bad = CliRunner().invoke(app, ["evaluate", "--dataset", "zsrre", "--data-file", str(out)])
    assert bad.exit_code == 2 and "did you mean 'zsre'" in flat(bad)


def test_cli_evaluate_with_a_preset_that_needs_key_statistics(tmp_path, monkeypatch, make_tiny, tok):
    """`--preset default-gpt2-quality` uses C: collected from the model's own world into the cache, then every
    case is edited with it; a model without a world asks for --stats instead of failing each case."""
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path / "cache"))
    rec = {"subject": "Tom Baker", "prompt": "Tom Baker works as a", "target_new": "pilot", "ground_truth": "x",
           "locality": {"Relation_Specificity": [{"prompt": "Anna Smith works as a", "ground_truth": "nurse"}]}}
    (tmp_path / "cf.json").write_text(json.dumps([rec, {**rec, "subject": "Anna Smith", "prompt": "Anna Smith is a"}]),
                                      encoding="utf-8")
    out = tmp_path / "out.json"
    base = ["evaluate", "--dataset", "wiki_counterfact", "--data-file", str(tmp_path / "cf.json"), "--method",
            "r-rome", "--layer", "2", "--no-fluency", "--device", "cpu", "--set", "v_num_grad_steps=3",
            "--set", "context_templates=[]"]
    r = CliRunner().invoke(app, base + ["--model", "default-gpt2", "--preset", "default-gpt2-quality",
                                        "--stats-tokens", "3000", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert not data["failures"] and {(x["method"], x["layer"]) for x in data["rows"]} == {("r-rome", 2)}
    assert len(list((tmp_path / "cache" / "key_stats").rglob("layer002-tok3000-*.safetensors"))) == 1

    model = make_tiny("gpt2")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    bad = CliRunner().invoke(app, base + ["--model", str(tmp_path / "m"), "--set", "mom2_adjustment=true"])
    assert bad.exit_code == 2 and "--stats SOURCE" in flat(bad) and "Traceback" not in bad.output
    bad = CliRunner().invoke(app, base + ["--model", str(tmp_path / "m"), "--preset", "default-gpt2-qualty"])
    assert bad.exit_code == 2 and "unknown preset 'default-gpt2-qualty'" in flat(bad)
