"""Experiment configs (goldenlayers.runs.config): every shipped config loads and plans, and bad configs fail with
the path of the bad key."""

import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import yaml

from goldenlayers.runs import ConfigError, load_config, plan, validate_config
from goldenlayers.runs.config import dump_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
KNOWEDIT = {"zsre": "ZsRE-test-all.json", "wikibio": "wikibio-test-all.json", "wiki_counterfact": "test_cf.json",
            "wiki_recent": "recent_test.json", "counterfact": "counterfact.json"}
BASE = dict(name="t", models=[dict(name="default-gpt2")], datasets=[dict(name="world")],
            methods=[dict(name="r-rome")])


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate_config(data, "t.yaml")
    assert str(e.value).startswith("t.yaml is not a valid experiment config")
    return e.value.problems


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"paper-gpt2-xl.yaml", "paper-llama-2-7b.yaml", "paper-gemma-3-12b.yaml", "default.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_plans(path):
    cfg = load_config(path)
    assert path.read_text().splitlines()[0] == f"# goldenlayers run configs/{path.name}"
    jobs = plan(cfg)
    sel = cfg.selectors.pickers()
    swept = cfg.selectors.bruteforce.methods or [m.name for m in cfg.methods]
    picked = swept if cfg.selectors.bruteforce.split == "proxy" else []  # the test cases at brute force's pick
    per = len(sel) + len(swept) + len(cfg.methods) * len(sel) + len(picked)
    assert len(jobs) == len(cfg.models) * len(cfg.datasets) * per
    assert len({j.key for j in jobs}) == len(jobs)
    # the resolved dump reloads to the same config
    assert validate_config(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize("model", ["gpt2-xl", "llama-2-7b", "gemma-3-12b"])
def test_paper_grid(model):
    cfg = load_config(Path(__file__).parent.parent / "configs" / f"paper-{model}.yaml")
    assert [m.name for m in cfg.models] == [model]
    assert {d.name: Path(d.file).name for d in cfg.datasets} == KNOWEDIT
    assert [m.name for m in cfg.methods] == ["r-rome", "emmet", "rome"]
    assert cfg.selectors.names() == ["lga", "cma", "bruteforce"]
    assert cfg.split.proxy_fraction == 0.1
    assert cfg.dataset_file(cfg.datasets[0], "/x") == Path("/x/data/KnowEdit/ZsRE-test-all.json")


def test_default_grid_runs_on_the_embedded_models():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "default.yaml")
    assert [m.name for m in cfg.models] == ["default-gpt2", "default-llama"]
    assert [d.name for d in cfg.datasets] == ["world"] and cfg.datasets[0].file is None


@pytest.mark.parametrize("data, expected", [
    (dict(BASE, selectors=dict(lga=dict(kk=2))),
     "selectors.lga.kk: unknown key; allowed: variant, normalize, sign, absolute, batch_size, max_new_tokens, k, "
     "top, method (did you mean 'k'?)"),
    (dict(BASE, models=[dict(name="a", dtyp="float16")]),
     "models[0].dtyp: unknown key; allowed: name, path, dtype, device, device_map (did you mean 'dtype'?)"),
    (dict(BASE, methods=[dict(name="rome", hparam={})]), "methods[0].hparam: unknown key; allowed: name, preset, hparams"),
    (dict(BASE, outputdir="x"), "outputdir: unknown key"),
    (dict(BASE, selectors=dict(cma=dict(window=10, sample=3))), "selectors.cma.sample: unknown key"),
])
def test_unknown_keys_are_named_with_their_path(data, expected):
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


@pytest.mark.parametrize("data, expected", [
    (dict(BASE, models=[dict(name="a", dtype="fp8")]), "models[0].dtype: Input should be 'float32'"),
    (dict(BASE, split=dict(proxy_fraction=1.5)), "split.proxy_fraction: Input should be less than 1"),
    (dict(BASE, datasets=[dict(name="zrse", file="x.json")]), "datasets[0].name: unknown dataset 'zrse' (did you "
                                                              "mean 'zsre'?)"),
    (dict(BASE, datasets=[dict(name="zsre")]), "datasets[0]: dataset 'zsre' needs a 'file'"),
    (dict(BASE, datasets=[dict(name="world", limit=0)]), "datasets[0].limit: Input should be greater than"),
    (dict(BASE, methods=[dict(name="rrome")]), "methods[0].name: unknown editing method 'rrome' (did you mean"),
    (dict(BASE, metrics=["rewrite", "fluncy"]), "metrics: unknown metric 'fluncy' (did you mean 'fluency'?)"),
    (dict(BASE, methods=[dict(name="rome"), dict(name="rome")]), "methods: names must be unique, repeated: ['rome']"),
    (dict(BASE, methods=[dict(name="r-rome", preset="default-gpt2-qualty")]),
     "methods[0]: unknown preset 'default-gpt2-qualty' (did you mean 'default-gpt2-quality'?)"),
    (dict(BASE, methods=[dict(name="memit", preset="default-gpt2-quality")]),
     "methods[0]: preset 'default-gpt2-quality' has no settings for memit; it covers: r-rome, rome"),
    (dict(BASE, selectors=dict(bruteforce=dict(methods=["emmet"]))), "selectors.bruteforce.methods ['emmet'] are not"),
    (dict(BASE, selectors=dict(bruteforce=dict(layers="al"))), "selectors.bruteforce.layers: Input should be 'all'"),
    (dict(BASE, name="a b"), "name: String should match pattern"),
    ({k: v for k, v in BASE.items() if k != "methods"}, "methods: Field required"),
])
def test_bad_values_are_named_with_their_path(data, expected):
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


