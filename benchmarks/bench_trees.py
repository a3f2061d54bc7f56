"""A benchmark script run from two source trees in turn, in one call: the figures of a change against its parent.

    git archive ea34fd1 | tar -x -C /tmp/old        # the tree before the change, beside this one
    python benchmarks/bench_trees.py --old /tmp/old --new . --rounds 5 -- benchmarks/bench_edit.py --shape gpt2

Each round runs `python <tree>/<script> <args>` once per tree, with that tree first on PYTHONPATH, alternating
which tree goes first, so that a shared, noisy machine slows both alike. Every output line "label: numbers ..."
is read as figures; printed per label and figure: the median over the rounds of the old and the new tree and
their ratio new / old (for seconds, above 1 is slower; for rates such as cases/s, above 1 is faster). The
scripts' own outputs of the last round are printed first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def figures(text: str) -> dict[tuple[str, int], float]:
    """{(label, k): the k-th number after the colon} of every line "label: ...numbers...". Numbers inside the
    label (e.g. batch_size=16) stay part of it."""
    out = {}
    for line in text.splitlines():
        label, sep, rest = line.partition(":")
        if not sep:
            continue
        for k, num in enumerate(NUMBER.findall(rest)):
            out[(label.strip(), k)] = float(num)
    return out


def run(tree: Path, script: str, args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(tree / script), *args], env=env, cwd=tree, capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"{tree / script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the source tree before the change")
    ap.add_argument("--new", type=Path, default=Path("."), help="the source tree after it (default: here)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--save", type=Path, help="a folder to write each run's output to as soon as it is done")
    ap.add_argument("script", help="the benchmark script, relative to each tree")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    trees = {"old": a.old.resolve(), "new": a.new.resolve()}
    seen: dict[str, list[dict]] = {"old": [], "new": []}
    last = {}
    for i in range(a.rounds):
        for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
            last[which] = run(trees[which], a.script, args)
            if a.save:
                a.save.mkdir(parents=True, exist_ok=True)
                (a.save / f"{i + 1}-{which}.txt").write_text(last[which])
            seen[which].append(figures(last[which]))
            print(f"round {i + 1}/{a.rounds}: {which} done", file=sys.stderr, flush=True)
    for which in ("old", "new"):
        print(f"--- {which}: {trees[which]} (last round)\n{last[which].rstrip()}")
    print(f"--- medians over {a.rounds} rounds, alternating")
    keys = [k for k in seen["old"][0] if all(k in f for f in seen["old"] + seen["new"])]
    for key in keys:
        old = statistics.median(f[key] for f in seen["old"])
        new = statistics.median(f[key] for f in seen["new"])
        ratio = f"{new / old:.3f}" if old else "-"
        print(f"{key[0]} [{key[1]}]: old {old:g}  new {new:g}  new/old {ratio}")


if __name__ == "__main__":
    main()
