"""The world tokenizer: a byte-level BPE trained on the world's training corpus (train-world recipe, step 1).

Wrapped as a `PreTrainedTokenizerFast` (offsets work, so fact tokens are found the same way as for GPT-2 or
LLaMA). `add_bos=True` prepends a BOS token to every encoding, as LLaMA and Gemma tokenizers do, so the
default LLaMA-architecture model exercises the BOS code paths.
"""

from __future__ import annotations

SPECIALS = ["<|endoftext|>", "<s>", "<pad>"]


def train_tokenizer(texts: list[str], vocab_size: int = 2048, add_bos: bool = False, max_length: int = 64):
    """A PreTrainedTokenizerFast (eos "<|endoftext|>", bos "<s>", pad "<pad>") trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer=trainer)
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                          special_tokens=[("<s>", tk.token_to_id("<s>"))])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<s>",
                                   pad_token="<pad>", unk_token="<|endoftext|>", model_max_length=max_length)