def test_several_problems_are_all_reported():
    ps = problems(dict(BASE, models=[dict(name="a", dtyp="x")], split=dict(seed="zero")))
    assert len(ps) == 2 and ps[0].startswith("models[0].dtyp") and ps[1].startswith("split.seed")


def test_files_that_are_not_configs(tmp_path):
    (tmp_path / "a.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_and_world_file():
    cfg = validate_config(dict(BASE, datasets=[dict(name="world", file="exports/test_cf.json")]))
    assert cfg.split.proxy_fraction == 0.1 and cfg.split.seed == 0
    assert cfg.metrics == ["rewrite", "rephrase", "locality", "portability", "fluency"]
    assert cfg.selectors.names() == ["race"] and cfg.batch.edit == 16
    assert cfg.dataset_file(cfg.datasets[0], "/r") == Path("/r/data/exports/test_cf.json")


def test_a_named_preset_gives_its_settings_with_the_overrides():
    """methods[].preset picks a preset by name (the quality presets of the default models): the job's hparams are
    that preset's settings, the config's overrides on top, the templates seed from the config."""
    from goldenlayers.editing.hparams import NEUTRAL_PROMPTS, PRESETS, RomeSettings, resolve_settings
    from goldenlayers.runs.engine_jobs import method_hparams, method_settings

    cfg = validate_config(dict(BASE, seeds=dict(templates=7), methods=[
        dict(name="r-rome", preset="default-gpt2-quality", hparams=dict(v_lr=0.25)), dict(name="rome")]))
    hp = method_settings(cfg, SimpleNamespace(method="r-rome"), None, "default-gpt2")
    assert isinstance(hp, RomeSettings)
    assert hp == RomeSettings(**{**PRESETS["default-gpt2-quality"]["rome"], "v_lr": 0.25, "template_seed": 7})
    assert hp.v_lr == 0.25 and hp.template_seed == 7 and list(hp.preserve_prompts) == list(NEUTRAL_PROMPTS)
    assert hp != resolve_settings(None, "r-rome", "default-small", {"v_lr": 0.25, "template_seed": 7})
    # no preset: the overrides of the model's own preset (default-small for default-gpt2)
    assert method_hparams(cfg, SimpleNamespace(method="rome")) == {"template_seed": 7}
    plain = method_settings(cfg, SimpleNamespace(method="rome"), None, "default-gpt2")
    assert plain == RomeSettings(**{**PRESETS["default-small"]["rome"], "template_seed": 7})
    # the quality preset needs key statistics, so its jobs collect C; default-small's rome does not
    assert hp.mom2_adjustment and not plain.mom2_adjustment


def test_run_set_goes_to_the_methods_whose_settings_have_the_key():
    """`run --set`: a setting of one method's class only (MEMIT/EMMET's w) goes to the methods that have it; a key
    no configured method has is an error naming it, with the closest setting."""
    from goldenlayers.cli.run import with_overrides

    cfg = validate_config(dict(BASE, methods=[dict(name="r-rome"), dict(name="emmet")]))
    new = with_overrides(cfg, "t.yaml", None, ["mom2_update_weight=3", "v_lr=0.2"], None)
    assert [dict(m.hparams) for m in new.methods] == [{"v_lr": 0.2}, {"mom2_update_weight": 3, "v_lr": 0.2}]
    with pytest.raises(ConfigError, match=r"--set v_lrr: no configured method has this setting \(did you mean 'v_lr'"):
        with_overrides(cfg, "t.yaml", None, ["v_lrr=1"], None)


def test_selectors_are_keyed_by_registered_names_and_validated_by_their_settings_class():
    from goldenlayers.runs.engine_jobs import selector_name

    cfg = validate_config(dict(BASE, selectors={"cma": dict(window=1), "lga-neg-nofence": {}, "lga": None,
                                                "race": dict(method="r-rome", eta=2)}))
    assert cfg.selectors.names() == ["race", "lga-neg-nofence", "cma"]  # the registry's order; null left out
    assert [j.selector for j in plan(cfg) if j.kind == "select"] == ["race", "lga-neg-nofence", "cma"]
    neg = cfg.selectors.settings("lga-neg-nofence")  # the reading's fixed settings
    assert (type(neg).__name__, neg.sign, neg.k) == ("LGASettings", -1, None)
    assert cfg.selectors.settings("race").eta == 2 and cfg.selectors["race"].method == "r-rome"
    assert [selector_name(cfg, n) for n in cfg.selectors.names()] == ["race", "lga-neg-nofence", "cma-mlp-w1"]
    assert problems(dict(BASE, selectors={"lga-ng": {}})) == [
        "selectors.lga-ng: unknown selector 'lga-ng' (did you mean 'lga-neg' or 'lga'?); available: bruteforce, cma, "
        "lga, lga-abs, lga-cosine, lga-cosine-neg, lga-max, lga-neg, lga-neg-nofence, lga-nofence, lga-zscore, race"]
