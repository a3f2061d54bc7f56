"""ROME's CounterFact metrics (the counterfact-rome family, docs/evaluation.md) checked by hand on the bigram model
of test_metrics.py, whose every prediction we choose: with logits scale * one_hot(next) over V = 300 tokens,
log p(hit) = s - log Z and log p(miss) = -log Z, Z = e^s + 299."""

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from test_metrics import ACME, OR, PARIS, PROMPT, BigramLM

from goldenlayers.cases import EditCase, Probe
from goldenlayers.evaluation import CaseScorer, EvalResult, EvalRow, EvalSettings, evaluate
from goldenlayers.metric_names import COUNTERFACT_ROME_METRICS, expand_metrics, harmonic_mean
from goldenlayers.models.tiny import tiny_tokenizer

IS = 264  # last token of "Tom Baker is"
S = 2.0
Z = math.exp(S) + 299

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def btok():
    return tiny_tokenizer()


def rome_case(**kw):
    base = dict(case_id="c", dataset="counterfact", subject="Tom Baker", prompt=PROMPT, target_new="Paris",
                ground_truth=["Acme"], rephrase=["Tom Baker is"],
                locality=[Probe(prompt=PROMPT + ",", answers=["Acme"], category="Neighborhood")])
    return EditCase(**{**base, **kw})


def test_token_ids_the_hand_values_assume(btok):
    assert btok("Tom Baker is")["input_ids"][-1] == IS and btok(PROMPT)["input_ids"][-1] == OR
    assert btok(PROMPT + ",")["input_ids"][-1] not in (OR, IS, ACME)
    assert btok(PROMPT + " Acme")["input_ids"][-4:] == [ACME, 69, 79, 71]


def test_scores_and_magnitudes_by_hand(btok):
    m = BigramLM(table={OR: ACME, ACME: 69, IS: PARIS}, scale=S)
    c = rome_case()
    scorer = CaseScorer(m, btok, EvalSettings(metrics=("counterfact-rome",), fluency_max_tokens=20))
    pre = scorer.pre(c)
    m.next_tok[OR] = PARIS  # the "edit": after "works for" now Paris
    out = scorer.compare(c, pre, scorer.state(c))
    # rewrite prompt, before: " Paris" missed (nll log Z); " Acme" = 2 hits of 4 (nll log Z - 2S/4 = log Z - 1).
    # ROME compares per-token means: P(Acme) wins, ES 0 (the product e^2S / Z^4 < 1/Z would have said Paris)
    # after: " Paris" hit (log Z - 2), " Acme" 1 hit of 4 (log Z - 0.5): ES 1
    assert out["efficacy_score"] == (0.0, 1.0)
    assert out["efficacy_magnitude"] == (pytest.approx((1 - math.e) / Z), pytest.approx((math.e ** 2 - math.e ** .5) / Z))
    # paraphrase "Tom Baker is": Paris hit (log Z - 2), Acme 1 of 4 (log Z - 0.5), unchanged by the edit
    assert out["paraphrase_score"] == (1.0, 1.0)
    assert out["paraphrase_magnitude"] == (pytest.approx((math.e ** 2 - math.e ** .5) / Z),) * 2
    # neighbourhood "...for,": Paris missed (log Z), Acme 1 of 4 (log Z - 0.5): the true object keeps winning
    assert out["neighborhood_score"] == (1.0, 1.0)
    assert out["neighborhood_magnitude"] == (pytest.approx((math.e ** .5 - 1) / Z),) * 2
    assert "generation_entropy" not in out and "rewrite" not in out  # no generation prompts; another family


def test_cases_without_a_true_object_or_probes_have_no_value(btok):
    m = BigramLM(table={OR: ACME}, scale=S)
    scorer = CaseScorer(m, btok, EvalSettings(metrics=("counterfact-rome",)))
    c = rome_case(ground_truth=None, locality=[])
    assert scorer.compare(c, scorer.pre(c), scorer.state(c)) == {}


def _entropy(k: int, n: int) -> float:
    """Weighted entropy of k distinct prompt words followed by n x "Paris": every bigram/trigram that touches the
    prompt occurs once (k of each), the rest are (Paris, Paris) x (n - 1) and (Paris, Paris, Paris) x (n - 2)."""
    def h(total, repeated):
        return -(k / total * math.log2(1 / total) + repeated / total * math.log2(repeated / total))
    return (2 / 3 * h(k + n - 1, n - 1) + 4 / 3 * h(k + n - 2, n - 2)) / 2


def test_generation_entropy_by_hand(btok):
    m = BigramLM(default=PARIS)  # every continuation is " Paris"
    prompts = [PROMPT, "Tom Baker is"]
    c = rome_case(generation_prompts=prompts)
    scorer = CaseScorer(m, btok, EvalSettings(metrics=("generation_entropy",), fluency_max_tokens=30))
    pre = scorer.pre(c)
    want = (_entropy(4, 30 - len(btok(PROMPT)["input_ids"])) + _entropy(3, 30 - len(btok(prompts[1])["input_ids"]))) / 2
    assert scorer.compare(c, pre, scorer.state(c)) == {"generation_entropy": (pytest.approx(want),) * 2}
    assert scorer.cache.misses == 1 and scorer.pre(c).generation == pre.generation and scorer.cache.hits == 1


