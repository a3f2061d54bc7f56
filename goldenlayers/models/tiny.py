"""Tiny random-initialised models of every covered architecture, built in-process (no download).

Used by the tests and benchmarks to prove the real-model path (same classes as GPT-2 XL, LLaMA-2,
Gemma-3, ...) without weights. `tiny_tokenizer` trains a small byte-level BPE on a fixed text so that
offsets, BOS handling and padding behave like a real fast tokenizer.
"""

from __future__ import annotations

import torch

TINY_ARCHITECTURES = (
    "gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3",
    "gemma", "gemma2", "gemma3_text", "gemma3", "phi3", "opt",
)

_TEXT = (
    "Maria Lopez was born in Paris. Tom Baker works for Acme. The capital of France is Paris. "
    "Anna Smith plays the violin. Lionel Messi plays soccer. Danielle Darrieux speaks French. "
    "The Eiffel Tower is in Paris, which is in France. John Smith is a lawyer by profession. "
)


def tiny_tokenizer(vocab_size: int = 300, add_bos: bool = False):
    """A fast byte-level BPE tokenizer trained on a short fixed text; `add_bos` mimics LLaMA/Gemma."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<bos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator([_TEXT] * 4, trainer=trainer)
    if add_bos:
        bos = tk.token_to_id("<bos>")
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=True)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<bos>", pad_token="<pad>", unk_token="<|endoftext|>"
    )
    return tok


def tiny_config(model_type: str, n_layers: int = 4, d_model: int = 32, d_ff: int = 64, vocab_size: int = 300,
                n_heads: int = 4):
    """A transformers config of `model_type` with tiny sizes (covering every TINY_ARCHITECTURES entry)."""
    from transformers import AutoConfig

    head_dim = d_model // n_heads
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=0, pad_token_id=2)
    llama_like = dict(
        hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        num_key_value_heads=n_heads, max_position_embeddings=128, head_dim=head_dim, **common,
    )
    if model_type == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=d_model, n_inner=d_ff, n_layer=n_layers, n_head=n_heads,
                                    n_positions=128, **common)
    if model_type == "gptj":
        return AutoConfig.for_model("gptj", n_embd=d_model, n_inner=d_ff, n_layer=n_layers, n_head=n_heads,
                                    n_positions=128, rotary_dim=head_dim, **common)
    if model_type == "gpt_neox":
        return AutoConfig.for_model("gpt_neox", hidden_size=d_model, intermediate_size=d_ff,
                                    num_hidden_layers=n_layers, num_attention_heads=n_heads,
                                    max_position_embeddings=128, **common)
    if model_type == "opt":
        return AutoConfig.for_model("opt", hidden_size=d_model, ffn_dim=d_ff, num_hidden_layers=n_layers,
                                    num_attention_heads=n_heads, max_position_embeddings=128,
                                    word_embed_proj_dim=d_model, **common)
    if model_type in ("gemma2", "gemma3_text"):
        return AutoConfig.for_model(model_type, sliding_window=16, query_pre_attn_scalar=head_dim, **llama_like)
    if model_type == "gemma3":
        text = tiny_config("gemma3_text", n_layers, d_model, d_ff, vocab_size, n_heads).to_dict()
        vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=28, patch_size=14)
        return AutoConfig.for_model("gemma3", text_config=text, vision_config=vision, mm_tokens_per_image=4,
                                    image_token_index=vocab_size - 1, boi_token_index=vocab_size - 2,
                                    eoi_token_index=vocab_size - 3, **common)
    if model_type == "phi3":
        return AutoConfig.for_model("phi3", pad_token_id=2, **{k: v for k, v in llama_like.items() if k != "pad_token_id"})
    return AutoConfig.for_model(model_type, **llama_like)


def tiny_model(model_type: str, n_layers: int = 4, d_model: int = 32, d_ff: int = 64, vocab_size: int = 300,
               seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random-initialised causal LM of `model_type` (eval mode, grads off), deterministic for a seed."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(model_type, n_layers, d_model, d_ff, vocab_size)
    torch.manual_seed(seed)
    if model_type == "gemma3":
        from transformers import Gemma3ForConditionalGeneration

        model = Gemma3ForConditionalGeneration(cfg)
    else:
        model = AutoModelForCausalLM.from_config(cfg)
    model.to(dtype).eval().requires_grad_(False)
    return model
