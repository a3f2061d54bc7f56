"""Tiny GGUF files written in-process with the `gguf` package (no download), from a tiny transformers model and
the tiny byte-level BPE tokenizer: the layout llama.cpp's converter writes (its tensor names, Q/K rows permuted
for LLaMA, Gemma norms stored as 1 + w, no output.weight when the embeddings are tied) and the tokenizer
metadata transformers needs to rebuild the tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

ARCH = {"llama": "LLAMA", "gemma3_text": "GEMMA3"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for LLaMA's Q and K projections (rotary halves interleaved per head)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def sentencepiece_vocab(texts: list[str]) -> list[str]:
    """A SentencePiece-style vocabulary ("\u2581" marks a word start) covering `texts`: Gemma's special tokens,
    every character, and every prefix of every word except whole words ending in "z" (so that the subject
    "Maria Lopez" ends in the token "z", as with the byte-level tokenizer). Merges are implied by the order."""
    words = {"\u2581" + w for t in texts for w in t.split()}
    chars = sorted({c for t in texts for c in t.replace(" ", "\u2581")})
    prefixes = sorted({w[:n] for w in words for n in range(2, len(w) + 1) if not w[:n].endswith("z")},
                      key=lambda p: (len(p), p))
    return ["<pad>", "<eos>", "<bos>", "<unk>"] + chars + prefixes


def write_tiny_gguf(path: Path, model, tok, quantise: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Write `model` (model_type llama or gemma3_text) and its tokenizer to the GGUF file `path`: `tok` is a
    byte-level BPE tokenizer (written as GGUF "gpt2") or a sentencepiece_vocab() list (written as GGUF "llama",
    the SentencePiece type Gemma files use). Parameters named in `quantise` are stored as Q8_0. Returns the state
    dict a faithful loader must give back (the Q8_0 ones as their dequantised values)."""
    import gguf
    from gguf.quants import dequantize, quantize

    cfg = model.config
    arch = getattr(gguf.MODEL_ARCH, ARCH[cfg.model_type])
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name("tiny")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters
    w.add_rope_freq_base(float(rope["rope_theta"] if "rope_theta" in rope else rope["full_attention"]["rope_theta"]))
    w.add_vocab_size(cfg.vocab_size)
    head_dim = cfg.head_dim
    if cfg.model_type == "llama":
        w.add_rope_dimension_count(head_dim)
    else:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(cfg.sliding_window)
    if isinstance(tok, list):
        _add_sentencepiece(w, tok)
    else:
        _add_byte_level(w, tok, cfg.vocab_size)

    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    tied = cfg.tie_word_embeddings
    expected = {}
    for key, value in model.state_dict().items():
        if tied and key == "lm_head.weight":
            continue
        a = value.detach().float().numpy().copy()
        if cfg.model_type == "llama" and key.endswith("q_proj.weight"):
            a = _permute(a, cfg.num_attention_heads)
        if cfg.model_type == "llama" and key.endswith("k_proj.weight"):
            a = _permute(a, cfg.num_key_value_heads)
        stored = a + 1 if cfg.model_type == "gemma3_text" and key.endswith("norm.weight") else a
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        assert name is not None, key
        if key in quantise:
            q = quantize(stored, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            expected[key] = torch.from_numpy(dequantize(q, gguf.GGMLQuantizationType.Q8_0)).reshape(value.shape)
        else:
            w.add_tensor(name, np.ascontiguousarray(stored))
            expected[key] = value.detach().float().clone()
    if tied:
        expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def _add_sentencepiece(w, tokens: list[str]) -> None:
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([3, 3, 3, 2] + [1] * (len(tokens) - 4))  # control, control, control, unknown, normal...
    w.add_pad_token_id(0)
    w.add_eos_token_id(1)
    w.add_bos_token_id(2)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)


def _add_byte_level(w, tok, vocab_size: int) -> None:
    """A byte-level BPE vocabulary ("gpt2" in GGUF terms): tokens by id, merges, control tokens, special ids."""
    spec = json.loads(tok.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * vocab_size
    for token, i in vocab.items():
        tokens[i] = token
    for added in spec["added_tokens"]:
        tokens[added["id"]] = added["content"]
    special = {a["id"] for a in spec["added_tokens"] if a["special"]}
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in special else 1 for i in range(vocab_size)])
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_unk_token_id(tok.unk_token_id)
    w.add_add_bos_token(tok("a")["input_ids"][0] == tok.bos_token_id)
