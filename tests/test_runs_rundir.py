"""The run directory (create, resume, refuse a changed config), the job plan with `execute(run, engine)`, worker
shards, and the `goldenlayers run / export` commands."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import flat
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.runs import ConfigMismatchError, RunDir, config_diff, execute, plan, validate_config

CFG = dict(name="r1", models=[dict(name="tiny-a"), dict(name="tiny-b")],
           datasets=[dict(name="zsre", file="ZsRE-test-all.json"), dict(name="world")],
           methods=[dict(name="r-rome"), dict(name="rome", hparams=dict(v_lr=0.5))],
           selectors=dict(lga=dict(), cma=dict(window=10), bruteforce=dict(methods=["r-rome"])))


def cfg(**changes):
    return validate_config({**CFG, **changes})


def test_create_then_resume(tmp_path):
    run = RunDir.create_or_resume(cfg(), tmp_path)
    assert run.path == tmp_path / "r1"
    assert {p.name for p in run.path.iterdir()} >= {"config.yaml", "meta.json", "store.sqlite"}
    assert validate_config(yaml.safe_load((run.path / "config.yaml").read_text())) == cfg()
    meta = run.meta
    assert set(meta["versions"]) >= {"python", "torch", "transformers", "goldenlayers", "platform", "gpus"}
    assert meta["seeds"] == dict(torch=0, templates=0, fluency=0, split=0)
    run.store.add_results([dict(model="tiny-a", dataset="zsre", case_id="c0", method="r-rome",
                                selector="bruteforce", layer=0, metric="rewrite", value=1.0, split="test")])
    run.close()
    # same config, another output_dir spelling: resumes, keeps the rows, records a session
    again = RunDir.create_or_resume(cfg(output_dir="elsewhere"), tmp_path)
    assert again.store.count("results") == 1 and len(again.meta["sessions"]) == 2
    assert RunDir.open(again.path).config == cfg()
    again.close()


def test_changed_config_is_refused_with_the_differing_keys(tmp_path):
    RunDir.create_or_resume(cfg(), tmp_path).close()
    changed = cfg(split=dict(seed=3), methods=[dict(name="r-rome"), dict(name="rome", hparams=dict(v_lr=0.1))],
                  datasets=[dict(name="zsre", file="ZsRE-test-all.json")])
    with pytest.raises(ConfigMismatchError) as e:
        RunDir.create_or_resume(changed, tmp_path)
    assert e.value.differences == ["- datasets[world].file: None", "- datasets[world].limit: None",
                                   "- datasets[world].name: 'world'", "methods[rome].hparams.v_lr: 0.5 -> 0.1",
                                   "split.seed: 0 -> 3"]
    assert "--force" in str(e.value)
    forced = RunDir.create_or_resume(changed, tmp_path, force=True)
    assert forced.config == changed and RunDir.open(forced.path).config == changed
    kept = list(forced.path.glob("config.*.yaml"))
    assert len(kept) == 1 and validate_config(yaml.safe_load(kept[0].read_text())) == cfg()
    assert forced.meta["forced"][0]["differences"] == e.value.differences
    forced.close()


def test_config_diff():
    assert config_diff({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 3]}, "d": 0}) == [
        "b.c: [1, 2] -> [1, 3]", "+ d: 0"]
    assert config_diff({"output_dir": "x"}, {"output_dir": "y"}) == []


def test_plan_order_and_keys():
    jobs = plan(cfg())
    # per (model, dataset): 2 selectors + 1 swept method + 2 methods x 2 selectors
    assert len(jobs) == 2 * 2 * 7
    first = [(j.kind, j.method, j.selector, j.split) for j in jobs[:7]]
    assert first == [("select", None, "lga", "proxy"), ("select", None, "cma", "proxy"),
                     ("bruteforce", "r-rome", "bruteforce", "all"),
                     ("evaluate", "r-rome", "lga", "test"), ("evaluate", "r-rome", "cma", "test"),
                     ("evaluate", "rome", "lga", "test"), ("evaluate", "rome", "cma", "test")]
    assert jobs[0].key == "tiny-a/zsre/select/-/lga"
    assert jobs[7].dataset == "world" and jobs[14].model == "tiny-b"


class FakeEngine:
    """Writes one selector row per select job; fails the jobs named in `broken`."""

    def __init__(self, broken=()):
        self.calls, self.broken = [], set(broken)

    def run_job(self, job, run):
        self.calls.append(job.key)
        if job.key in self.broken:
            raise RuntimeError(f"cannot run {job.key}")
        if job.kind == "select":
            run.store.add_selector_rows([dict(selector=job.selector, dataset=job.dataset, model=job.model, layer=0,
                                              score=1.0, cases=1, seconds=0.1)])


def test_execute_resumes_by_job_and_records_failures(tmp_path):
    run = RunDir.create_or_resume(cfg(), tmp_path)
    jobs = plan(run.config)
    bad = jobs[3].key
    first = execute(run, FakeEngine(broken=[bad]))
    assert len(first.done) == len(jobs) - 1 and first.failed == {bad: f"RuntimeError: cannot run {bad}"}
    assert run.store.count("selectors") == 8
    second_engine = FakeEngine()
    second = execute(run, second_engine)  # finished jobs are skipped; the failed one runs again
    assert second_engine.calls == [bad] and second.done == [bad] and len(second.skipped) == len(jobs) - 1
    third_engine = FakeEngine()
    execute(run, third_engine)
    assert third_engine.calls == []
    assert {v["status"] for v in run.store.jobs().values()} == {"done"}
    run.close()


def test_worker_shards_merge_into_the_run(tmp_path):
    run = RunDir.create_or_resume(cfg(), tmp_path)
    for w in range(3):
        with run.shard(w) as s:
            s.add_results([dict(model="tiny-a", dataset="zsre", case_id=f"c{w}", method="r-rome",
                                selector="bruteforce", layer=layer, metric="rewrite", value=0.5, split="test")
                           for layer in range(2)])
    assert sorted(p.name for p in (run.path / "shards").iterdir() if p.suffix == ".sqlite") == [
        "shard-0.sqlite", "shard-1.sqlite", "shard-2.sqlite"]
    assert run.merge_shards()["results"] == 6 and run.merge_shards()["results"] == 0
    assert run.store.done_keys("tiny-a", "zsre", "r-rome", "bruteforce") == {
        (f"c{w}", layer) for w in range(3) for layer in range(2)}
    run.close()


def test_cli_run_and_export(tmp_path):
    runner = CliRunner()
    config = Path(__file__).parent.parent / "configs" / "default.yaml"
    r = runner.invoke(app, ["run", str(config), "--root", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "22 jobs" in flat(r) and "nothing executed; 22 job(s) would run" in flat(r)
    assert (tmp_path / "default-world" / "config.yaml").read_text().startswith(f"# goldenlayers run {config}")
    changed = tmp_path / "changed.yaml"
    changed.write_text(config.read_text().replace("proxy_fraction: 0.1", "proxy_fraction: 0.2"))
    r = runner.invoke(app, ["run", str(changed), "--root", str(tmp_path), "--dry-run"])
    assert r.exit_code == 2 and "split.proxy_fraction: 0.1 -> 0.2" in flat(r)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: [{name: a, dtyp: float16}]\ndatasets: [{name: world}]\nmethods: [{name: rome}]\n")
    r = runner.invoke(app, ["run", str(bad)])
    assert r.exit_code == 2 and "models[0].dtyp: unknown key" in flat(r)
    r = runner.invoke(app, ["export", str(tmp_path / "default-world"), "--dest", str(tmp_path / "exp")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["failures.csv", "results.csv", "selectors.csv"]
    assert json.loads((tmp_path / "default-world" / "meta.json").read_text())["name"] == "default-world"
    r = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "is not a run directory" in flat(r)


def test_device_map_under_torchrun_is_refused(tmp_path, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) a model spread with a device_map cannot also be one per process."""
    config = tmp_path / "spread.yaml"
    config.write_text(yaml.safe_dump(dict(name="spread", models=[dict(name="big", device_map="auto")],
                                          datasets=[dict(name="world")], methods=[dict(name="r-rome")])))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    r = CliRunner().invoke(app, ["run", str(config), "--root", str(tmp_path)])
    assert r.exit_code == 2 and "big have a device_map" in flat(r) and "run this config as one process" in flat(r)
    assert not (tmp_path / "spread").exists()  # refused before any run directory or process group


def test_a_second_process_is_refused_a_run_directory_in_use(tmp_path):
    """A run directory is locked by the process running it: another `goldenlayers run` on it exits 2 naming that
    process; once it ends (the OS drops its lock, even if killed) the directory runs again."""
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(dict(name="locked", models=[dict(name="default-gpt2")],
                                          datasets=[dict(name="world", limit=4)], methods=[dict(name="r-rome")],
                                          output_dir=str(tmp_path))))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom goldenlayers.runs import RunDir, load_config\n"
         f"run = RunDir.create_or_resume(load_config({str(config)!r}), command='holder')\n"
         "print('locked', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = CliRunner().invoke(app, ["run", str(config), "--dry-run"], env={"COLUMNS": "120"})
        assert r.exit_code == 2, r.output
        assert f"is in use by process {holder.pid} on" in flat(r) and "(holder, since" in flat(r)
    finally:
        holder.kill()
        holder.wait()
    r = CliRunner().invoke(app, ["run", str(config), "--dry-run"])
    assert r.exit_code == 0, r.output