def test_family_names_expand_everywhere():
    assert expand_metrics(["rewrite", "counterfact-rome", "rewrite"]) == ("rewrite", *COUNTERFACT_ROME_METRICS)
    assert EvalSettings(metrics=("easyedit",)).metrics == ("rewrite", "rephrase", "locality", "portability", "fluency")
    with pytest.raises(ValueError, match="counterfact-rome"):
        EvalSettings(metrics=("efficacy",))
    from goldenlayers.runs import validate_config

    cfg = validate_config(dict(name="t", models=[dict(name="default-gpt2")], datasets=[dict(name="counterfact", file="counterfact.json")],
                               methods=[dict(name="r-rome")], metrics=["rewrite", "counterfact-rome"]))
    assert cfg.metrics == ["rewrite", *COUNTERFACT_ROME_METRICS]
    from goldenlayers.runs.schema import RESULTS, normalise_row

    row = dict(model="m", dataset="counterfact", case_id="1", method="r-rome", selector="bruteforce", layer=1,
               metric="efficacy_score", value=1.0, pre=0.0, split="proxy", seconds=0.1)
    assert normalise_row(RESULTS, {k: row.get(k) for k in RESULTS.names})


def test_rome_score_is_the_harmonic_mean_of_the_score_means():
    assert harmonic_mean([0.5, 1.0, 0.25]) == pytest.approx(3 / 7) and harmonic_mean([0.0, 1.0, 1.0]) == 0.0
    rows = [EvalRow(cid, "counterfact", metric, pre, post, 3, "r-rome")
            for cid, values in (("a", dict(efficacy_score=(0, 1), paraphrase_score=(0, 1), neighborhood_score=(1, .5))),
                                ("b", dict(efficacy_score=(0, 0), paraphrase_score=(1, 1), neighborhood_score=(1, .5))))
            for metric, (pre, post) in values.items()]
    (entry,) = EvalResult(model="m", rows=rows).table()
    # post means ES 0.5, PS 1, NS 0.5 -> 3 / (2 + 1 + 2); pre means ES 0 -> 0
    assert entry["rome_score"] == pytest.approx(0.6) and entry["rome_score_pre"] == 0.0
    assert math.isnan(entry["overall"])  # Overall stays on the EasyEdit metrics, none here


def test_evaluate_with_the_family_and_no_fluency(btok):
    m = BigramLM(table={OR: ACME, ACME: 69, IS: PARIS}, scale=S)
    c = rome_case(generation_prompts=[PROMPT])

    def editor(model, tok, case, layer):
        model.next_tok[OR] = PARIS

        class Undo:
            def restore(self):
                model.next_tok[OR] = ACME
        return Undo()

    res = evaluate(m, btok, [c], editor=editor, metrics=("counterfact-rome",), fluency=False, progress=False)
    assert {r.metric for r in res.rows} == set(COUNTERFACT_ROME_METRICS) - {"generation_entropy"}
    (entry,) = res.table()
    assert (entry["efficacy_score"], entry["efficacy_score_pre"], entry["rome_score"]) == (1.0, 0.0, 1.0)


def test_cli_evaluate_counterfact_rome(tmp_path, make_tiny, tok):
    from typer.testing import CliRunner

    from goldenlayers.cli import app

    model = make_tiny("gpt2")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rec = {"case_id": 7, "requested_rewrite": {"prompt": "{} was born in", "subject": "Maria Lopez",
                                               "relation_id": "P19", "target_new": {"str": "Paris", "id": "Q90"},
                                               "target_true": {"str": "France", "id": "Q142"}},
           "paraphrase_prompts": ["Maria Lopez is from"], "neighborhood_prompts": ["Tom Baker was born in"],
           "attribute_prompts": [], "generation_prompts": ["Maria Lopez was"]}
    (tmp_path / "counterfact.json").write_text(json.dumps([rec]), encoding="utf-8")
    out = tmp_path / "out.json"
    r = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "m"), "--dataset", "counterfact",
                                 "--data-file", str(tmp_path / "counterfact.json"), "--method", "none",
                                 "--metrics", "counterfact-rome", "--out", str(out)], terminal_width=240)
    assert r.exit_code == 0, r.output
    assert all(col in r.output for col in ("ES", "PS", "NS", "GE", "Score"))
    (entry,) = json.loads(out.read_text())["table"]
    for metric in COUNTERFACT_ROME_METRICS:
        assert entry[metric] is not None and entry[metric] == entry[f"{metric}_pre"]  # no edit: post = pre
    assert entry["rome_score"] == pytest.approx(harmonic_mean(
        [entry["efficacy_score"], entry["paraphrase_score"], entry["neighborhood_score"]]))


def test_report_selector_tables_show_rome_metrics_and_score():
    from goldenlayers.report.tables import _selector_table

    rows = {("ZsRE", "lga"): ("3", dict(rewrite=0.5, efficacy_score=0.5, paraphrase_score=1.0, neighborhood_score=0.5)),
            ("ZsRE", "bruteforce"): ("2", dict(rewrite=0.7, efficacy_score=1.0, paraphrase_score=1.0,
                                               neighborhood_score=0.25))}
    t = _selector_table("k", "title", "Dataset", rows, None, 4)
    assert t.columns == ["Dataset", "Selection", "Layer", "RwA(↑)", "ES(↑)", "PS(↑)", "NS(↑)", "Score(↑)", "OV(↑)"]
    score = {r[1]: r[t.columns.index("Score(↑)")] for r in t.rows}
    assert score == {"LGA": f"{0.6:.4f}", "BF (proxy golden)": f"{3 / (1 + 1 + 4):.4f}"}
    overall = {r[1]: r[t.columns.index("OV(↑)")] for r in t.rows}  # Overall: the EasyEdit metrics only
    assert overall == {"LGA": "0.5000", "BF (proxy golden)": "0.7000"}
