"""Layer-selection cost: LGA and CMA wall time against one batched forward+backward (docs/TARGETS "Layer
selection cost": LGA <= 3x a forward+backward over the proxy cases, >= 10x faster than CMA).

Usage:
    python benchmarks/bench_select.py --shape gpt2-xl --device cuda              # random-init GPT-2 XL shape
    python benchmarks/bench_select.py --shape llama-2-7b --device cuda           # bf16 LLaMA-2-7B shape
    python benchmarks/bench_select.py --model path/to/saved --cases 100          # any saved causal LM
    python benchmarks/bench_select.py --shape tiny-gpt2 --cases 20               # smoke test on a CPU

Proxy cases are synthetic (seeded Faker names, fixed relation templates, every case with a ground truth).
Baseline: the same batches (old- and new-answer sequences of `--batch-size` cases) through one forward
(logits kept from the first answer position on, as LGA does) and one backward of the summed answer NLL down
to the embedding output (no parameter gradients, like LGA): the ratio is LGA's overhead over that.
CMA is timed with the known-fact filter off (a random model knows no fact) on `--cma-cases` cases
(default: all) and its per-case time is extrapolated to all cases when fewer are run.
Brute force (`--bf-cases`, `--bf-layers`): the real sweep (goldenlayers.selection.bruteforce with the editor and
the evaluator: R-ROME under EasyEdit's gpt2-xl settings, 20 v* steps and 21 context templates, v* of a batch of
cases optimised together; rewrite scored after each edit, weights restored and checked) on a few cases at a few
layers; its seconds per (case, layer) are extrapolated to all `--cases` cases at every layer and compared with LGA
(target: LGA >= 100x faster).
Peak memory: CUDA peak allocated per phase; on CPU the process's peak resident set (whole run).
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import torch
import torch.nn.functional as F

from goldenlayers.cases import EditCase
from goldenlayers.models.adapters import get_adapter
from goldenlayers.selection import cma_scores, lga_scores
from goldenlayers.text import encode_answers

SHAPES = {
    "gpt2-xl": ("gpt2", dict(n_layer=48, n_embd=1600, n_head=25, n_inner=6400, vocab_size=2048, n_positions=1024),
                "float32"),
    "llama-2-7b": ("llama", dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008,
                                 num_attention_heads=32, num_key_value_heads=32, vocab_size=2048,
                                 max_position_embeddings=4096), "bfloat16"),
    "tiny-gpt2": ("gpt2", dict(n_layer=12, n_embd=128, n_head=4, n_inner=512, vocab_size=2048, n_positions=256),
                  "float32"),
    "tiny-llama": ("llama", dict(num_hidden_layers=12, hidden_size=128, intermediate_size=344,
                                 num_attention_heads=4, num_key_value_heads=4, vocab_size=2048,
                                 max_position_embeddings=256), "float32"),
}
TEMPLATES = [("{} was born in", "city"), ("{} works for", "company"), ("The mother tongue of {} is", "language"),
             ("{} is a citizen of", "country"), ("{} plays the", "instrument")]
VALUES = {"city": ["Paris", "Rome", "Lagos", "Lima", "Oslo"], "company": ["Acme", "Google", "Nokia", "BMW"],
          "language": ["French", "Dutch", "Hindi", "Swahili"], "country": ["France", "Peru", "Japan", "Chile"],
          "instrument": ["violin", "piano", "guitar", "cello"]}


def proxy_cases(n: int, seed: int = 0) -> list[EditCase]:
    from faker import Faker

    fake, rng = Faker(), random.Random(seed)
    Faker.seed(seed)
    cases = []
    for i in range(n):
        name = fake.name()
        template, kind = rng.choice(TEMPLATES)
        old, new = rng.sample(VALUES[kind], 2)
        cases.append(EditCase(case_id=f"p{i}", dataset="proxy", subject=name, prompt=template.format(name),
                              target_new=new, ground_truth=[old]))
    return cases


def build(args):
    if args.model:
        from goldenlayers.models import load_model

        lm = load_model(args.model, dtype=args.dtype or "float32", device=args.device)
        return lm.model, lm.tokenizer, args.model
    from transformers import AutoConfig, AutoModelForCausalLM

    from goldenlayers.models.loader import resolve_dtype
    from goldenlayers.models.tiny import tiny_tokenizer

    model_type, shape, default_dtype = SHAPES[args.shape]
    cfg = AutoConfig.for_model(model_type, bos_token_id=1, eos_token_id=0, pad_token_id=2, **shape)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=resolve_dtype(args.dtype or default_dtype))
    model.eval().requires_grad_(False)
    return model, tiny_tokenizer(add_bos=model_type == "llama"), f"random {args.shape}"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak(device: str) -> str:
    if device.startswith("cuda"):
        value = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
        return f"{value:.2f} GiB (CUDA peak allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"


def forward_backward(model, tok, cases, batch_size, device) -> None:
    """The baseline: per batch, one forward and one backward of the summed answer NLL to the embeddings."""
    embed = get_adapter(model).embed_module(model)
    handle = embed.register_forward_hook(lambda _m, _a, out: out.detach().requires_grad_())
    try:
        for i in range(0, len(cases), batch_size):
            chunk = cases[i:i + batch_size]
            enc = encode_answers(tok, [c.prompt for c in chunk] * 2,
                                 [c.ground_truth[0] for c in chunk] + [c.target_new for c in chunk], device=device)
            keep = enc.input_ids.shape[1] - int(enc.prompt_last.min())  # logits only where answers are
            with torch.enable_grad():
                logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, logits_to_keep=keep).logits
                pm = enc.predict_mask[:, -keep:][:, :-1]
                targets = enc.input_ids[:, -keep:][:, 1:][pm]
                loss = F.cross_entropy(logits[:, :-1][pm].float(), targets, reduction="sum")
                loss.backward()
    finally:
        handle.remove()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="saved model path or name (loaded with goldenlayers.models.load_model)")
    src.add_argument("--shape", choices=sorted(SHAPES), help="random-init model of a known shape")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the shape's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--cma-cases", type=int, default=None, help="CMA on this many cases, extrapolated")
    ap.add_argument("--batch-size", type=int, default=16, help="LGA cases per batch")
    ap.add_argument("--cma-batch-size", type=int, default=256, help="CMA rows per forward")
    ap.add_argument("--bf-cases", type=int, default=0, help="brute force on this many cases (0: skip it)")
    ap.add_argument("--bf-layers", default="", help="comma-separated layers of the brute-force sample "
                                                     "(default: first, middle, last)")
    args = ap.parse_args()

    model, tok, name = build(args)
    cases = proxy_cases(args.cases)
    n_layers = get_adapter(model).n_layers(model)
    n_tok = sum(len(tok(c.prompt)["input_ids"]) for c in cases) / len(cases)
    print(f"model: {name} ({n_layers} layers, {next(model.parameters()).dtype}) on {args.device}; "
          f"{len(cases)} proxy cases, mean prompt {n_tok:.1f} tokens")
    for _ in range(2):  # warm-up on full-size batches (allocator, kernels, thread pools)
        lga_scores(model, tok, cases[:args.batch_size], batch_size=args.batch_size, progress=False)
        forward_backward(model, tok, cases[:args.batch_size], args.batch_size, args.device)
    peak(args.device)
    base_s, _ = timed(lambda: forward_backward(model, tok, cases, args.batch_size, args.device), args.device)
    print(f"forward+backward baseline: {base_s:8.3f} s   peak {peak(args.device)}")
    lga_s, table = timed(lambda: lga_scores(model, tok, cases, batch_size=args.batch_size, progress=False),
                         args.device)
    print(f"LGA:                       {lga_s:8.3f} s   peak {peak(args.device)}   ratio to baseline "
          f"{lga_s / base_s:.2f}x (target <= 3x); golden estimate layer {table.pick().layer}")
    n_cma = min(args.cma_cases or len(cases), len(cases))
    cma_s, _ = timed(lambda: cma_scores(model, tok, cases[:n_cma], window=10, known_only=False,
                                        batch_size=args.cma_batch_size, progress=False), args.device)
    cma_all = cma_s * len(cases) / n_cma
    note = "" if n_cma == len(cases) else f" (measured on {n_cma} cases: {cma_s:.3f} s, extrapolated)"
    print(f"CMA (mlp, window 10):      {cma_all:8.3f} s   peak {peak(args.device)}   ratio to baseline "
          f"{cma_all / base_s:.1f}x; CMA / LGA {cma_all / lga_s:.1f}x (target >= 10x){note}")
    if args.bf_cases:
        bruteforce(model, tok, cases, n_layers, lga_s, args)


BF_SETTINGS = dict(v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4.0, kl_factor=0.0625,
                   context_templates=[(5, 10), (10, 10)], mom2_adjustment=False)  # EasyEdit gpt2-xl R-ROME


def bruteforce(model, tok, cases, n_layers: int, lga_s: float, args) -> None:
    """Time the real sweep on a sample of (case, layer) cells and extrapolate to every case at every layer."""
    from goldenlayers.editing.hparams import EditHParams
    from goldenlayers.evaluation.cells import edit_cells as sweep
    from goldenlayers.selection.bruteforce import make_default_fns

    layers = ([int(x) for x in args.bf_layers.split(",")] if args.bf_layers
              else sorted({0, n_layers // 2, n_layers - 1}))
    sample = cases[:args.bf_cases]
    fns = make_default_fns(model, tok, "r-rome", EditHParams(**BF_SETTINGS), metrics=("rewrite",))
    sweep(sample[:1], layers[:1], progress=False, **fns.kwargs())  # warm-up (templates, kernels)
    peak(args.device)
    bf_s, result = timed(lambda: sweep(sample, layers, batch_size=len(sample), progress=False, **fns.kwargs()),
                         args.device)
    cells = len(sample) * len(layers)
    per_cell = bf_s / cells
    full = per_cell * len(cases) * n_layers
    print(f"brute force (R-ROME, {cells} cells: {len(sample)} cases x layers {layers}, {len(result.failures)} "
          f"failed): {per_cell:.3f} s per (case, layer)   peak {peak(args.device)}")
    print(f"brute force over {len(cases)} cases x {n_layers} layers (extrapolated): {full:9.1f} s; "
          f"brute force / LGA {full / lga_s:.0f}x (target >= 100x)")


if __name__ == "__main__":
    main()
