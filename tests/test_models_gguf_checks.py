"""GGUF conversion checks (goldenlayers.models.gguf_checks, docs/models.md "GGUF conversion checks"): the deviations
transformers versions make when converting a GGUF file are simulated on tiny GGUF files written in-process (the
transformers here converts them right), and the loader must still return the file's weights and tokenizer:
Gemma norms off by the stored 1 (corrected), a non-constant deviation (an error naming the tensor), and the two
tokenizer deviations transformers 5.17 made (eos set to the bos token; Gemma-3's vocabulary cut into single
characters, without a BOS)."""

import json

import pytest
import torch
import transformers
from test_models_gguf import tiny_gguf

from goldenlayers.models.gguf import cached_gguf_folder, file_sha256, gguf_cache_dir
from goldenlayers.models.gguf_checks import CONVERSION_VERSION, GGUFConversionError, sentencepiece_merges
from goldenlayers.models.loader import load_model

PROMPT = "Maria Lopez was born in"


def _convert_with(monkeypatch, path, model_change=None, tokenizer=None):
    """Convert `path` into the cache with transformers' GGUF loading followed by model_change(model) and with
    tokenizer(real tokenizer) in place of the tokenizer it builds from the file (the simulated deviations); the
    loads after the conversion are plain."""
    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained

    def load_model_changed(*args, **kwargs):
        model = real_model(*args, **kwargs)
        if model_change:
            with torch.no_grad():
                model_change(model)
        return model

    def load_tokenizer_changed(*args, **kwargs):
        tok = real_tok(*args, **kwargs)
        return tokenizer(tok) if tokenizer and "gguf_file" in kwargs else tok  # not the loads of the saved copy

    with monkeypatch.context() as m:
        m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load_model_changed)
        m.setattr(transformers.AutoTokenizer, "from_pretrained", load_tokenizer_changed)
        cached_gguf_folder(path, progress=False)


def _source(path):
    return json.loads((gguf_cache_dir(file_sha256(path)) / "source.json").read_text())


def test_gemma_norms_left_at_the_stored_one_plus_w_are_corrected(tmp_path, cache, monkeypatch):
    path, expected, model = tiny_gguf(tmp_path / "src", "gemma3_text")
    norms = [k for k in expected if k.endswith("norm.weight")]
    # per layer: input, post-attention, pre- and post-feedforward, q and k; and the final one
    assert len(norms) == 6 * model.config.num_hidden_layers + 1

    def skip_the_offset(model):  # the file's 1 + w kept as it is, for every norm
        for key, p in model.named_parameters():
            if key.endswith("norm.weight"):
                p += 1.0

    _convert_with(monkeypatch, path, model_change=skip_the_offset)
    sd = load_model(path, device="cpu").model.state_dict()
    for key, value in expected.items():
        assert torch.equal(sd[key], value), key
    corrected = [line for line in _source(path)["corrected"] if not line.startswith("tokenizer")]
    assert sorted(line.split(":")[0] for line in corrected) == sorted(norms)
    assert "model.norm.weight: was GGUF output_norm.weight - 1 +1, set to GGUF - 1" in corrected


def test_a_deviation_that_is_not_one_constant_is_an_error_naming_the_tensor(tmp_path, cache, monkeypatch):
    path, _, _ = tiny_gguf(tmp_path / "src", "gemma3_text")
    key = "model.layers.1.post_feedforward_layernorm.weight"

    def scramble(model):
        p = model.get_parameter(key)
        p += torch.arange(p.numel(), dtype=p.dtype)

    with pytest.raises(GGUFConversionError, match=rf"converted {key} \(GGUF blk.1.post_ffw_norm.weight\) to values "
                                                  r"that differ .* by up to \d+, not by one constant"):
        _convert_with(monkeypatch, path, model_change=scramble)
    assert list((cache / "models" / "gguf").iterdir()) == []  # nothing half-checked is kept


def _split_into_characters(tok):
    """What transformers 5.17 built from a Gemma-3 GGUF: a Unigram model over the file's tokens that cuts every
    word into characters (multi-character tokens score -1000), adds no BOS, and names the bos token as eos."""
    from tokenizers import Tokenizer, normalizers
    from tokenizers.models import Unigram

    vocab = [(t, -1000.0 if len(t) > 1 and not t.startswith("<") else 0.0)
             for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    backend = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    return transformers.TokenizersBackend(tokenizer_object=backend, bos_token="<bos>", eos_token="<bos>",
                                          unk_token="<unk>", pad_token="<pad>")


def test_a_tokenizer_that_cuts_words_into_characters_is_rebuilt_from_the_file(tmp_path, cache, monkeypatch):
    path, _, _ = tiny_gguf(tmp_path / "src", "gemma3_text")
    right = load_model(path, device="cpu").tokenizer  # the conversion of the transformers installed here
    want = right(PROMPT)["input_ids"]
    assert want[0] == right.bos_token_id == 2 and right.eos_token_id == 1
    assert right.convert_ids_to_tokens(want)[-5:] == ["\u2581Lope", "z", "\u2581was", "\u2581born", "\u2581in"]
    broken = _split_into_characters(right)
    assert broken(PROMPT)["input_ids"] == broken(PROMPT, add_special_tokens=False)["input_ids"]  # no BOS
    assert len(broken(PROMPT)["input_ids"]) == len(PROMPT)  # one token per character
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path / "cache2"))  # convert again
    _convert_with(monkeypatch, path, tokenizer=lambda tok: _split_into_characters(right))
    tok = load_model(path, device="cpu").tokenizer  # as saved in the cache
    assert tok(PROMPT)["input_ids"] == want
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (2, 1, 0, 3)
    assert _source(path)["corrected"][0].startswith("tokenizer: split ")


def test_eos_named_as_the_bos_token_is_set_from_the_file(tmp_path, cache, monkeypatch):
    path, _, _ = tiny_gguf(tmp_path / "src", "llama")  # the byte-level vocabulary, as SmolLM2's file has

    def eos_as_bos(tok):  # what transformers 5.17 built from SmolLM2's file: eos named as the bos token
        tok.eos_token = tok.bos_token
        return tok

    _convert_with(monkeypatch, path, tokenizer=eos_as_bos)
    tok = load_model(path, device="cpu").tokenizer
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0 and tok.bos_token_id != 0
    assert f"tokenizer: eos_token was {tok.bos_token!r}, set to '<|endoftext|>' (id 0)" in _source(path)["corrected"]


def test_a_copy_converted_before_the_checks_is_not_reused(tmp_path, cache):
    path, expected, _ = tiny_gguf(tmp_path / "src", "llama")
    sha = file_sha256(path)
    old = cache / "models" / "gguf" / sha  # the folder name before the checks existed
    old.mkdir(parents=True)
    (old / "source.json").write_text("{}")
    (old / "config.json").write_text("not a config")
    assert gguf_cache_dir(sha).name == f"{sha}-c{CONVERSION_VERSION}" and CONVERSION_VERSION >= 2
    sd = load_model(path, device="cpu").model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in expected.items())
    source = _source(path)
    assert source["conversion"] == CONVERSION_VERSION
    assert not [line for line in source["corrected"] if not line.startswith("tokenizer")]


def test_sentencepiece_merges_follow_the_file_order_longer_left_piece_first():
    tokens = ["<pad>", "a", "b", "c", "ab", "abc", "bc", "ab"]  # "ab" repeated: ranked by its last place
    assert sentencepiece_merges(tokens) == [("ab", "c"), ("a", "bc"), ("b", "c"), ("a", "b")]
