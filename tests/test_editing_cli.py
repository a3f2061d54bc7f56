"""`goldenlayers edit` on a tiny model saved to a temporary folder, and `goldenlayers ls` listing the methods."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from cli_helpers import flat
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
    assert "r-rome at layer(s) [1]" in flat(result)
    assert float(lines["update norm"].split()[0]) > 0


def test_cli_edit_bad_input_is_one_clear_line(saved_model):
    base = ["edit", "--model", saved_model, "--device", "cpu", "--target", "Paris", "--set", "context_templates=[]"]
    res = CliRunner().invoke(app, base + ["--subject", "Anna", "--prompt", "Tom Baker is", "--layer", "1"])
    assert res.exit_code == 2 and "field 'subject'" in flat(res) and "Traceback" not in res.output
    res = CliRunner().invoke(app, base + ["--subject", "Tom", "--prompt", "Tom is", "--layer", "9"])
    assert res.exit_code == 2 and "out of range" in flat(res)
    res = CliRunner().invoke(app, base + ["--subject", "Tom", "--prompt", "Tom is", "--layer", "1", "--method", "memitt"])
    assert res.exit_code == 2 and "did you mean 'memit'" in flat(res)


def test_cli_edit_with_statistics_collects_c_once_from_the_world_or_asks_for_a_source(saved_model, tmp_path,
                                                                                       monkeypatch):
    """Settings that use C (a quality preset, or mom2_adjustment=true): on an embedded default model C is collected
    from its own world (and read from the cache the second time); a model without a world asks for --stats."""
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path / "cache"))
    args = ["edit", "--model", "default-gpt2", "--subject", "Tom Baker", "--prompt", "Tom Baker works as a",
            "--target", "pilot", "--layer", "2", "--device", "cpu", "--preset", "default-gpt2-quality",
            "--stats-tokens", "3000", "--set", "v_num_grad_steps=5", "--set", "context_templates=[]"]
    first = CliRunner().invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "(C: stats)" in flat(first)
    files = list((tmp_path / "cache" / "key_stats").rglob("layer002-tok3000-*.safetensors"))
    assert len(files) == 1 and "models_default-gpt2-" in files[0].parent.name  # the source: the model's own world
    stamp = files[0].stat().st_mtime_ns
    again = CliRunner().invoke(app, args, terminal_width=200)
    assert again.exit_code == 0, again.output
    assert files[0].stat().st_mtime_ns == stamp  # read from the cache, not collected again

    res = CliRunner().invoke(app, ["edit", "--model", saved_model, "--device", "cpu", "--target", "Paris",
                                   "--subject", "Tom", "--prompt", "Tom is", "--layer", "1",
                                   "--set", "mom2_adjustment=true"])
    assert res.exit_code == 2 and "--stats SOURCE" in flat(res) and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["edit", "--model", saved_model, "--device", "cpu", "--target", "Paris",
                                   "--subject", "Tom", "--prompt", "Tom is", "--layer", "1", "--preset", "nope"])
    assert res.exit_code == 2 and "unknown preset 'nope'" in flat(res)
    res = CliRunner().invoke(app, ["edit", "--model", saved_model, "--device", "cpu", "--target", "Paris",
                                   "--subject", "Tom", "--prompt", "Tom is", "--layer", "1",
                                   "--set", "mom2_adjustment=true", "--stats", str(tmp_path / "no-such-texts")])
    assert res.exit_code == 2 and "unknown text source" in flat(res) and "Traceback" not in res.output


def test_ls_lists_the_methods():
    res = CliRunner().invoke(app, ["ls"], terminal_width=200)
    assert res.exit_code == 0
    assert "methods: alphaedit, emmet, memit, r-rome, rome" in flat(res)
