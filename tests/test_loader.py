"""load_model on tiny models saved to disk: safetensors round trip in float32 and bfloat16 (logits equal the
in-memory model's), pad token, and the clear refusals (pickle-only folder, unknown dtype, unknown architecture)."""

import json

import pytest
import torch

from goldenlayers.models import UnknownArchitectureError, load_model
from goldenlayers.models.loader import resolve_dtype
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.text import encode_prompts

PROMPTS = ["Maria Lopez was born in", "Tom Baker works for"]


def save(tmp_path, model_type, with_pad=True):
    model = tiny_model(model_type)
    tok = tiny_tokenizer(add_bos=model_type == "llama")
    if not with_pad:
        tok.pad_token = None  # like LLaMA's tokenizer: no pad token of its own
    folder = tmp_path / model_type
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, folder


def logits(model, tok):
    b = encode_prompts(tok, PROMPTS)
    with torch.no_grad():
        return model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_round_trip_logits_equal(tmp_path, model_type, dtype):
    model, folder = save(tmp_path, model_type)
    assert any(folder.glob("*.safetensors"))
    loaded = load_model(folder, dtype=dtype, device="cpu")
    m, tok, adapter = loaded
    assert loaded.name == str(folder) and adapter.model_type == model_type
    assert next(m.parameters()).dtype == resolve_dtype(dtype) and not m.training
    assert not any(p.requires_grad for p in m.parameters())
    for p in model.parameters():  # cast the weights only: like from_pretrained, keep RoPE buffers in float32
        p.data = p.data.to(resolve_dtype(dtype))
    expected = logits(model, tok)
    got = logits(m, tok)
    assert got.dtype == resolve_dtype(dtype)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.float().std() > 0
    assert torch.equal(adapter.weight(m, 1), adapter.weight(model, 1))


def test_pad_token_is_set(tmp_path):
    _, folder = save(tmp_path, "llama", with_pad=False)
    tok = load_model(folder, device="cpu").tokenizer
    assert tok.pad_token == tok.eos_token == "<|endoftext|>" and tok.pad_token_id == 0
    _, folder = save(tmp_path, "gpt2", with_pad=True)
    assert load_model(folder, device="cpu").tokenizer.pad_token == "<pad>"  # an existing pad token is kept


def test_pickle_only_folder_is_refused(tmp_path):
    model = tiny_model("gpt2")
    folder = tmp_path / "bin_only"
    model.config.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors only"):
        load_model(folder, device="cpu")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(tmp_path, device="cpu")


def test_unknown_dtype():
    with pytest.raises(ValueError, match=r"unknown dtype 'float8'.*bfloat16"):
        load_model("unused", dtype="float8")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("auto") is None


def test_unknown_model_type_in_saved_config(tmp_path):
    _, folder = save(tmp_path, "gpt2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "my_new_lm"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownArchitectureError, match=r"(?s)unknown architecture .my_new_lm.*register_adapter"):
        load_model(folder, device="cpu")
