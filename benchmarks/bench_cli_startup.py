"""How fast `goldenlayers --help` and `goldenlayers ls` answer (issue 16, item 11: well under 1 s on an idle
2-core CPU), against baselines measured in the same run: a bare `python -c pass` and `python -c "import torch"`
(what every command paid before registration and `ls` stopped importing torch).

Usage:
    python benchmarks/bench_cli_startup.py --repeat 5

Each command runs --repeat times as a fresh process (wall time, median and min printed); `ls` runs once with an
empty listings cache first (it computes the registries' names, importing torch) and then from the cache, in a
temporary GOLDENLAYERS_CACHE so that the user's cache is untouched. On a busy machine every figure grows; the
ratios to the baselines are the comparable part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def wall(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, GOLDENLAYERS_CACHE=cache, HF_HUB_OFFLINE="1")
        cold_ls = wall([py, "-m", "goldenlayers", "ls"], env)
        runs = {
            "python -c pass": [py, "-c", "pass"],
            "python -c 'import torch'": [py, "-c", "import torch"],
            "goldenlayers --help": [py, "-m", "goldenlayers", "--help"],
            "goldenlayers ls (cached)": [py, "-m", "goldenlayers", "ls"],
        }
        times = {name: [wall(cmd, env) for _ in range(args.repeat)] for name, cmd in runs.items()}
    base, torch_s = (statistics.median(times[k]) for k in ("python -c pass", "python -c 'import torch'"))
    print(f"{'command':28s} {'median s':>9s} {'min s':>7s} {'x pass':>7s} {'x torch':>8s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:28s} {med:9.3f} {min(ts):7.3f} {med / base:7.2f} {med / torch_s:8.2f}")
    print(f"{'goldenlayers ls (first)':28s} {cold_ls:9.3f} {cold_ls:7.3f} {cold_ls / base:7.2f} "
          f"{cold_ls / torch_s:8.2f}")


if __name__ == "__main__":
    main()
