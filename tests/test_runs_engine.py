"""The real experiment engine (goldenlayers.runs.engine) on the embedded default-gpt2 and a tiny world config:
an uninterrupted run, a run SIGKILLed mid-sweep and resumed, and a two-process gloo run (torchrun) all leave the
same store rows; the report builds its tables and figures from them; a bad case is a failure row, not a crash."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import runs_helpers
import yaml
from cli_helpers import flat
from runs_helpers import RESULT_KEY
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.runs import RunDir, execute, load_config
from goldenlayers.runs.engine import make_engine

CONFIG = dict(
    name="tiny", models=[dict(name="default-gpt2", device="cpu")], datasets=[dict(name="world", limit=8)],
    split=dict(proxy_fraction=0.3, seed=2), methods=[dict(name="r-rome")],
    selectors=dict(lga={}, bruteforce=dict(layers=[1, 3])),
    metrics=["rewrite", "rephrase", "locality", "portability"],
)
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def write_config(tmp: Path, name: str) -> Path:
    return runs_helpers.write_config(tmp, name, CONFIG)


def rows(store: Path) -> dict[str, list[tuple]]:
    """Every row of a store without its timing columns (seconds, created_at), sorted."""
    with sqlite3.connect(store) as c:
        return dict(
            results=sorted(c.execute(f"SELECT {RESULT_KEY}, value, pre, split FROM results")),
            selectors=sorted(c.execute("SELECT selector, dataset, model, layer, score, cases FROM selectors")),
            failures=sorted(c.execute("SELECT model, dataset, case_id, method, layer, stage FROM failures")),
            jobs=sorted(c.execute("SELECT key, status FROM jobs")))


def without_path(reference: dict) -> dict:
    return {k: v for k, v in reference.items() if k != "path"}


def run_inprocess(cfg_path: Path) -> tuple[Path, object]:
    engine = make_engine(progress=False)
    with RunDir.create_or_resume(load_config(cfg_path)) as run:
        summary = execute(run, engine)
    engine.close()
    assert not summary.failed, summary.failed
    return run.path / "store.sqlite", engine


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run: its store rows (and its run directory as `reference["path"]`)."""
    store, engine = run_inprocess(write_config(tmp_path_factory.mktemp("ref"), "tiny"))
    out = rows(store)
    assert [e["cells"] for e in engine.log] == [16, 6]  # 8 cases x 2 layers; the 6 test cases at LGA's layer
    return dict(out, path=store.parent)


def test_reference_rows_are_complete(reference):
    res = reference["results"]
    assert len({r[:7] for r in res}) == len(res)  # no duplicate keys
    assert {r[4] for r in res} == {"bruteforce", "lga"} and {r[9] for r in res} == {"proxy", "test"}
    assert {r[5] for r in res if r[4] == "bruteforce"} == {1, 3}
    assert len(reference["selectors"]) == 8 and not reference["failures"]
    assert all(s == "done" for _, s in reference["jobs"]) and len(reference["jobs"]) == 3
    rewrite = [r for r in res if r[6] == "rewrite"]
    assert all(r[8] is not None for r in rewrite)  # the unedited value is stored with every rewrite row


def test_rows_of_a_former_split_are_refused(reference, tmp_path):
    """A stored case on the other side of the split this version computes (a run begun with the former split)
    stops the job with a message, instead of mixing two splits in one store."""
    import shutil
    from types import SimpleNamespace

    from goldenlayers.runs.engine import _check_split

    shutil.copytree(reference["path"], tmp_path / "run")
    with sqlite3.connect(tmp_path / "run" / "store.sqlite") as c:
        proxy = {r[0] for r in c.execute("SELECT DISTINCT case_id FROM results WHERE split = 'proxy'")}
    assert len(proxy) == 2  # exactly round(0.3 x 8) proxy cases
    with RunDir.open(tmp_path / "run") as run:
        job = SimpleNamespace(model="default-gpt2", dataset="world")
        _check_split(run, job, proxy)  # the split the rows were written with: fine
        moved = sorted(proxy)[0]
        with pytest.raises(ValueError, match=rf"1 stored case\(s\) \(e.g. '{moved}'\) lie on the other side"):
            _check_split(run, job, proxy - {moved})


