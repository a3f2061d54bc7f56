"""Key statistics C = E[k k^T] for every layer: one pass for all layers vs one pass per layer (the way ROME's
layer_stats gathers them). docs/TARGETS "Layer selection cost": all layers in one pass >= L/2 times faster.

Usage:
    python benchmarks/bench_stats.py --arch gpt2 --layers 12 --d-model 256 --device cpu --tokens 5000
    python benchmarks/bench_stats.py --arch llama --layers 32 --d-model 1024 --device cuda --tokens 200000

The model is random-initialised (goldenlayers.models.tiny: the real transformers classes, 4 heads, 128
positions, vocabulary 300) with the tiny byte-level tokenizer; the corpus is seeded Faker paragraphs, truncated
to --max-length tokens. Both modes run the same code (collect_key_stats, forward cut after the deepest
requested layer) over the same texts and token budget; tokens/s counts corpus tokens (all layers' statistics
per token). The two results are compared (max |difference| relative to max |C|) to show they are the same.

What bounds the ratio: the per-layer baseline also stops after its layer (as ROME's layer_stats does), so it
costs about (L+1)/2 forwards plus the same L accumulations; accumulating K^T K costs 2 d_ff^2 flops per token
and layer (float64 by default), as much as a layer's own forward matmuls (24 d_model^2) when d_ff = 4 d_model.
The speed-up therefore stays below (L+1)/2, the closer the cheaper accumulation is (--dtype float32). The
collection accumulates only the upper block triangle of K^T K (editing.stats), which both modes share.

Measured (docs/benchmarks.md has the table): GPT-2 XL shape on an H100 (`--arch gpt2 --layers 48 --d-model 1600
--device cuda --tokens 20000 --dtype float32`): 3.64 s vs 46.58 s, 12.79x; 2-core CPU, torch 2.13 (`--arch gpt2
--layers 12 --d-model 256 --tokens 5000`): float32 3.5-4.5x over three runs, float64 2.58x.
"""

from __future__ import annotations

import argparse
import time

import torch

from goldenlayers.editing.stats import collect_key_stats
from goldenlayers.models.adapters import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer


def corpus(n: int, seed: int = 0) -> list[str]:
    from faker import Faker

    Faker.seed(seed)
    fake = Faker()
    return [fake.paragraph(nb_sentences=6) for _ in range(n)]


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="gpt2")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--d-ff", type=int, default=None, help="default 4 * d_model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tokens", type=int, default=5_000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="accumulation dtype")
    ap.add_argument("--model-dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()

    d_ff = args.d_ff or 4 * args.d_model
    model = tiny_model(args.arch, n_layers=args.layers, d_model=args.d_model, d_ff=d_ff,
                       dtype=getattr(torch, args.model_dtype)).to(args.device)
    tok, adapter = tiny_tokenizer(add_bos=args.arch not in ("gpt2", "gptj", "gpt_neox", "opt")), get_adapter(model)
    texts = corpus(max(8, args.tokens // 100))  # a Faker paragraph is well over 100 tiny-tokenizer tokens
    layers = list(range(args.layers))
    dtype = getattr(torch, args.dtype)

    def run(one_layer_at_a_time: bool, tokens: int):
        return collect_key_stats(model, tok, adapter, layers, texts, tokens, args.batch_size, args.max_length,
                                 dtype, progress=False, one_layer_at_a_time=one_layer_at_a_time)

    run(False, min(args.tokens, 2_000))  # warm-up (allocator, kernels)
    t_one, c_one = timed(lambda: run(False, args.tokens))
    t_each, c_each = timed(lambda: run(True, args.tokens))
    diff = max(float((c_one[lay] - c_each[lay]).abs().max() / c_one[lay].abs().max()) for lay in layers)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.arch}: {args.layers} layers, d_model {args.d_model}, d_ff {d_ff}, model {args.model_dtype}, "
          f"accumulate {args.dtype}, {args.tokens} tokens, batch {args.batch_size} x <= {args.max_length}, {device}")
    print(f"all layers in one pass : {t_one:8.2f} s  {args.tokens / t_one:10.0f} tokens/s")
    print(f"one layer at a time    : {t_each:8.2f} s  {args.tokens / t_each:10.0f} tokens/s")
    print(f"speed-up: {t_each / t_one:.2f}x (L/2 = {args.layers / 2:g}); max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
