"""Time `goldenlayers demo` from an empty cache, part by part (target: <= 5 minutes on a 2-core CPU).

Runs the demo as a subprocess with a fresh GOLDENLAYERS_CACHE (the embedded models' statistics, templates and
listings are rebuilt; the named real models are linked in when `--link-models` is given) and a fresh output
directory, then prints:
- the wall time and the CPU time (user + system) of the whole demo, and their ratio: on a shared machine the wall
  time grows with the load, while the CPU time stays near what an idle machine needs (an idle 2-core machine runs
  the demo's torch work on both cores, so its wall time is roughly CPU time / cores-used, which this ratio shows);
- the demo's own per-phase line of the run (start-up, load model, select, bruteforce, evaluate, ...) and the part
  before the run (world statistics and greedy recall of each model) = demo total - run total;
- with `--baseline-cases N`, the same demo with N cases first, as a baseline measured in the same session.

    python benchmarks/bench_demo.py                      # the default demo (80 cases per model)
    python benchmarks/bench_demo.py --args "--cases 20"  # a smaller one
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(extra: list[str], link_models: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "runs"
        cache.mkdir()
        if link_models:
            (cache / "models").symlink_to(link_models)
        env = dict(os.environ, GOLDENLAYERS_CACHE=str(cache), HF_HUB_OFFLINE="1")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "goldenlayers", "demo", "--output-dir", str(out),
                               "--no-progress", *extra], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = proc.stdout
    phases = [line.strip() for line in text.splitlines() if re.search(r"\bload model\b.*\bs\b", line)]
    run_total = re.search(r"run finished in ([\d.]+) s", text) or re.search(r"in ([\d.]+) s \(", text)
    return dict(wall=wall, cpu=cpu, phases=phases, run=float(run_total.group(1)) if run_total else None,
                tail=text.splitlines()[-12:])


def report(label: str, r: dict) -> None:
    print(f"{label}: wall {r['wall']:.0f} s, CPU {r['cpu']:.0f} s (CPU / wall {r['cpu'] / r['wall']:.2f}; an idle "
          f"2-core machine would take about CPU / 2 to CPU / 1.5 = {r['cpu'] / 2:.0f}-{r['cpu'] / 1.5:.0f} s)")
    for line in r["phases"]:
        print(f"  run phases: {line}")
    if r["run"] is not None:
        print(f"  run part {r['run']:.0f} s, recall part and start-up {r['wall'] - r['run']:.0f} s (wall)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--args", default="", help="extra demo options, e.g. \"--cases 20 --no-fluency\"")
    ap.add_argument("--baseline-cases", type=int, default=None, help="also time a demo with this many cases")
    ap.add_argument("--link-models", default=None, help="a models/ folder to link into the fresh cache")
    a = ap.parse_args()
    if a.baseline_cases:
        base = run_demo(["--cases", str(a.baseline_cases)], a.link_models)
        report(f"baseline demo --cases {a.baseline_cases}", base)
    r = run_demo(shlex.split(a.args), a.link_models)
    report(f"demo {a.args or '(defaults)'}", r)
    print("target: <= 300 s on an idle 2-core CPU")
    if a.baseline_cases:
        print(f"ratio to the baseline: wall {r['wall'] / base['wall']:.2f}x, CPU {r['cpu'] / base['cpu']:.2f}x")


if __name__ == "__main__":
    main()
