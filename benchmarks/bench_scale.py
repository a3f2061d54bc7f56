"""Brute-force sweep (paper section 4) with 1 process vs N processes: seconds and speed-up of `goldenlayers run`.

    python benchmarks/bench_scale.py --procs 2 --device cuda                        # default-gpt2, 2 GPUs
    python benchmarks/bench_scale.py --procs 2 --device cuda --shape gpt2 --n-layers 24 --d-model 1024 --cases 64
    python benchmarks/bench_scale.py --procs 2 --device cpu --cases 8 --layers 0,2   # CPU smoke run (gloo)

Both runs execute the same config (one model, `--cases` synthetic-world edits, R-ROME at every layer or
`--layers`, rewrite/rephrase/locality/portability, brute force only) in fresh run directories under a temporary
folder: once as `python -m goldenlayers run CONFIG`, once as `python -m torch.distributed.run --standalone
--nproc-per-node N -m goldenlayers run CONFIG` (rank r on cuda:r, nccl; gloo on CPU). `--shape gpt2|llama` saves a
random-initialised model of that shape (with default-gpt2's tokenizer and world, so the world's cases apply) and
sweeps it instead of the default model. Seconds are wall time of each command, model loading included, so the
speed-up is what a user sees (it grows with the cells; a small sweep is dominated by each process's start-up and
key statistics); the summed seconds of the cells each rank did are printed too, and the two runs' rows are
checked to be identical; each process's `time` line (start-up, model load, sweep, waiting, merging) is echoed.
Last line: the summary. A sweep too long for one session can be measured in two halves on the same machine:
`--only one --save one.json`, then `--only many --compare one.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def random_model(shape: str, n_layers: int, d_model: int, d_ff: int, dtype: str, out: Path) -> str:
    """Save a random-init model of `shape` with default-gpt2's tokenizer and world.json to `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from goldenlayers.models.loader import resolve_model_path

    src = Path(resolve_model_path("default-gpt2"))
    tok = AutoTokenizer.from_pretrained(src)
    heads = max(1, d_model // 64)
    if shape == "gpt2":
        cfg = AutoConfig.for_model("gpt2", n_embd=d_model, n_inner=d_ff, n_layer=n_layers, n_head=heads,
                                   n_positions=1024, vocab_size=len(tok))
    else:
        cfg = AutoConfig.for_model("llama", hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                                   num_attention_heads=heads, num_key_value_heads=heads,
                                   max_position_embeddings=1024, vocab_size=len(tok))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    shutil.copy(src / "world.json", out / "world.json")
    return str(out)


def config(name: str, root: Path, model: dict, cases: int, layers, edit_batch: int) -> Path:
    cfg = dict(name=name, models=[model], datasets=[dict(name="world", limit=cases)], methods=[dict(name="r-rome")],
               selectors=dict(bruteforce=dict(layers=layers)), batch=dict(edit=edit_batch),
               metrics=["rewrite", "rephrase", "locality", "portability"], output_dir=str(root / "runs"))
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed(cmd: list[str]) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode != 0 or "failed 0" not in res.stdout:
        sys.exit(f"command failed: {' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    for line in res.stdout.splitlines():  # where each process's time went (goldenlayers.runs.timeline)
        if line.startswith("time"):
            print(f"  {line}")
    return seconds


def rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as c:
        return sorted(c.execute("SELECT case_id, layer, metric, value FROM results"))


def cell_seconds(store: Path) -> float:
    """Summed seconds of the distinct (case, layer) cells of a store: the edit + scoring work it holds."""
    with sqlite3.connect(store) as c:
        return float(c.execute("SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(seconds) AS s FROM results "
                               "GROUP BY case_id, layer)").fetchone()[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", type=int, default=2, help="processes of the parallel run (one per GPU with cuda)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--model", default="default-gpt2", help="embedded default or a saved model (without --shape)")
    p.add_argument("--shape", choices=("gpt2", "llama"), help="sweep a random-init model of this shape instead")
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--d-ff", type=int, default=3072)
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--cases", type=int, default=40, help="world edit cases (each edited at every layer)")
    p.add_argument("--layers", default="all", help='"all" or comma-separated layer indices')
    p.add_argument("--edit-batch", type=int, default=16, help="cases whose v* are optimised together (config "
                                                                "batch.edit; 8 fits GPT-2 XL in fp32 on one H200)")
    p.add_argument("--only", choices=("one", "many"), help="run only the 1-process or the N-process half (a "
                                                         "sweep too long for one session: --save, then --compare)")
    p.add_argument("--save", help="write this half's seconds and rows to this JSON file")
    p.add_argument("--compare", help="the other half's --save file: print the speed-up against it")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (run directories) and print it")
    a = p.parse_args()
    if (a.save or a.compare) and a.only is None:
        p.error("--save and --compare measure one half of a split run: give --only one or --only many")
    if a.compare:
        saved_procs = json.loads(Path(a.compare).read_text()).get("procs")
        if (saved_procs == 1) == (a.only == "one"):
            p.error(f"--compare {a.compare} holds the {'1-process' if saved_procs == 1 else 'N-process'} half; "
                    f"run the other half (--only {'many' if saved_procs == 1 else 'one'})")
    if a.device == "cuda":
        import torch

        if torch.cuda.device_count() < a.procs:
            sys.exit(f"--procs {a.procs} needs {a.procs} GPUs; this machine has {torch.cuda.device_count()}")
    root = Path(tempfile.mkdtemp(prefix="bench_scale-"))
    try:
        source = random_model(a.shape, a.n_layers, a.d_model, a.d_ff, a.dtype, root / "model") if a.shape \
            else a.model
        label = f"{a.shape} {a.n_layers}x{a.d_model} random-init" if a.shape else a.model
        layers = "all" if a.layers == "all" else [int(x) for x in a.layers.split(",")]
        model = dict(name="bench", path=source, dtype=a.dtype, device=a.device)
        one = many = r1 = rn = None
        if a.only in (None, "one"):
            one = timed([sys.executable, "-m", "goldenlayers", "run",
                         str(config("one", root, model, a.cases, layers, a.edit_batch)), "--no-progress"])
            r1 = rows(root / "runs/one/store.sqlite")
            print(f"1 process: {one:.1f} s; cell seconds (edit + score) "
                  f"{cell_seconds(root / 'runs/one/store.sqlite'):.1f} s", flush=True)
        if a.only in (None, "many"):
            many = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                          str(a.procs), "-m", "goldenlayers", "run",
                          str(config("many", root, model, a.cases, layers, a.edit_batch)), "--no-progress"])
            rn = rows(root / "runs/many/store.sqlite")
            ranks = [cell_seconds(p) for p in sorted((root / "runs/many/shards").glob("shard-*.sqlite"))]
            print(f"{a.procs} processes: {many:.1f} s; cell seconds per rank "
                  f"{', '.join(f'{x:.1f}' for x in ranks)} s", flush=True)
        if a.save:  # this half of a split measurement, for --compare in the other half
            Path(a.save).write_text(json.dumps(dict(seconds=one if one is not None else many,
                                                    procs=1 if one is not None else a.procs, rows=r1 or rn)))
        if a.compare:
            other = json.loads(Path(a.compare).read_text())
            saved = [tuple(r) for r in other["rows"]]
            if other["procs"] == 1:
                one, r1 = other["seconds"], saved
            else:
                many, rn = other["seconds"], saved
        if one is not None and many is not None:
            cells = len({(c, layer) for c, layer, _, _ in r1})
            print(f"bench_scale: {label}, r-rome brute force, {cells} cells on {a.device}: 1 process {one:.1f} s, "
                  f"{a.procs} processes {many:.1f} s, speed-up {one / many:.2f}x, rows identical: "
                  f"{'yes' if r1 == rn else 'NO'}")
    finally:
        if a.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