def test_report_from_a_real_run(reference, tmp_path):
    from goldenlayers.report import report

    out = report(reference["path"], tmp_path / "report")
    keys = {t.key for t in out.tables}
    assert {"table1", "table2-default-gpt2-world", "table3"} <= keys
    assert {"fig1-default-gpt2", "fig2", "fig3", "fig4"} <= set(out.figures) and out.html.is_file()


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_gives_the_uninterrupted_rows(reference, tmp_path):
    cfg = write_config(tmp_path, "tiny")
    store = tmp_path / "runs" / "tiny" / "store.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "goldenlayers", "run", str(cfg), "--no-progress"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, n = time.time() + 120, 0
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as c:
                    n = c.execute("SELECT COUNT(DISTINCT case_id || '/' || layer) FROM results "
                                  "WHERE selector = 'bruteforce'").fetchone()[0]
            except sqlite3.OperationalError:  # the store or its tables are not there yet
                n = 0
            if n >= 4:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 4 <= n < 16, f"not killed mid-sweep ({n} cells)"
    before = rows(store)
    assert "done" not in {s for k, s in before["jobs"] if "bruteforce" in k}
    cells = len({(r[2], r[5]) for r in before["results"] if r[4] == "bruteforce"})
    _, engine = run_inprocess(cfg)
    bf = engine.log[0]
    assert bf["skipped"] == cells and bf["cells"] == 16 - cells  # only the missing cells were redone
    assert rows(store) == without_path(reference)


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_rows(reference, tmp_path):
    cfg = write_config(tmp_path, "tiny")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "goldenlayers", "run", str(cfg), "--no-progress"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in (run / "shards").iterdir() if p.suffix == ".sqlite") == \
        ["shard-0.sqlite", "shard-1.sqlite"]
    for i in (0, 1):  # both ranks did cells
        with sqlite3.connect(run / "shards" / f"shard-{i}.sqlite") as c:
            assert c.execute("SELECT COUNT(*) FROM results").fetchone()[0] > 0
    assert rows(run / "store.sqlite") == without_path(reference)
    # each process says where its time went; both did a share of the brute-force sweep
    times = {int(m[1]): m[2] for m in re.finditer(r"time of process (\d): (.*)", res.stdout)}
    assert sorted(times) == [0, 1], res.stdout[-2000:]
    for line in times.values():
        phases = {k: float(v) for k, v in re.findall(r"([a-z -]+) ([\d.]+) s", line.replace(", ", ","))}
        assert phases["bruteforce"] > 0 and phases["load model"] > 0 and phases["start-up"] > 0, line
        parts = sum(v for k, v in phases.items() if k != "total")
        assert phases["total"] == pytest.approx(parts, abs=0.05 * len(phases)), line  # each printed to 0.1 s


@pytest.mark.slow
def _kill_processes_running(arg: str, seconds: float = 60) -> None:
    """SIGKILL every process whose command line holds `arg` (Linux /proc) and wait until none is left."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    cmd = (entry / "cmdline").read_bytes().split(b"\0")
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if arg.encode() in cmd and state != "Z":
                    pids.append(int(entry.name))
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _wait_for_group_gone(pgid: int, seconds: float = 60) -> None:
    """Wait until no process of the group is left (SIGKILLed workers can take a moment on a busy machine)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_killed_two_process_run_resumes_with_only_the_missing_cells(reference, tmp_path):
    """Both workers of a torchrun launch are SIGKILLed once their shards hold cells; a single-process resume merges
    the shards, redoes only the cells no shard holds, and ends with the uninterrupted run's rows."""
    cfg = write_config(tmp_path, "tiny")
    shards = tmp_path / "runs" / "tiny" / "shards"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "goldenlayers", "run", str(cfg), "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def shard_cells() -> int:
        total = 0
        for shard in shards.glob("shard-*.sqlite") if shards.is_dir() else ():
            try:
                with sqlite3.connect(f"file:{shard}?mode=ro", uri=True) as c:
                    total += c.execute("SELECT COUNT(DISTINCT case_id || '/' || layer) FROM results "
                                       "WHERE selector = 'bruteforce'").fetchone()[0]
            except sqlite3.OperationalError:
                pass
        return total

    deadline, n = time.time() + 180, 0
    try:
        while time.time() < deadline and proc.poll() is None and n == 0:
            n = shard_cells()
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers at once
        proc.wait()
        _kill_processes_running(str(cfg))  # workers started in a session of their own are not in that group
        _wait_for_group_gone(proc.pid)  # a worker still dying holds the run directory's lock
    assert 0 < n < 16, f"not killed mid-sweep ({n} cells)"
    _, engine = run_inprocess(cfg)
    bf = engine.log[0]
    assert bf["skipped"] >= n and bf["skipped"] + bf["cells"] == 16  # finished shard cells were kept, not redone
    assert rows(tmp_path / "runs" / "tiny" / "store.sqlite") == without_path(reference)


