"""Key statistics in runs (goldenlayers.runs.engine): a method whose hparams need C (mom2_adjustment) gets it from
the shared cache, collected once from the model's own world; a second run reads the files instead of collecting
again and gives the same rows; the `stats` config section is validated; runs created before it resume."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import runs_helpers
import yaml
from runs_helpers import RESULT_KEY

from goldenlayers.editing.hparams import StatsSettings
from goldenlayers.editing.stats import with_source
from goldenlayers.runs import ConfigError, ConfigMismatchError, RunDir, execute, load_config, validate_config
from goldenlayers.runs.config import dump_config
from goldenlayers.runs.engine import make_engine

# R-ROME with C (shrunk towards I as in the quality presets) on 4 world edits: 1 proxy case for LGA, a sweep of
# layers 0 and 2, then the 3 test cases at LGA's layer. 5,000 tokens: ~10x d_ff (512) of default-gpt2, enough for
# these layers (layer 1's C needs ~30,000 tokens to pass check_stats' condition-number limit).
CONFIG = dict(
    models=[dict(name="default-gpt2", device="cpu")], datasets=[dict(name="world", limit=4)],
    split=dict(proxy_fraction=0.25, seed=1), methods=[dict(name="r-rome", hparams=dict(mom2_adjustment=True,
                                                                                      mom2_shrinkage=1.0))],
    selectors=dict(lga={}, bruteforce=dict(layers=[0, 2])), metrics=["rewrite", "locality"],
    stats=dict(tokens=5000),
)


def write_config(tmp: Path, name: str) -> Path:
    return runs_helpers.write_config(tmp, name, CONFIG)


def rows(store: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(store) as c:
        return dict(results=sorted(c.execute(f"SELECT {RESULT_KEY}, value, pre, split FROM results")),
                    failures=sorted(c.execute("SELECT case_id, layer, stage, reason FROM failures")),
                    jobs=sorted(c.execute("SELECT key, status, detail FROM jobs")))


def run(cfg: Path, monkeypatch) -> tuple[dict, object, list]:
    """Execute the config in-process; returns (store rows, engine, the `stats` each make_default_fns got)."""
    from goldenlayers.selection import bruteforce

    real, seen = bruteforce.make_default_fns, []

    def spy(*a, stats=None, **kw):
        seen.append(stats)
        return real(*a, stats=stats, **kw)

    monkeypatch.setattr(bruteforce, "make_default_fns", spy)
    engine = make_engine(progress=False)
    with RunDir.create_or_resume(load_config(cfg)) as rd:
        summary = execute(rd, engine)
    engine.close()
    assert not summary.failed, summary.failed
    return rows(rd.path / "store.sqlite"), engine, seen


def test_a_run_collects_key_statistics_once_and_reuses_them(tmp_path, monkeypatch, one_thread):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(cache))
    first, engine, seen = run(write_config(tmp_path, "a"), monkeypatch)

    # every cell edited with C: no failure rows, every job done, and the edits took
    assert first["failures"] == [] and [s for _, s, _ in first["jobs"]] == ["done"] * 3
    bf, ev = engine.log  # the sweep, then the evaluation at LGA's layer
    assert bf["cells"] == 8 and ev["cells"] == 3 and bf["failures"] == ev["failures"] == 0
    rewrite = [r[7] for r in first["results"] if r[6] == "rewrite"]
    assert len(rewrite) == 11 and sum(rewrite) / len(rewrite) >= 0.9, rewrite
    # the editor got C of the job's layers, read from the cache's files
    assert [sorted(s) for s in seen] == [[0, 2], ev["layers"]]
    assert all(type(s).__name__ == "CachedStats" for s in seen)

    # both sweep layers in one collection; the evaluation's layer collected only if the sweep had not
    assert bf["key_stats"] == dict(layers=[0, 2], collected=2)
    assert ev["key_stats"] == dict(layers=ev["layers"], collected=0 if ev["layers"][0] in (0, 2) else 1)
    files = sorted(cache.rglob("*.safetensors"))
    layers = sorted({0, 2, *ev["layers"]})
    assert [f.name for f in files] == [f"layer{x:03d}-tok5000-len256-float64.safetensors" for x in layers]
    # under the model (its name and identity), then the source (the tail of "world:<model folder>")
    assert all(f.parent.parent.name.startswith("default-gpt2-") and "models_default-gpt2-" in f.parent.name
               for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}

    # a second run (another run directory, same cache) reads the files: nothing collected, same rows
    second, engine2, _ = run(write_config(tmp_path, "b"), monkeypatch)
    assert [e["key_stats"]["collected"] for e in engine2.log] == [0, 0]
    assert {f: f.stat().st_mtime_ns for f in cache.rglob("*.safetensors")} == stamps
    assert second["results"] == first["results"] and second["failures"] == []
    assert "key statistics" in engine.timeline.seconds

    # a resumed sweep asks only for the layers that still have cells: layer 2's cells undone, the cache emptied
    for f in files:
        f.unlink()
    with sqlite3.connect(tmp_path / "runs" / "a" / "store.sqlite") as c:
        c.execute("DELETE FROM results WHERE selector = 'bruteforce' AND layer = 2")
        c.execute("DELETE FROM jobs WHERE key LIKE '%/bruteforce/%'")
    resumed, engine3, _ = run(write_config(tmp_path, "a"), monkeypatch)
    assert [(e["skipped"], e["cells"], e["key_stats"]) for e in engine3.log] == [(4, 4, dict(layers=[2], collected=1))]
    assert [f.name for f in cache.rglob("*.safetensors")] == ["layer002-tok5000-len256-float64.safetensors"]
    assert resumed["results"] == first["results"]


def test_settings_with_c_equal_to_i_collect_nothing(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("GOLDENLAYERS_CACHE", str(tmp_path / "cache"))
    cfg = yaml.safe_load(write_config(tmp_path, "plain").read_text())
    cfg.update(methods=[dict(name="r-rome")], selectors=dict(bruteforce=dict(layers=[1])),
               datasets=[dict(name="world", limit=2)])
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(cfg))
    out, engine, seen = run(tmp_path / "plain.yaml", monkeypatch)
    assert out["failures"] == [] and seen == [None] and engine.log[0]["key_stats"] is None
    assert not (tmp_path / "cache").exists()


def test_stats_source_defaults_to_the_models_world_and_is_required_otherwise():
    """The config's `stats` section is the editor's StatsSettings; its source defaults to the model's world."""
    cfg = validate_config(dict(name="t", models=[dict(name="default-llama"), dict(name="hf:gpt2-xl")],
                               datasets=[dict(name="world")], methods=[dict(name="emmet")]))
    assert isinstance(cfg.stats, StatsSettings)
    s = with_source(cfg.stats, cfg.models[0].source)
    assert s.source.startswith("world:") and Path(s.source[6:], "world.json").is_file()
    assert (s.tokens, s.max_length, s.dtype) == (100_000, 256, "float64")
    with pytest.raises(ValueError, match=r"hf:gpt2-xl has no synthetic world.*stats.source in a config"):
        with_source(cfg.stats, cfg.models[1].source)
    given = cfg.model_copy(update=dict(stats=cfg.stats.model_copy(update=dict(source="hf:wikitext"))))
    assert with_source(given.stats, given.models[1].source).source == "hf:wikitext"


