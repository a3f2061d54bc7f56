"""Nothing a run could not do is silent: records the loader skipped become failure rows (printed, exported, in
the report), and `goldenlayers run` exits with status 3 when a job failed or failure rows remain, after finishing
the rest (docs/runs.md)."""

import csv
import json

import yaml
from cli_helpers import flat, invoke

GOOD = {"subject": "Tom Baker", "prompt": "Tom Baker works as a", "target_new": "pilot", "ground_truth": ["x"],
        "rephrase_prompt": "The job of Tom Baker is"}
BAD = [dict(GOOD, subject=42), dict(GOOD, target_new=""), dict(GOOD, subject="Anna Smith"),
       {k: v for k, v in GOOD.items() if k != "prompt"}]


def test_skipped_records_are_failure_rows_printed_exported_and_reported(tmp_path):
    (tmp_path / "data").mkdir()
    second = dict(GOOD, subject="Ann Lee", prompt="Ann Lee works as a", rephrase_prompt="The job of Ann Lee is")
    (tmp_path / "data" / "z.json").write_text(json.dumps([GOOD, *BAD, second]))  # a split needs 2 good cases
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        name="skips", models=[dict(name="default-gpt2", device="cpu")], datasets=[dict(name="zsre", file="z.json")],
        methods=[dict(name="r-rome", hparams=dict(v_num_grad_steps=2, context_templates=[]))],
        selectors=dict(bruteforce=dict(layers=[1])), metrics=["rewrite"], data_dir=str(tmp_path / "data"),
        output_dir=str(tmp_path / "runs"))))
    res = invoke(["run", cfg, "--no-progress"])
    assert res.exit_code == 3, res.output
    out = flat(res)
    assert "4 failure row(s)" in out and "default-gpt2 / zsre: 4 record(s) skipped while loading" in out
    for why in ("record 1, field 'subject': expected str, found int", "record 2, field 'target_new'",
                "record 3, field 'subject': subject 'Anna Smith' does not occur", "record 4, field 'prompt'"):
        assert why in out, why
    run = tmp_path / "runs" / "skips"
    assert invoke(["export", run, "--dest", tmp_path / "exp"]).exit_code == 0
    with open(tmp_path / "exp" / "failures.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["case_id"], r["stage"], r["method"]) for r in rows) == [
        (str(i), "load", "-") for i in range(1, 5)]
    rep = invoke(["report", run, "--method", "r-rome"])
    assert rep.exit_code == 0, rep.output
    md = (run / "report" / "report.md").read_text()
    assert "## Failures" in md and "record 3, field 'subject'" in md
    assert "record 3, field &#x27;subject&#x27;" in (run / "report" / "report.html").read_text()
    again = invoke(["run", cfg, "--no-progress"])  # nothing left to do, the failures remain: still status 3
    assert again.exit_code == 3 and "done 0," in flat(again) and "4 failure row(s)" in flat(again)


def test_a_failed_job_exits_3_after_the_rest(tmp_path):
    (tmp_path / "no-model").mkdir()  # a model folder with a config but no weights: the job fails when it loads
    (tmp_path / "no-model" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        name="broken", models=[dict(name="nowhere", path=str(tmp_path / "no-model"))],
        datasets=[dict(name="world", limit=4)], methods=[dict(name="r-rome")],
        selectors=dict(bruteforce=dict(layers=[1])), output_dir=str(tmp_path / "runs"))))
    res = invoke(["run", cfg, "--no-progress"])
    assert res.exit_code == 3, res.output
    assert "done 0, skipped (finished before) 0, failed 1" in flat(res) and "Traceback" not in res.output


def test_dry_run_resolves_files_settings_layers_models_and_sources(tmp_path):
    """--dry-run finds what would fail later without editing: a missing data file, an unknown setting, brute-force
    layers outside the model, a model folder that does not exist, an unusable statistics source."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        name="dry", models=[dict(name="default-gpt2"), dict(name="gone", path=str(tmp_path / "no-model"))],
        datasets=[dict(name="zsre", file="missing.json")],
        methods=[dict(name="r-rome", hparams=dict(v_lrr=0.1)), dict(name="rome", hparams=dict(mom2_adjustment=True))],
        selectors=dict(bruteforce=dict(layers=[0, 99])), stats=dict(source=str(tmp_path / "no-texts")),
        data_dir=str(tmp_path), output_dir=str(tmp_path / "runs"))))
    res = invoke(["run", cfg, "--dry-run"])
    assert res.exit_code == 2, res.output
    out = flat(res)
    assert "methods[0].hparams.v_lrr: unknown setting (did you mean 'v_lr'?)" in out
    assert "selectors.bruteforce.layers: [99] outside default-gpt2's layers 0..7" in out
    assert f"models[gone]: model folder {tmp_path / 'no-model'} does not exist" in out
    assert "datasets[zsre].file:" in out and "missing.json' does not exist" in out
    assert "stats.source: unknown text source" in out and "Traceback" not in res.output
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(dict(name="dry2", models=[dict(name="default-gpt2")],
                                        datasets=[dict(name="world", limit=4)], methods=[dict(name="r-rome")],
                                        selectors=dict(bruteforce=dict(layers=[0, 7])),
                                        output_dir=str(tmp_path / "runs"))))
    res = invoke(["run", good, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "default-gpt2 (8 layers)" in flat(res) and "resolve" in flat(res)