def test_a_bad_case_is_a_failure_row_and_the_run_goes_on(tmp_path, monkeypatch):
    from goldenlayers.runs import engine as E

    real = E.load_cases

    def with_bad_case(*a, **kw):
        cases = real(*a, **kw)
        bad = cases[0].model_copy(update=dict(case_id="bad-case", target_new=" word" * 5000))  # too long to edit
        return [bad, *cases[1:4]]

    monkeypatch.setattr(E, "load_cases", with_bad_case)
    cfg = yaml.safe_load(write_config(tmp_path, "bad").read_text())
    cfg["selectors"] = dict(bruteforce=dict(layers=[2]))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    store, engine = run_inprocess(tmp_path / "bad.yaml")
    out = rows(store)
    assert [f[2] for f in out["failures"]] == ["bad-case"] and engine.log[0]["failures"] == 1
    assert len({r[2] for r in out["results"]}) == 3 and "bad-case" not in {r[2] for r in out["results"]}
    with sqlite3.connect(store) as c:
        assert c.execute("SELECT reason FROM failures").fetchone()[0]

    # its cause fixed (the case now editable), a plain resume skips the failed cell; reopened, only it is redone
    def fixed_case(*a, **kw):
        cases = real(*a, **kw)
        return [cases[4].model_copy(update=dict(case_id="bad-case")), *cases[1:4]]

    monkeypatch.setattr(E, "load_cases", fixed_case)
    engine = make_engine(progress=False)
    with RunDir.create_or_resume(load_config(tmp_path / "bad.yaml")) as run:
        assert execute(run, engine).skipped and rows(store)["failures"] == out["failures"]
    engine.close()
    monkeypatch.setattr(E, "make_engine", lambda *a, **kw: spy.append(real_make(*a, **kw)) or spy[-1])
    spy, real_make = [], make_engine
    res = CliRunner().invoke(app, ["run", str(tmp_path / "bad.yaml"), "--no-progress", "--retry-failed-cells"],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert re.search(r"reopened \S+bruteforce\S+: 1 failure row", flat(res)) and "done 1," in flat(res)
    assert [e["cells"] for e in spy[0].log] == [1]
    again = rows(store)
    assert not again["failures"] and {r[2] for r in again["results"]} == {r[2] for r in out["results"]} | {"bad-case"}
    assert set(out["results"]) <= set(again["results"])  # the other cells were kept, not redone


def test_demo_config_is_the_shipped_configs_demo_yaml():
    from goldenlayers.cli.demo import demo_config
    from goldenlayers.runs import validate_config
    from goldenlayers.runs.config import resolved

    shipped = load_config(Path(__file__).parent.parent / "configs" / "demo.yaml")
    assert resolved(validate_config(demo_config(), "demo")) == resolved(shipped)
    assert demo_config(cases=30)["name"].startswith("demo-")  # other options: another run, never a clash


def test_cells_are_shared_out_without_overlap():
    from goldenlayers.runs.engine_jobs import cell_owner

    todo = [(f"c{i}", layer) for layer in range(3) for i in range(7)]
    parts = [cell_owner(todo, r, 3) for r in range(3)]
    assert set().union(*parts) == set(todo) and sum(map(len, parts)) == len(todo)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_layer_two_selectors_chose_is_edited_once(tmp_path, monkeypatch):
    """LGA and CMA choosing the same layer: CMA's evaluation copies the test cells LGA's edited there (same model,
    dataset, method, case and layer) instead of editing them again; its rows equal LGA's, relabelled."""
    from goldenlayers.runs import engine as E
    from goldenlayers.runs.engine_jobs import selector_name

    monkeypatch.setattr(E, "chosen_layer", lambda config, store, model, dataset, family: (
        selector_name(config, family), 2))
    cfg = yaml.safe_load(write_config(tmp_path, "same").read_text())
    cfg["selectors"] = dict(lga={}, cma=dict(noise_samples=2))
    (tmp_path / "same.yaml").write_text(yaml.safe_dump(cfg))
    store, engine = run_inprocess(tmp_path / "same.yaml")
    assert [e["cells"] for e in engine.log] == [6, 0]  # 6 test cases edited for the first; none for the second
    with sqlite3.connect(store) as c:
        got = {s: sorted(c.execute("SELECT case_id, layer, metric, value, pre, seconds FROM results WHERE "
                                   "selector = ?", (s,))) for s, in c.execute("SELECT DISTINCT selector FROM results")}
    assert sorted(got) == ["cma-mlp-w10", "lga"] and got["lga"] == got["cma-mlp-w10"]
    assert len({r[0] for r in got["lga"]}) == 6 and {r[1] for r in got["lga"]} == {2}
