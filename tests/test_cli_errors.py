"""Bad input on the command line, as a new user types it: every row of the table must exit with status 2, print
one line that names the option / file / case at fault (unwrapped, whatever the length of the temporary paths),
and never a traceback (the developers' guide: one clear line, exit code 2)."""

import json

import pytest
import torch
import yaml
from cli_helpers import invoke

from goldenlayers.models.tiny import tiny_model, tiny_tokenizer

LONG = "a-rather-long-folder-name-that-pushes-the-message-past-the-terminal-width-" * 2


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny saved GPT-2 (4 layers), a one-record KnowEdit file, a folder that is not a model, a BERT folder, a
    file where a directory is expected, a run config and a file whose only record has a null prompt."""
    root = tmp_path_factory.mktemp("cli-errors")
    tiny_model("gpt2").save_pretrained(root / "m")
    tiny_tokenizer().save_pretrained(root / "m")
    rec = {"subject": "Maria Lopez", "prompt": "Maria Lopez was born in", "target_new": "Paris",
           "ground_truth": "Rome"}
    (root / "cf.json").write_text(json.dumps([rec]))
    (root / "null.json").write_text(json.dumps([dict(rec, prompt=None)]))
    (root / "empty").mkdir()
    (root / "bert").mkdir()
    (root / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "bert" / "model.safetensors").write_bytes(b"")
    (root / "afile").write_text("x")
    (root / "run.yaml").write_text(yaml.safe_dump(dict(name="r", models=[dict(name="default-gpt2")],
                                                       datasets=[dict(name="world", limit=4)],
                                                       methods=[dict(name="r-rome")])))
    return root


def _evaluate(env, *extra):
    return ["evaluate", "--model", env / "m", "--dataset", "wiki_counterfact", "--data-file", env / "cf.json",
            "--device", "cpu", "--no-fluency", "--layer", "1", *extra]


def _edit(env, *extra):
    return ["edit", "--model", env / "m", "--device", "cpu", "--subject", "Tom", "--prompt", "Tom is",
            "--target", "Paris", *extra]


# (id, args given the env fixture's folder, fragments that must all be on one line of the output)
CASES = [
    ("evaluate-layer-too-high", lambda e: _evaluate(e)[:-2] + ["--layer", "99"], ["--layer", "out of range"]),
    ("evaluate-layer-negative", lambda e: _evaluate(e)[:-2] + ["--layer=-1"], ["--layer", "out of range"]),
    ("edit-layer-too-high", lambda e: _edit(e, "--layer", "42"), ["--layer", "out of range"]),
    ("edit-layers-not-ints", lambda e: _edit(e, "--layers", "1,x"), ["--layers", "comma-separated"]),
    ("device-tpu", lambda e: _evaluate(e, "--device", "tpu"), ["--device", "'tpu'"]),
    ("dtype-float8", lambda e: _evaluate(e, "--dtype", "float8"), ["--dtype", "float8"]),
    ("model-folder-without-config", lambda e: _evaluate(e, "--model", e / "empty"), ["--model", "config.json"]),
    ("model-folder-bert", lambda e: _evaluate(e, "--model", e / "bert"), ["--model", "unknown architecture 'bert'"]),
    ("select-limit-negative", lambda e: ["select", "--limit=-3"], ["Invalid value for '--limit'", "greater than or equal to 1"]),
    ("select-limit-zero", lambda e: ["select", "--limit", "0"], ["Invalid value for '--limit'", "greater than or equal to 1"]),
    ("compare-limit-zero", lambda e: ["compare", "--limit", "0"], ["Invalid value for '--limit'", "greater than or equal to 1"]),
    ("evaluate-limit-zero", lambda e: _evaluate(e, "--limit", "0"), ["Invalid value for '--limit'", "greater than or equal to 1"]),
    ("compare-proxy-fraction", lambda e: ["compare", "--proxy-fraction", "1.5"], ["--proxy-fraction", "1.5"]),
    ("compare-unknown-selector", lambda e: ["compare", "--selectors", "lga,lgb"], ["--selectors", "'lgb'"]),
    ("select-unknown-editor", lambda e: ["select", "--editor", "romee"], ["--editor", "'romee'"]),
    ("world-people-zero", lambda e: ["world", "--people", "0"], ["Invalid value for '--people'", "greater than or equal to 1"]),
    ("run-root-is-a-file", lambda e: ["run", e / "run.yaml", "--root", e / "afile", "--dry-run"], ["--root", "afile"]),
    ("evaluate-unknown-metric", lambda e: _evaluate(e, "--metrics", "rewrite,bogus"), ["--metrics", "'bogus'"]),
    ("evaluate-unknown-setting", lambda e: _evaluate(e, "--method", "r-rome", "--set", "v_lrr=0.1"),
     ["--set", "v_lrr"]),
    ("evaluate-bad-setting-value", lambda e: _evaluate(e, "--method", "r-rome", "--set", "v_lr=fast"),
     ["--set", "v_lr"]),
    ("edit-execution-option-as-setting", lambda e: _edit(e, "--layer", "1", "--set", "cuda_graphs=false"),
     ["--set", "cuda_graphs is no longer a method setting", "GOLDENLAYERS_ACCEL=graphs=off"]),
    ("report-overall", lambda e: ["report", e / "no-run", "--overall-weights", "bogus=1"],
     ["--overall-weights", "'bogus'", "rewrite"]),
    ("report-method", lambda e: ["report", e / "no-run", "--method", "foo"], ["--method", "'foo'"]),
    ("long-missing-data-file", lambda e: _evaluate(e)[:6] + [e / LONG / "cf.json", "--device", "cpu"],
     ["error:", LONG, "does not exist"]),
    ("null-prompt", lambda e: _evaluate(e)[:6] + [e / "null.json", "--device", "cpu"],
     ["field 'prompt'", "null"]),
]


@pytest.mark.parametrize("make_args, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_exit_2(env, make_args, fragments):
    res = invoke(make_args(env))
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "errors.pydantic.dev" not in res.output
    assert any(all(f in line for f in fragments) for line in res.output.splitlines()), res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only torch")
def test_cuda_device_on_a_cpu_only_torch(env):
    res = invoke(_evaluate(env, "--device", "cuda"))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert any("--device" in line and "no CUDA" in line for line in res.output.splitlines()), res.output


def test_commands_say_which_model_they_use_first(env):
    res = invoke(_evaluate(env, "--method", "none"))
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"model: {env / 'm'}"
