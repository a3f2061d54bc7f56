"""Adding a layer selector is one file plus one `register_selector` line (docs/architecture.md "To add ...";
docs/selection.md "Adding a selector"): a toy selector defined and registered here, in the test, runs through
`goldenlayers.selection.select_layer`, a run config's `selectors` section (its settings validated by its own
settings class) and the run engine's select and evaluate jobs, without a change anywhere else."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sqlite3

import pytest
import runs_helpers
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from goldenlayers.cases import EditCase
from goldenlayers.models.adapters import get_adapter
from goldenlayers.models.tiny import tiny_model, tiny_tokenizer
from goldenlayers.registry import SELECTORS, UnknownNameError
from goldenlayers.runs import ConfigError, RunDir, execute, load_config, validate_config
from goldenlayers.runs.engine import make_engine
from goldenlayers.selection import LayerScores, Selector, register_selector, select_layer
from goldenlayers.selection.table import dataset_label


class WeightNormSettings(BaseModel):
    """power: the score of a layer is the Frobenius norm of its down-projection to this power."""

    model_config = ConfigDict(extra="forbid")

    power: float = Field(1.0, gt=0)

    @property
    def name(self) -> str:  # its name in run stores
        return f"wnorm-p{self.power:g}"


def weight_norm_scores(inp, s: WeightNormSettings) -> LayerScores:
    """The toy selector: every layer scored by ||W_down||_F ** power (the cases only label the table)."""
    adapter = get_adapter(inp.model)
    layers = list(inp.layers) if inp.layers is not None else list(range(adapter.n_layers(inp.model)))
    scores = [float(adapter.down_proj_module(inp.model, layer).weight.double().norm()) ** s.power for layer in layers]
    return LayerScores(s.name, dataset_label(c.dataset for c in inp.cases), inp.model_name or "-", layers, scores,
                       cases=len(inp.cases))


def norms(model) -> list[float]:
    adapter = get_adapter(model)
    return [torch.linalg.matrix_norm(adapter.down_proj_module(model, layer).weight.double()).item()
            for layer in range(adapter.n_layers(model))]


@pytest.fixture
def wnorm():
    """The toy selector registered for one test (the registry is restored afterwards)."""
    with SELECTORS.restoring():
        yield register_selector(Selector("wnorm", "WN", "weight norm of the down-projection", weight_norm_scores,
                                         WeightNormSettings))
    assert "wnorm" not in SELECTORS


CASES = [EditCase(case_id=f"c{i}", dataset="zsre", subject="Tom Baker", prompt="Tom Baker works for",
                  target_new="Acme") for i in range(2)]


def test_a_registered_selector_runs_through_select_layer(wnorm):
    model, tok = tiny_model("gpt2", n_layers=4), tiny_tokenizer()
    expected = norms(model)
    sel = select_layer(model, tok, CASES, "wnorm", power=2, progress=False)
    assert sel.selector == "wnorm" and sel.pick is None and sel.table.selector == "wnorm-p2"
    assert sel.table.scores.tolist() == pytest.approx([n ** 2 for n in expected], rel=1e-12)
    assert sel.layer == max(range(4), key=lambda layer: expected[layer]) and sel.seconds > 0
    part = select_layer(model, tok, CASES, "wnorm", layers=[0, 2], settings=WeightNormSettings(power=1))
    assert part.table.layers == [0, 2] and part.table.scores.tolist() == pytest.approx([expected[0], expected[2]])
    with pytest.raises(ValidationError, match="powr"):
        select_layer(model, tok, CASES, "wnorm", powr=2)
    with pytest.raises(UnknownNameError, match="did you mean 'wnorm'"):
        select_layer(model, tok, CASES, "wnorn")


def test_a_registered_selector_runs_in_a_run_config(wnorm, tmp_path):
    config = dict(models=[dict(name="default-gpt2", device="cpu")], datasets=[dict(name="world", limit=6)],
                  split=dict(proxy_fraction=0.34, seed=1), methods=[dict(name="r-rome")],
                  selectors=dict(wnorm=dict(power=3)), metrics=["rewrite", "locality"])
    with pytest.raises(ConfigError) as e:
        validate_config(dict(config, name="t", selectors=dict(wnorm=dict(powr=3))), "t.yaml")
    assert e.value.problems == ["selectors.wnorm.powr: unknown key; allowed: power, method (did you mean 'power'?)"]
    cfg = load_config(runs_helpers.write_config(tmp_path, "toy", config))
    assert cfg.selectors.names() == ["wnorm"] and cfg.selectors.settings("wnorm") == WeightNormSettings(power=3)
    engine = make_engine(progress=False)
    with RunDir.create_or_resume(cfg) as run:
        summary = execute(run, engine)
        model = engine.model(cfg.models[0]).model
    engine.close()
    assert not summary.failed and sorted(summary.done) == ["default-gpt2/world/evaluate/r-rome/wnorm",
                                                          "default-gpt2/world/select/-/wnorm"]
    with sqlite3.connect(run.path / "store.sqlite") as c:
        scored = c.execute("SELECT layer, score, cases FROM selectors WHERE selector = 'wnorm-p3' ORDER BY layer")
        scored = scored.fetchall()
        edited = c.execute("SELECT DISTINCT layer, selector, split FROM results").fetchall()
    expected = norms(model)
    assert [layer for layer, _, _ in scored] == list(range(len(expected)))
    assert [s for _, s, _ in scored] == pytest.approx([n ** 3 for n in expected], rel=1e-12)
    assert {cases for *_, cases in scored} == {2}  # round(0.34 x 6) proxy cases
    best = max(range(len(expected)), key=lambda layer: expected[layer])
    assert edited == [(best, "wnorm-p3", "test")]  # the test cases edited at the toy selector's layer
