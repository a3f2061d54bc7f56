"""Seconds per R-ROME edit of a real model (e.g. SmolLM2-135M) with the settings its preset gives, on a CPU or a GPU.

    python benchmarks/bench_real_edit.py --model smollm2-135m --device cpu --edits 3
    python benchmarks/bench_real_edit.py --model /path/to/smollm2-135m-hf --threads 2
    python benchmarks/bench_real_edit.py --model smollm2-135m --device cuda --edits 5
    python benchmarks/bench_real_edit.py --model ... --baseline-src /path/to/older/checkout   # old code, same run

One fact (default: "The capital of France is" -> " Berlin", subject "France", layer 3), edited `--edits` times
(each restored before the next), in a fresh process per implementation, with an empty template cache
($GOLDENLAYERS_CACHE pointed at a new temporary folder). Printed per implementation:
- cold: the first edit with the default 21 context templates, which generates them (and stores them on disk);
- warm: the median later edit with templates (templates from memory: what every edit of a sweep pays);
- disk: reading the templates back from the on-disk cache in a new process (in-memory cache cleared);
- no-templates: the median edit with the bare prompt only (context_templates=[]);
- wall-clock seconds, and the process's CPU seconds (on a CPU shared with other work, the CPU seconds of a
  one-thread run are the steadier figure);
- the final v* loss of each kind of edit and the greedy next token before/after, so implementations can be
  compared for equality, and ratios vs the baseline (the cold edit, or `--baseline-src`'s figures).
`--baseline-src DIR` times the package found in DIR (a checkout or `git archive` of an older commit) the same way,
in its own process, before the current one. Results and commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE = dict(case_id="bench", dataset="bench", subject="France", prompt="The capital of France is",
            target_new=" Berlin")


def _sync(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def _next_token(model, tok, prompt: str, device: str) -> str:
    import torch

    with torch.no_grad():
        ids = torch.tensor([tok(prompt)["input_ids"]], device=device)
        return tok.decode(int(model(input_ids=ids).logits[0, -1].argmax()))


def measure(a) -> dict:
    """Time the edits in this process (the package imported is whatever PYTHONPATH gives)."""
    import torch

    import goldenlayers
    from goldenlayers.editing import edit
    from goldenlayers.editing import templates as tmpl
    from goldenlayers.models import load_model

    torch.set_num_threads(a.threads)
    lm = load_model(a.model, dtype=a.dtype, device=a.device)
    model, tok = lm.model, lm.tokenizer
    case = dict(CASE, subject=a.subject, prompt=a.prompt, target_new=a.target)
    before = _next_token(model, tok, a.prompt, a.device)
    out = dict(package=str(Path(goldenlayers.__file__).parent), device=a.device, threads=torch.get_num_threads(),
               before=before)

    def settings(overrides: dict):
        """The --preset's R-ROME settings with `overrides` (the same preset for every implementation compared)."""
        from goldenlayers.editing.hparams import resolve_settings

        return resolve_settings(model, "rome", a.preset, overrides)

    def one(hp) -> tuple[float, float, str, float]:
        t0, c0 = _sync(a.device), time.process_time()
        r = edit(model, tok, case, method=a.method, layer=a.layer, hparams=hp)
        dt, cpu = _sync(a.device) - t0, time.process_time() - c0
        after = _next_token(model, tok, a.prompt, a.device)
        r.restore()
        return dt, r.diagnostics[0].losses[-1], after, cpu

    out["cold"], out["loss_templates"], out["after"], out["cold_cpu"] = one(settings({}))
    warm = [one(settings({})) for _ in range(a.edits)]
    out["warm"] = statistics.median(w[0] for w in warm)
    out["warm_cpu"] = statistics.median(w[3] for w in warm)
    if hasattr(tmpl, "template_file"):  # a package with the on-disk template cache
        hp = settings({})
        tmpl._CACHE.clear()
        t0 = time.perf_counter()
        tmpl.context_templates(model, tok, hp.context_templates, hp.template_seed, hp.template_top_k)
        out["disk"] = time.perf_counter() - t0
    bare = [one(settings({"context_templates": []})) for _ in range(a.edits + 1)][1:]  # the first one warms up
    out["no_templates"] = statistics.median(b[0] for b in bare)
    out["no_templates_cpu"] = statistics.median(b[3] for b in bare)
    out["loss_no_templates"] = bare[0][1]
    return out


def run_in_subprocess(a, src: str | None) -> dict:
    """measure() in a fresh process importing the package from `src` (None: this checkout), with an empty cache."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    src = str(Path(src or Path(__file__).resolve().parents[1]).resolve())
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="bench-real-edit-") as cache:
        env["GOLDENLAYERS_CACHE"] = cache
        args = [sys.executable, __file__, "--json", "--model", a.model, "--device", a.device, "--dtype", a.dtype,
                "--edits", str(a.edits), "--layer", str(a.layer), "--threads", str(a.threads), "--method", a.method,
                "--subject", a.subject, "--prompt", a.prompt, "--target", a.target, "--preset", a.preset]
        done = subprocess.run(args, env=env, cwd=src, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the measurement with the package from {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, r: dict, ref: dict | None) -> None:
    def ratio(key):
        return f" ({ref[key] / r[key]:.2f}x vs baseline)" if ref and key in ref and key in r else ""

    def both(key):  # wall-clock seconds, and this process's CPU seconds (less sensitive to a busy machine)
        cpu = f"{key}_cpu"
        return f"{r[key]:.2f} s{ratio(key)}, CPU {r[cpu]:.2f} s{ratio(cpu)}" if cpu in r else f"{r[key]:.2f} s"

    print(f"{name}: package {r['package']}, {r['device']}, {r['threads']} threads")
    print(f"  cold edit (generates the templates): {both('cold')}")
    print(f"  warm edit (templates in memory):     {both('warm')}; cold/warm {r['cold'] / r['warm']:.1f}x")
    if "disk" in r:
        print(f"  templates read back from disk:       {r['disk']:.3f} s")
    print(f"  edit without templates:              {both('no_templates')}")
    print(f"  final v* loss: {r['loss_templates']:.6f} (templates), {r['loss_no_templates']:.6f} (none); "
          f"next token {r['before']!r} -> {r['after']!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="any load_model name or folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--edits", type=int, default=3, help="timed edits per kind (median)")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--method", default="r-rome")
    ap.add_argument("--preset", default="generic", help="settings preset for every implementation (generic: ROME's "
                    "21 context templates, 20 steps; the model's own preset may use none)")
    ap.add_argument("--threads", type=int, default=torch_threads())
    ap.add_argument("--subject", default=CASE["subject"])
    ap.add_argument("--prompt", default=CASE["prompt"])
    ap.add_argument("--target", default=CASE["target_new"])
    ap.add_argument("--baseline-src", default=None, help="folder holding an older goldenlayers package to compare")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # internal: measure, print JSON
    a = ap.parse_args()
    if a.edits < 1:
        ap.error("--edits must be >= 1")
    if a.json:
        print(json.dumps(measure(a)))
        return
    base = run_in_subprocess(a, a.baseline_src) if a.baseline_src else None
    new = run_in_subprocess(a, None)
    if base is not None:
        report("baseline", base, None)
    report("this checkout", new, base)


def torch_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


if __name__ == "__main__":
    main()
