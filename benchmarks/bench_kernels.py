"""The kernel choices behind editing.accel.kernels and the statistics copy-back (editing.stats), timed against the
defaults they replace, in the same run.

    python benchmarks/bench_kernels.py --device cuda            # GPT-2 XL shapes (d_model 1600, d_ff 6400)

Printed, per row count of a v* step: one GPT-2 block's four forward products with the bias fused (`addmm`, what
a linear layer with a bias runs) against a plain product followed by the bias add (`split_bias`); the tanh-GELU
of transformers' `NewGELUActivation` (eight elementwise operations) against `F.gelu(x, approximate="tanh")`,
forward and backward; and copying one d_ff x d_ff float32 matrix to the CPU with `.cpu()` against the reused
page-locked buffer of `editing.stats._to_host`. Results and commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from goldenlayers.editing.accel.kernels import _gelu_tanh
from goldenlayers.editing.stats import _to_host


def timed(fn, device: str, n: int = 30) -> float:
    """Mean seconds of fn() over n calls, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--d-model", type=int, default=1600)
    ap.add_argument("--rows", default="128,176,198,242,512", help="comma-separated token rows per product")
    args = ap.parse_args()
    dev, d = args.device, args.d_model
    from transformers.activations import NewGELUActivation

    g = torch.Generator(device=dev).manual_seed(0)
    shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]  # c_attn, attn c_proj, c_fc, mlp c_proj (in, out)
    weights = [(torch.randn(i, o, device=dev, generator=g) * 0.02, torch.randn(o, device=dev, generator=g))
               for i, o in shapes]
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{name}, float32 (full precision products), d_model {d}")
    for rows in (int(r) for r in args.rows.split(",")):
        xs = [torch.randn(rows, w.shape[0], device=dev, generator=g) for w, _ in weights]
        fused = sum(timed(lambda x=x, w=w, b=b: torch.addmm(b, x, w), dev) for x, (w, b) in zip(xs, weights))
        split = sum(timed(lambda x=x, w=w, b=b: torch.mm(x, w).add_(b), dev) for x, (w, b) in zip(xs, weights))
        h = torch.randn(rows, 4 * d, device=dev, generator=g, requires_grad=True)
        eight, one = (timed(lambda act=act, h=h: torch.autograd.grad(act(h).sum(), h), dev)
                      for act in (NewGELUActivation(), _gelu_tanh))
        print(f"{rows:5d} rows: block products fused bias {fused * 1e6:7.0f} us, split {split * 1e6:7.0f} us "
              f"({fused / split:.2f}x); tanh-GELU fwd+bwd eight ops {eight * 1e6:6.0f} us, one kernel "
              f"{one * 1e6:6.0f} us ({eight / one:.2f}x)")
    C = torch.randn(4 * d, 4 * d, device=dev, generator=g)
    plain = timed(lambda: C.cpu(), dev, n=4)
    stage = [None]

    def staged():
        out, stage[0] = _to_host(C, stage[0])
        return out

    pinned = timed(staged, dev, n=4)
    gb = C.numel() * 4 / 1e9
    print(f"copy one {4 * d} x {4 * d} float32 matrix to the CPU: .cpu() {plain * 1e3:.1f} ms ({gb / plain:.1f} GB/s), "
          f"reused pinned buffer {pinned * 1e3:.1f} ms ({gb / pinned:.1f} GB/s; {plain / pinned:.2f}x)")


if __name__ == "__main__":
    main()
