"""`goldenlayers edit` on a tiny model saved to a temporary folder, and `goldenlayers ls` listing the methods."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model = tiny_model("gpt2", seed=0)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30)  # a peaked output, so that an edit changes the argmax
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def test_cli_edit_shows_prediction_before_and_after(saved_model):
    args = ["edit", "--model", saved_model, "--subject", "Tom Baker", "--prompt", "The lawyer is Tom Baker",
            "--target", "Paris", "--layer", "1", "--method", "r-rome", "--device", "cpu",
            "--set", "context_templates=[]", "--set", "v_num_grad_steps=30", "--set", "kl_factor=0",
            "--set", "clamp_norm_factor=1000", "--set", "v_weight_decay=0", "--max-new-tokens", "1"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in result.output.splitlines() if ln.count("│") >= 3}
    assert lines["after"] == "Paris" and lines["before"] != "Paris"
    assert "r-rome at layer(s) [1]" in result.output
    assert float(lines["update norm"].split()[0]) > 0


def test_cli_edit_bad_input_is_one_clear_line(saved_model):
    base = ["edit", "--model", saved_model, "--device", "cpu", "--target", "Paris", "--set", "context_templates=[]"]
    res = CliRunner().invoke(app, base + ["--subject", "Anna", "--prompt", "Tom Baker is", "--layer", "1"])
    assert res.exit_code == 2 and "field 'subject'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, base + ["--subject", "Tom", "--prompt", "Tom is", "--layer", "9"])
    assert res.exit_code == 2 and "out of range" in res.output
    res = CliRunner().invoke(app, base + ["--subject", "Tom", "--prompt", "Tom is", "--layer", "1", "--method", "memitt"])
    assert res.exit_code == 2 and "Did you mean 'memit'" in res.output


def test_ls_lists_the_methods():
    res = CliRunner().invoke(app, ["ls"], terminal_width=200)
    assert res.exit_code == 0
    assert "methods: emmet, memit, r-rome, rome" in res.output
