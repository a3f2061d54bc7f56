"""The `train-world` recipe: small causal LMs trained from scratch on the synthetic world (embedded default).

Steps: build the world from its config; train a byte-level BPE tokenizer on its training corpus; build a
GPT-2- or LLaMA-architecture model (>= 8 layers so that layer choice matters); train it with AdamW (seeded,
warm-up + cosine schedule, loss on every non-pad token) on the pre-tokenised corpus held on the device, checking
greedy recall of the world's facts on a fixed sample every `eval_every` steps, and stop once the full recall
reaches `target_recall`; save safetensors + tokenizer + world.json + training.json (command, seed, steps, recall
per relation, seconds, device, versions). The same code runs on a CUDA GPU for larger worlds and deeper models.
"""

from __future__ import annotations

import json
import math
import platform
import random
import sys
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from goldenlayers.datasets.synthetic.recall import (
    encode_queries,
    measure_recall,
    recall_by_relation,
    recall_hits,
)
from goldenlayers.datasets.synthetic.tokenizer import train_tokenizer
from goldenlayers.datasets.synthetic.world import World

MAX_POSITIONS = 64  # longest world sentence is ~25 tokens


class TrainSettings(BaseModel):
    """Model shape and optimisation of one train-world run (defaults: the shipped embedded models)."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["gpt2", "llama"] = "gpt2"
    n_layers: int = Field(8, ge=1)
    d_model: int = Field(128, ge=8)
    d_ff: int | None = Field(None, ge=8, description="MLP width (default 4 * d_model)")
    heads: int = Field(4, ge=1)
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary trained on the world's corpus")
    batch_size: int = Field(256, ge=1, description="sentences per step")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: int = Field(200, ge=1)
    max_steps: int = Field(20000, ge=1)
    eval_every: int = Field(500, ge=1)
    eval_sample: int = Field(4096, ge=1, description="queries in the quick recall check; full check when reached")
    target_recall: float = Field(0.99, gt=0, le=1)
    seed: int = 0
    device: str = "auto"
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU); weights stay float32")


def build_model(s: TrainSettings, tok):
    """A freshly initialised (seeded) GPT-2- or LLaMA-architecture causal LM sized by `s`, vocabulary of `tok`."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    d_ff = s.d_ff or 4 * s.d_model
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if s.arch == "gpt2":
        cfg = GPT2Config(vocab_size=len(tok), n_positions=MAX_POSITIONS, n_embd=s.d_model, n_layer=s.n_layers,
                         n_head=s.heads, n_inner=d_ff, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids)
    else:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=s.d_model, intermediate_size=d_ff,
                          num_hidden_layers=s.n_layers, num_attention_heads=s.heads, num_key_value_heads=s.heads,
                          max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False, **ids)
    torch.manual_seed(s.seed)
    return AutoModelForCausalLM.from_config(cfg)


def pretokenise(tok, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text + EOS, right-padded: input_ids, attention_mask (N, T) on `device` (done once per run)."""
    enc = [e + [tok.eos_token_id] for e in tok(texts)["input_ids"]]
    T = max(len(e) for e in enc)
    if T > MAX_POSITIONS:
        raise ValueError(f"a training sentence has {T} tokens, more than the model's {MAX_POSITIONS} positions")
    ids = torch.full((len(enc), T), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), T), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids.to(device), mask.to(device)


def resolve_device(device: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def train_world_model(arch: Literal["gpt2", "llama"], world: World, out_dir: str | Path, n_layers: int = 8,
                      d_model: int = 128, device: str = "auto", max_steps: int = 20000, target_recall: float = 0.99,
                      seed: int = 0, progress: bool = True, command: str | None = None, **more) -> dict:
    """Train one model on `world` and save it to `out_dir`; returns the training report (also training.json).

    `more` sets any other TrainSettings field (d_ff, heads, batch_size, lr, eval_every, ...). Stops as soon as
    the full greedy recall (all relations, all templates, derived facts) reaches `target_recall`.
    """
    from tqdm import tqdm

    s = TrainSettings(arch=arch, n_layers=n_layers, d_model=d_model, device=device, max_steps=max_steps,
                      target_recall=target_recall, seed=seed, **more)
    dev = resolve_device(s.device)
    t0 = time.time()
    corpus = world.training_corpus()
    tok = train_tokenizer(corpus, s.vocab_size, add_bos=s.arch == "llama", max_length=MAX_POSITIONS)
    model = build_model(s, tok).to(dev)
    ids, mask = pretokenise(tok, corpus, dev)
    queries = world.recall_queries()
    sample = random.Random(s.seed).sample(queries, min(s.eval_sample, len(queries)))
    sample_batches = encode_queries(tok, sample, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.98),
                            fused=dev.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / s.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(k, s.max_steps) / s.max_steps)))
    gen = torch.Generator(device=dev).manual_seed(s.seed)
    history, recall, step = [], {}, 0
    bar = tqdm(total=s.max_steps, desc=f"train-world {s.arch}", disable=not progress)
    for step in range(1, s.max_steps + 1):
        model.train()
        idx = torch.randint(0, ids.shape[0], (s.batch_size,), device=dev, generator=gen)
        x, m = ids[idx], mask[idx]  # (batch_size, T), no host sync
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s.bf16 and dev.type == "cuda"):
            # Right padding + causal attention: real tokens never see the pads, so no mask is needed.
            loss = model(input_ids=x, labels=x.masked_fill(m == 0, -100)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        bar.update(1)
        if step % s.eval_every == 0 or step == s.max_steps:
            model.eval()
            quick = recall_by_relation(sample, recall_hits(model, sample_batches))["all"]
            history.append({"step": step, "loss": round(loss.item(), 4), "sample_recall": quick,
                            "seconds": round(time.time() - t0, 1)})
            bar.set_postfix(loss=f"{loss.item():.3f}", recall=f"{quick:.3f}")
            if quick >= s.target_recall:
                recall = measure_recall(model, tok, world)
                if recall["all"] >= s.target_recall:
                    break
    bar.close()
    model.eval()
    if not recall or recall["all"] < s.target_recall:
        recall = measure_recall(model, tok, world)
    return save_trained(model, tok, world, out_dir, s, {
        "command": command or " ".join(sys.argv), "seed": s.seed, "steps": step,
        "seconds": round(time.time() - t0, 1), "reached_target": recall["all"] >= s.target_recall,
        "recall": recall, "history": history, "device": _device_name(dev), "torch": torch.__version__,
        "transformers": _version("transformers"), "parameters": sum(p.numel() for p in model.parameters()),
    })


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def save_trained(model, tok, world: World, out_dir: str | Path, s: TrainSettings, report: dict) -> dict:
    """Write safetensors weights (float32), tokenizer, world.json and training.json into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    for f in out.glob("*.safetensors"):  # transformers writes weights owner-only; shipped files must be readable
        f.chmod(0o644)
    world.save(out / "world.json")
    report = {"settings": s.model_dump(), "world": world.config.model_dump(), **report}
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