@pytest.mark.parametrize("stats, expected", [
    (dict(token=10), "stats.token: unknown key; allowed: source, tokens, max_length, dtype (did you mean 'tokens'?)"),
    (dict(dtype="bfloat16"), "stats.dtype: Input should be 'float32' or 'float64'"),
    (dict(tokens=0), "stats.tokens: Input should be greater than or equal to 1"),
    (dict(source=""), "stats.source: String should have at least 1 character"),
])
def test_bad_stats_sections_are_named_with_their_path(stats, expected):
    data = dict(name="t", models=[dict(name="default-gpt2")], datasets=[dict(name="world")],
                methods=[dict(name="r-rome")], stats=stats)
    with pytest.raises(ConfigError) as e:
        validate_config(data, "t.yaml")
    assert any(p.startswith(expected) for p in e.value.problems), e.value.problems


def test_a_run_created_before_the_stats_section_resumes(tmp_path):
    cfg = load_config(write_config(tmp_path, "old"))
    with RunDir.create_or_resume(cfg):
        pass
    stored = tmp_path / "runs" / "old" / "config.yaml"
    data = yaml.safe_load(stored.read_text())
    del data["batch"]["stats"]
    data["stats"] = dict(tokens=5000)  # the explicit value; the other keys did not exist yet
    stored.write_text(yaml.safe_dump(data))
    with RunDir.create_or_resume(cfg):  # no ConfigMismatchError
        pass
    changed = cfg.model_copy(update=dict(stats=cfg.stats.model_copy(update=dict(tokens=6000))))
    with pytest.raises(ConfigMismatchError, match=r"stats.tokens: 5000 -> 6000"):
        RunDir.create_or_resume(changed)
    assert "stats: {source: null, tokens: 5000" in dump_config(cfg).replace("\n  ", " ")


@pytest.mark.slow
def test_two_gloo_processes_share_one_collection(tmp_path):
    """Both ranks of a torchrun launch need C of layers 0 and 2 at once: the cache lock lets one collect, the
    other read its files; the rows are those of a single-process run."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               GOLDENLAYERS_CACHE=str(tmp_path / "cache"))
    cfg = write_config(tmp_path, "two")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "goldenlayers", "run", str(cfg), "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    two = rows(tmp_path / "runs" / "two" / "store.sqlite")
    assert two["failures"] == [] and [s for _, s, _ in two["jobs"]] == ["done"] * 3
    assert not list((tmp_path / "cache").rglob("*.tmp*"))
    one = subprocess.run([sys.executable, "-m", "goldenlayers", "run", str(write_config(tmp_path, "one")),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert rows(tmp_path / "runs" / "one" / "store.sqlite")["results"] == two["results"]
