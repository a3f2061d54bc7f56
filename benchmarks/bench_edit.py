"""Seconds per R-ROME edit (v* optimisation and solve apart), peak GPU memory, and batched v* throughput.

    python benchmarks/bench_edit.py --shape gpt2-xl --device cuda            # docs/benchmarks.md "Targets" anchor shape
    python benchmarks/bench_edit.py --shape llama-2-7b --device cuda         # bf16
    python benchmarks/bench_edit.py --model path/to/saved/model --layer 3    # any saved HF model
    python benchmarks/bench_edit.py --shape gpt2 --edits 3 --batch 8         # 12 x 768 GPT-2, CPU-sized
    python benchmarks/bench_edit.py --shape tiny --edits 3 --batch 4         # CPU smoke run

Settings match EasyEdit's gpt2-xl ROME/R-ROME file (layer 17, 20 v* steps, lr 0.5, weight decay 0.5, clamp 4,
KL 0.0625, 21 context templates = "{}" + 10 x 5 tokens + 10 x 10 tokens, C = I, fp32). Random-init shapes
(docs/benchmarks.md "Targets"): GPT-2 XL = 48 layers, d_model 1600, vocabulary 2048; LLaMA-2-7B = 32 layers, d 4096, d_ff 11008,
bf16. The tokenizer is a byte-level BPE with 2048 entries trained on seeded Faker text, so that generated
templates and prompts have word-like tokens. Printed: the median over `--edits` edits of the per-edit time
(after one warm-up edit, which also warms the CUDA-graph side stream up), the same with the below-the-layer replay
switched off (ratio = the replay's speed-up), the same with the suffix replay forced on and off
(editing.accel.suffix: later v* steps compute only the positions from the fact token on; the default "auto" uses
it on CPUs and wherever graphs are used), on a GPU the same without CUDA graphs (editing.accel.graphs: every v*
step replayed as one graph),
the ratio to EasyEdit's R-ROME anchor (2.46 s on one H100), peak GPU memory, and cases per second of v*
optimisation one at a time vs `--batch` together (edit_each), the brute-force sweep's use case.
The execution options are set as a user sets them, through GOLDENLAYERS_ACCEL (editing.accel.options).
benchmarks/bench_trees.py runs this script from two source trees alternately (e.g. before and after a change).
Results and commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from goldenlayers.cases import EditCase
from goldenlayers.editing import edit, edit_each
from goldenlayers.editing.accel import ENV, ExecOptions
from goldenlayers.editing.accel import runner as steps
from goldenlayers.editing.accel.replay import FrozenPrefix

EASYEDIT_R_ROME_S = 2.46  # docs/benchmarks.md "Targets": EasyEdit R-ROME, GPT-2 XL shape, one H100
SETTINGS = dict(v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4.0, kl_factor=0.0625,
                context_templates=[(5, 10), (10, 10)], mom2_adjustment=False)


def bench_tokenizer(vocab_size: int = 2048):
    from faker import Faker
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    fake = Faker()
    Faker.seed(0)
    text = [fake.sentence(nb_words=12) for _ in range(4000)] + [fake.name() for _ in range(2000)]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=True)
    tk.train_from_iterator(text, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                     show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_model(shape: str, device: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    if shape == "gpt2-xl":
        cfg, dtype = AutoConfig.for_model("gpt2", n_layer=48, n_embd=1600, n_head=25, vocab_size=2048), torch.float32
    elif shape == "llama-2-7b":
        cfg = AutoConfig.for_model("llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
        dtype = torch.bfloat16
    elif shape == "gpt2":
        cfg, dtype = AutoConfig.for_model("gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=2048), torch.float32
    else:
        cfg, dtype = AutoConfig.for_model("gpt2", n_layer=4, n_embd=64, n_head=4, vocab_size=2048), torch.float32
    cfg.bos_token_id = cfg.eos_token_id = 0
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval().requires_grad_(False), bench_tokenizer()


def make_cases(n: int) -> list[EditCase]:
    from faker import Faker

    fake = Faker()
    Faker.seed(1)
    rel = ["was born in", "works for", "is a citizen of", "speaks", "plays the"]
    return [EditCase(case_id=f"b{i}", dataset="bench", subject=(s := fake.name()), prompt=f"{s} {rel[i % 5]}",
                     target_new=fake.city()) for i in range(n)]


@contextmanager
def accel(value: str) -> Iterator[None]:
    """GOLDENLAYERS_ACCEL=value inside (e.g. "graphs=off"), as it was outside."""
    before = os.environ.get(ENV)
    os.environ[ENV] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = before


def _timed_edits(model, tok, cases, layer, settings) -> list[tuple[float, float]]:
    out = []
    for case in cases:
        res = edit(model, tok, case, method="r-rome", layer=layer, hparams=settings)
        out.append((res.seconds["values"], res.seconds["solve"]))
        res.restore()
    return out


class _NoReplay(FrozenPrefix):
    def __init__(self, blocks, upto):
        super().__init__(blocks, 0)


def _profile(model, tok, cases, layer, settings, cuda: bool) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof, accel("graphs=off"):  # eager steps: a replay would hide its kernels
        _timed_edits(model, tok, cases, layer, settings)
    key = "cuda_time_total" if cuda else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=["gpt2-xl", "llama-2-7b", "gpt2", "tiny"], default="gpt2-xl")
    ap.add_argument("--model", help="a saved model folder instead of a random-init shape")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layer", type=int)
    ap.add_argument("--edits", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (faster on Ampere+, other numerics "
                                                        "than EasyEdit's fp32)")
    ap.add_argument("--cudnn-attention", action="store_true",
                    help="let attention use cuDNN's kernels during v* (the editor avoids them: planned per shape)")
    ap.add_argument("--profile", action="store_true", help="print the top GPU/CPU ops of one edit "
                                                               "(torch.profiler; v* steps run without CUDA graphs)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    if args.cudnn_attention:
        steps.without_cudnn_attention = lambda enabled: nullcontext()
    if args.model:
        from goldenlayers.models.loader import load_model

        lm = load_model(args.model, device=args.device)
        model, tok, label = lm.model, lm.tokenizer, args.model
    else:
        model, tok = build_model(args.shape, args.device)
        label = f"random-init {args.shape}"
    layer = args.layer if args.layer is not None else {"gpt2-xl": 17, "llama-2-7b": 5, "gpt2": 4}.get(args.shape, 1)
    settings = dict(SETTINGS, v_num_grad_steps=args.steps, early_stop_loss=0.0)  # always run every step
    cases = make_cases(max(args.edits + 1, args.batch))
    cuda = args.device.startswith("cuda")
    print(f"{label} on {args.device}, {next(model.parameters()).dtype}{' (TF32 matmuls)' if args.tf32 else ''}, "
          f"R-ROME at layer {layer}, {args.steps} steps, 21 templates, C = I")
    _timed_edits(model, tok, cases[:1], layer, settings)  # warm-up: templates, kernels
    if args.profile:
        _profile(model, tok, cases[:1], layer, settings, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = _timed_edits(model, tok, cases[1: args.edits + 1], layer, settings)
    per_edit = statistics.median(v + s for v, s in times)
    print(f"per edit: {per_edit:.3f} s (v* {statistics.median(v for v, _ in times):.3f} s, "
          f"solve {statistics.median(s for _, s in times):.4f} s), median of {len(times)}")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        if args.shape == "gpt2-xl" and not args.model:
            print(f"vs EasyEdit R-ROME {EASYEDIT_R_ROME_S} s: {EASYEDIT_R_ROME_S / per_edit:.2f}x faster")
    steps.FrozenPrefix = _NoReplay
    try:
        plain = statistics.median(v + s for v, s in _timed_edits(model, tok, cases[1:3], layer, settings))
    finally:
        steps.FrozenPrefix = FrozenPrefix
    print(f"without the below-the-layer replay: {plain:.3f} s per edit; replay speed-up {plain / per_edit:.2f}x")
    forced = {}
    for flag in ("on", "off"):
        with accel(f"suffix={flag}"):
            forced[flag] = statistics.median(v + s for v, s in _timed_edits(model, tok, cases[1:3], layer, settings))
    print(f"suffix replay on: {forced['on']:.3f} s per edit, off (whole rows at every step): {forced['off']:.3f} s; "
          f"speed-up {forced['off'] / forced['on']:.2f}x (the per-edit figure above uses the default, \"auto\": "
          f"{'on' if ExecOptions().plan(model, args.steps).suffix else 'off'} here)")
    if cuda:
        with accel("graphs=off"):
            eager = statistics.median(v + s for v, s in _timed_edits(model, tok, cases[1:3], layer, settings))
        print(f"without CUDA graphs (every v* step launched from Python): {eager:.3f} s per edit; graph speed-up "
              f"{eager / per_edit:.2f}x")
    batch = cases[: args.batch]
    for size in (1, args.batch):
        t0 = time.perf_counter()
        for res in edit_each(model, tok, batch, method="r-rome", layer=layer, hparams=settings, batch_size=size):
            res.restore()
        if cuda:
            torch.cuda.synchronize()
        rate = len(batch) / (time.perf_counter() - t0)
        if size == 1:
            single = rate
        print(f"edit_each batch_size={size}: {rate:.2f} cases/s" + (f" ({rate / single:.2f}x one at a time)"
                                                                     if size > 1 else ""))


if __name__ == "__main__":
    main()
