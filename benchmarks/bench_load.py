"""Reading a large benchmark file (issue 16, item 10): `load_dataset(..., limit=5)` against reading the whole
file, and the whole-file read against a bare `json.load` of it (the baseline, measured in the same run).

Usage:
    python benchmarks/bench_load.py --mb 50

Writes a KnowEdit ZsRE-shaped file of about --mb megabytes (copies of one record with distinct targets) into a
temporary folder, then times, each as a fresh process (so that peak memory is the process's own): `json.load` of
the file, `load_dataset("zsre", file)` (every record, decoded one at a time as the file is read in 1 MiB chunks)
and `load_dataset("zsre", file, limit=5)` (stops reading once 5 cases are loaded). Prints seconds, peak RSS and
the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

RECORD = {
    "subject": "Epaspidoceras", "target_new": "Noctuidae", "prompt": "Which family does Epaspidoceras belong to?",
    "ground_truth": ["Aspidoceratidae"], "rephrase_prompt": "What family are Epaspidoceras?",
    "locality": {"Relation_Specificity": [{"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]}]},
    "portability": {"Reasoning": [{"prompt": "What is the common name for the family Epaspidoceras belongs to?",
                                   "ground_truth": "Owlet moths"}]},
}
CODE = {
    "json.load (baseline)": "import json\nwith open(sys.argv[1]) as f: n = len(json.load(f))",
    "load_dataset (every record)": "from goldenlayers.datasets import load_dataset\n"
                                   "n = len(load_dataset('zsre', sys.argv[1]))",
    "load_dataset (limit=5)": "from goldenlayers.datasets import load_dataset\n"
                              "n = len(load_dataset('zsre', sys.argv[1], limit=5))",
}
PROBE = ("import resource, sys, time\nt = time.perf_counter()\n{code}\n"
         "print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ZsRE-test-all.json")
        one = len(json.dumps(RECORD)) + 2
        n = int(args.mb * 1e6 / one)
        with open(path, "w") as f:
            f.write("[" + ",\n".join(json.dumps(dict(RECORD, target_new=f"T{i}")) for i in range(n)) + "]")
        print(f"{os.path.getsize(path) / 1e6:.1f} MB, {n} records")
        out = {}
        for name, code in CODE.items():
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", PROBE.format(code=code), path], capture_output=True,
                                 text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            count, secs, rss = res.stdout.split()
            out[name] = (float(secs), float(rss), time.perf_counter() - start, int(count))
    base = out["json.load (baseline)"][0]
    print(f"{'read':30s} {'cases':>7s} {'read s':>8s} {'x json':>7s} {'peak RSS MB':>12s} {'process s':>10s}")
    for name, (secs, rss, wall, count) in out.items():
        print(f"{name:30s} {count:7d} {secs:8.3f} {secs / base:7.2f} {rss:12.0f} {wall:10.2f}")


if __name__ == "__main__":
    main()
