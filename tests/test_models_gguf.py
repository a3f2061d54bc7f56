"""GGUF models (goldenlayers.models.gguf, docs/models.md): tiny llama and gemma3 GGUF files written in-process load
with the weights that were written (F32 exactly, Q8_0 as its dequantised values), are converted once into the
cache keyed by sha256 and then load from the safetensors copy, pass the adapter checks, and fail in one line
without the `gguf` extra."""

import importlib.util
import json

import pytest
import test_adapters as adapter_checks
import torch
from gguf_helpers import sentencepiece_vocab, write_tiny_gguf
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.models import gguf as gguf_mod
from goldenlayers.models.gguf import MissingExtraError, file_sha256, gguf_cache_dir
from goldenlayers.models.loader import load_model
from goldenlayers.models.tiny import _TEXT, tiny_model, tiny_tokenizer

DOWN1 = "model.layers.1.mlp.down_proj.weight"


def tiny_gguf(folder, model_type):
    """(GGUF path, expected state dict, original model): llama with the byte-level BPE tokenizer, untied head and
    one Q8_0 weight; gemma3_text with a SentencePiece vocabulary and tied embeddings."""
    folder.mkdir(parents=True, exist_ok=True)
    if model_type == "llama":
        tok = tiny_tokenizer(add_bos=True)
        model = tiny_model("llama")
    else:
        tok = sentencepiece_vocab([_TEXT] + adapter_checks.PROMPTS)
        model = tiny_model("gemma3_text", vocab_size=len(tok))
    path = folder / f"tiny-{model_type}.gguf"
    expected = write_tiny_gguf(path, model, tok, quantise=(DOWN1,) if model_type == "llama" else ())
    return path, expected, model


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_gguf_loads_the_written_weights_and_converts_once(tmp_path, cache, monkeypatch, model_type):
    path, expected, model = tiny_gguf(tmp_path / "src", model_type)
    lm = load_model(path, device="cpu")
    sd = lm.model.state_dict()
    assert lm.model.config.model_type == model_type and set(sd) == set(expected)
    for key, value in expected.items():
        assert torch.equal(sd[key], value), key
    assert lm.model.config.tie_word_embeddings == (model_type == "gemma3_text")
    if model_type == "llama":  # the Q8_0 weight came back dequantised, not as the original float values
        assert not torch.equal(sd[DOWN1], model.state_dict()[DOWN1])
        torch.testing.assert_close(sd[DOWN1], model.state_dict()[DOWN1], rtol=0, atol=0.02)
    folder = gguf_cache_dir(file_sha256(path))
    source = json.loads((folder / "source.json").read_text())
    assert source["sha256"] == file_sha256(path) and source["gguf"] == path.name
    assert (folder / "model.safetensors").is_file() and not list(folder.parent.glob(".tmp-*"))

    def no_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf_mod, "convert_gguf", no_conversion)
    again = load_model(path.parent, dtype="bfloat16", device="cpu")  # the folder holding the file, another dtype
    for key, value in expected.items():
        assert torch.equal(again.model.state_dict()[key], value.to(torch.bfloat16)), key


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_gguf_model_passes_the_adapter_checks(tmp_path, cache, model_type):
    path, expected, model = tiny_gguf(tmp_path / "src", model_type)
    lm = load_model(path, dtype=torch.float64, device="cpu")
    tok = lm.tokenizer
    ids = tok(adapter_checks.PROMPTS[0])["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(ids)[-1].lstrip("\u0120\u2581") == "in"
    if model_type == "llama":  # same tokenizer, config and (written) weights as the original: the same logits
        original = tiny_tokenizer(add_bos=True)
        assert tok(adapter_checks.PROMPTS)["input_ids"] == original(adapter_checks.PROMPTS)["input_ids"]
        model.load_state_dict(expected)
        x = torch.tensor([ids])
        with torch.no_grad():
            torch.testing.assert_close(lm.model(x).logits.float(), model(x).logits, rtol=1e-5, atol=1e-5)
    adapter_checks.test_modules_exist_and_are_the_right_ones((model_type, lm.model), tok)
    adapter_checks.test_value_is_weight_times_key((model_type, lm.model), lambda _: tok)
    adapter_checks.test_weight_edit_through_storage_orientation((model_type, lm.model), tok)


def test_a_failed_conversion_leaves_no_half_copy(tmp_path, cache, monkeypatch):
    path, _, _ = tiny_gguf(tmp_path / "src", "llama")
    import safetensors.torch

    def disk_full(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    with pytest.raises(OSError, match="disk full"):
        load_model(path, device="cpu")
    assert list((cache / "models" / "gguf").iterdir()) == []


def test_without_the_gguf_extra_the_error_names_it(tmp_path, cache, monkeypatch):
    path, _, _ = tiny_gguf(tmp_path / "src", "llama")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"needs gguf: pip install 'goldenlayers\[gguf\]'"):
        load_model(path)
    res = CliRunner().invoke(app, ["edit", "--model", str(path), "--subject", "Paris", "--prompt", "Paris is",
                                   "--target", "x"])
    first, _, rest = res.output.partition("\n")
    assert first == f"model: {path}"  # every model command names its model first
    text = " ".join(rest.split())  # one message, however the console wrapped it
    assert res.exit_code == 2 and "Traceback" not in res.output and text.count("error:") == 1
    assert text.startswith("error: --model") and text.endswith("pip install 'goldenlayers[gguf]'")


def test_several_gguf_files_in_a_folder_are_named(tmp_path, cache):
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "b.gguf").write_bytes(b"y")
    with pytest.raises(ValueError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        load_model(tmp_path)


def test_dry_run_reads_a_gguf_models_layers_from_its_metadata(tmp_path, cache):
    """`run --dry-run` takes a GGUF file as a model (its layer count from the file's metadata, nothing converted)
    and checks brute-force layers against it."""
    import yaml

    path, _, model = tiny_gguf(tmp_path / "m", "llama")
    n = model.config.num_hidden_layers
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(
        name="g", models=[dict(name="tiny", path=str(path))], datasets=[dict(name="zsre", file="none.json")],
        methods=[dict(name="r-rome")], selectors=dict(bruteforce=dict(layers=[0, n])),
        data_dir=str(tmp_path), output_dir=str(tmp_path / "runs"))))
    res = CliRunner().invoke(app, ["run", str(cfg), "--dry-run"], terminal_width=300)
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"(GGUF, {n} layers; converted when the run loads it)" in out
    assert f"selectors.bruteforce.layers: [{n}] outside tiny's layers 0..{n - 1}" in out
    assert not list(cache.rglob("*.safetensors"))  # nothing was converted
    import shutil

    shutil.copy(path, path.with_name("second.gguf"))  # a folder of two GGUF files: which one is meant?
    cfg.write_text(cfg.read_text().replace(str(path), str(path.parent)).replace("name: g\n", "name: g2\n"))
    res = CliRunner().invoke(app, ["run", str(cfg), "--dry-run"], terminal_width=300)
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "holds several GGUF files (second.gguf, tiny-llama.gguf); pass one of them" in out
