"""A damaged run store (truncated, or a page overwritten) is named with the repair command by `run`, `export`
and `report` (exit 2, one line, no traceback), and `goldenlayers run CONFIG --repair` keeps every readable row:
the rows before the damage, and those on intact pages after it."""

import sqlite3

import yaml
from cli_helpers import flat, invoke

from goldenlayers.runs import RunDir, load_config

N = 3000


def _run_with_rows(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(dict(name="hurt", models=[dict(name="default-gpt2")],
                                            datasets=[dict(name="world", limit=4)], methods=[dict(name="r-rome")],
                                            output_dir=str(tmp_path))))
    with RunDir.create_or_resume(load_config(cfg_path)) as run:
        run.store.add(results=[dict(model="default-gpt2", dataset="world", case_id=f"c{i:05d}", method="r-rome",
                                    selector="bruteforce", layer=i % 8, metric="rewrite", value=i / N, split="test")
                               for i in range(N)])
        run.store.mark_job("a/job", "done")
    return cfg_path, run.path / "store.sqlite"


def _rows(path):
    with sqlite3.connect(path) as c:
        return set(c.execute("SELECT case_id, layer, value FROM results"))


def _naive_scan(path) -> int:
    """Rows a plain scan reads before it hits the damage."""
    n = 0
    c = sqlite3.connect(path)
    try:
        for _ in c.execute("SELECT * FROM results ORDER BY rowid"):
            n += 1
    except sqlite3.DatabaseError:
        pass
    c.close()
    return n


def _check_refused(cfg_path, store):
    for args in (["run", cfg_path, "--dry-run"], ["export", store.parent], ["report", store.parent]):
        res = invoke(args)
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
        line = next(ln for ln in res.output.splitlines() if "error:" in ln)
        assert f"run store {store} is damaged" in line and "--repair" in line, res.output


def test_a_truncated_store_is_named_and_repaired(tmp_path):
    cfg_path, store = _run_with_rows(tmp_path)
    original = _rows(store)
    with open(store, "r+b") as f:
        f.truncate(int(store.stat().st_size * 0.6))
    _check_refused(cfg_path, store)
    naive = _naive_scan(store)
    res = invoke(["run", cfg_path, "--dry-run", "--repair"])
    assert res.exit_code == 0, res.output
    kept = _rows(store)
    assert kept <= original and naive <= len(kept) < len(original) and len(kept) >= N // 4
    assert f"kept {len(kept)} results" in flat(res)
    with sqlite3.connect(store) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT status FROM jobs WHERE key='a/job'").fetchone() == ("done",)
    assert list(store.parent.glob("store.sqlite.damaged-*"))  # the damaged file is kept
    assert invoke(["export", store.parent, "--dest", tmp_path / "exp"]).exit_code == 0


def test_rows_after_a_damaged_page_are_kept(tmp_path):
    cfg_path, store = _run_with_rows(tmp_path)
    original = _rows(store)
    with sqlite3.connect(store) as c:
        size = c.execute("PRAGMA page_size").fetchone()[0]
    data = store.read_bytes()
    # the table's leaf page holding case c01500 (its rows carry created_at, "...+00:00"; the index pages do not)
    page = next(i for i in range(len(data) // size)
                if b"c01500" in data[i * size:(i + 1) * size] and b"+00:00" in data[i * size:(i + 1) * size])
    with open(store, "r+b") as f:  # garble it
        f.seek(page * size)
        f.write(b"\xff" * size)
    _check_refused(cfg_path, store)
    naive = _naive_scan(store)
    res = invoke(["run", cfg_path, "--dry-run", "--repair"])
    assert res.exit_code == 0, res.output
    kept = _rows(store)
    assert kept <= original and len(kept) > naive and N - 100 <= len(kept) < N  # about one page of rows lost
    assert ("c02999", 2999 % 8, 2999 / N) in kept  # rows after the damaged page are kept
