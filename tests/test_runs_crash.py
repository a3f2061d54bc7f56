"""A real crash: a writer process is SIGKILLed mid-run; the store must be consistent (integrity check, every
committed cell whole, nothing duplicated, no value corrupted) and a resumed writer must write exactly the
missing cells. Also two worker processes writing their own shards at the same time, merged afterwards."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import signal
import subprocess
import sys
import textwrap
import time

from goldenlayers.runs import Store, merge_shards

N_CELLS = 3000  # (case, layer) cells, each written as 2 metric rows in one transaction
METRICS = ("rewrite", "locality")

WRITER = textwrap.dedent("""
    import sys, time
    from goldenlayers.runs.store import Store
    path, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    store = Store(path)
    done = store.done_keys("m", "zsre", "r-rome", "bruteforce")
    written = 0
    for i in range(n):
        case, layer = f"c{i // 10}", i % 10
        if (case, layer) in done:
            continue
        value = (i % 97) / 97
        store.add_results([dict(model="m", dataset="zsre", case_id=case, method="r-rome", selector="bruteforce",
                                layer=layer, metric=m, value=value + k, split="test", seconds=0.001)
                           for k, m in enumerate({metrics})])
        written += 1
        print("wrote", i, flush=True)
        time.sleep(pause)
    print("DONE", written, flush=True)
""").replace("{metrics}", repr(METRICS))


def writer(path, pause=0.0, n=N_CELLS):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(pause)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def expected(i):
    return {(f"c{i // 10}", i % 10, m): (i % 97) / 97 + k for k, m in enumerate(METRICS)}


def check_consistent(path) -> dict:
    store = Store(path)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = list(store.rows("results"))
    keys = [(r["case_id"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated rows"
    got = {(r["case_id"], r["layer"], r["metric"]): r["value"] for r in rows}
    cells = {(c, layer) for c, layer, _ in got}
    for c, layer in cells:  # every committed cell is whole and holds the right values
        i = int(c[1:]) * 10 + layer
        assert {k: got.get(k) for k in expected(i)} == expected(i)
    store.close()
    return got


def test_sigkill_mid_run_then_resume(tmp_path):
    path = tmp_path / "store.sqlite"
    proc = writer(path, pause=0.002)
    last = -1
    t0 = time.time()
    while last < 300:  # let it commit a few hundred cells, then kill it without warning
        line = proc.stdout.readline()
        assert line, f"writer ended early: {proc.stderr.read()}"
        last = int(line.split()[1])
        assert time.time() - t0 < 60
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    got = check_consistent(path)
    cells = {(c, layer) for c, layer, _ in got}
    assert last + 1 <= len(cells) < N_CELLS  # every acknowledged commit survived; the run was cut short
    assert cells == {(f"c{i // 10}", i % 10) for i in range(len(cells))}  # written in order: a prefix

    resumed = writer(path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert out.strip().splitlines()[-1] == f"DONE {N_CELLS - len(cells)}"  # exactly the missing cells
    final = check_consistent(path)
    assert len(final) == N_CELLS * len(METRICS)

    again = writer(path)  # a third run finds nothing to do and changes nothing
    out, _ = again.communicate(timeout=120)
    assert out.strip().splitlines()[-1] == "DONE 0"
    assert check_consistent(path) == final


def test_parallel_workers_write_shards_then_merge(tmp_path):
    shards = [tmp_path / "shards" / f"shard-{i}.sqlite" for i in range(2)]
    (tmp_path / "shards").mkdir()
    procs = [writer(p, n=400) for p in shards]  # both write the same keys concurrently, each its own file
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip().endswith("DONE 400"), err
    main = Store(tmp_path / "store.sqlite")
    assert merge_shards(main, shards)["results"] == 400 * len(METRICS)
    assert merge_shards(main, shards)["results"] == 0
    main.close()
    got = check_consistent(tmp_path / "store.sqlite")
    assert got == {k: v for i in range(400) for k, v in expected(i).items()}
