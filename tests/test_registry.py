"""The generic Registry (goldenlayers/registry.py) and the five registries built on it: aliases, lazy loading,
collisions, "did you mean", listing; metric directions shared by Overall, the store and the report; config
validation and report labels read the registries."""

import subprocess
import sys

import pytest

from goldenlayers.registry import (
    DATASETS,
    METHODS,
    METRICS,
    SELECTORS,
    NameCollisionError,
    Registry,
    UnknownNameError,
    did_you_mean,
)


def test_register_get_aliases_and_normalised_spelling():
    reg = Registry("widget", normalise=str.lower)
    a = reg.register("alpha", object(), aliases=("a",))
    assert reg.get("alpha") is a and reg.get("a") is a and reg.get("ALPHA") is a
    assert reg.names() == ["alpha"] and reg.aliases("alpha") == ["a"]
    assert "a" in reg and "beta" not in reg and reg.canonical("A") == "alpha"


def test_collisions_are_refused_unless_the_same_entry_or_replace():
    reg = Registry("widget")
    first, other = object(), object()
    reg.register("alpha", first, aliases=("a",))
    reg.register("alpha", first)  # the same object again (a module imported twice): no-op
    with pytest.raises(NameCollisionError, match="a widget named 'alpha' is already registered"):
        reg.register("alpha", other)
    with pytest.raises(NameCollisionError, match=r"'a' is already registered \(as an alias of 'alpha'\)"):
        reg.register("beta", other, aliases=("a",))
    assert reg.get("alpha") is first and "beta" not in reg  # nothing half-registered
    reg.register("alpha", other, replace=True)
    assert reg.get("alpha") is other


def test_unknown_names_say_did_you_mean_and_list_what_exists():
    reg = Registry("widget")
    for name in ("gamma", "delta"):
        reg.register(name, name.upper())
    with pytest.raises(UnknownNameError) as e:
        reg.get("gamm")
    assert str(e.value) == "unknown widget 'gamm' (did you mean 'gamma'?); available: delta, gamma"
    assert isinstance(e.value, KeyError)
    with pytest.raises(ValueError, match="unknown widget 'zzz'; available: delta, gamma"):
        reg.check("zzz")
    assert did_you_mean("fluncy", ["fluency", "locality"]) == ["fluency"]


def test_lazy_entries_and_loaders_import_on_first_use():
    reg = Registry("json function", loaders=("goldenlayers.metric_names",))
    reg.register("dumps", "json:dumps")
    assert reg._entries["dumps"] == "json:dumps"  # not imported yet
    import json

    assert reg.get("dumps") is json.dumps
    reg.register("dumps", json.dumps)  # the same object as the lazy entry resolves to: no collision
    code = ("import sys\nfrom goldenlayers.registry import METHODS\nassert 'torch' not in sys.modules\n"
            "names = METHODS.names()\nprint(names, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['alphaedit', 'emmet', 'memit', 'r-rome', 'rome'] True"  # loaded (importing the methods) on first use


def test_restoring_undoes_registrations():
    with DATASETS.restoring():
        from goldenlayers.datasets import DatasetSpec, register_dataset

        register_dataset(DatasetSpec("mine", "a test set", lambda path, name: ([], None)))
        assert "mine" in DATASETS.names()
    assert "mine" not in DATASETS.names()


def test_the_five_registries_hold_the_built_ins():
    assert METHODS.get("R_ROME").name == "r-rome"
    assert SELECTORS.get("golden") is SELECTORS.get("bruteforce")
    assert SELECTORS.get("lga").settings_class.__name__ == "LGASettings"
    assert SELECTORS.get("bruteforce").scores_fn.__name__ == "bruteforce_select"
    assert SELECTORS.get("lga-neg").family == "lga" and SELECTORS.get("lga-neg").defaults == dict(sign=-1)
    assert DATASETS.get("wiki_counterfact").display == "WikiCounterfact"
    assert METRICS.get("fluency").higher_is_better is False and METRICS.get("rewrite").abbr == "RwA"


def test_one_direction_for_overall_the_store_and_golden_layers():
    from goldenlayers.evaluation.metrics import LOWER_IS_BETTER
    from goldenlayers.evaluation.overall import metric_score, overall
    from goldenlayers.runs.schema import HIGHER_IS_BETTER
    from goldenlayers.selection.golden import higher_is_better

    lower = {m for m in METRICS.names() if not METRICS.get(m).higher_is_better}
    assert lower == set(LOWER_IS_BETTER) == {m for m, up in HIGHER_IS_BETTER.items() if not up} == {"fluency"}
    assert all(higher_is_better(m) == METRICS.get(m).higher_is_better for m in METRICS.names())
    # fluency 6.644/2 bits scores 0.5; Overall = mean(0.9, 0.5) = 0.7
    assert metric_score("fluency", 3.321928094887362) == pytest.approx(0.5)
    assert overall({"rewrite": 0.9, "fluency": 3.321928094887362}) == pytest.approx(0.7)


def test_a_registered_metric_flag_flips_overall():
    from goldenlayers.evaluation.overall import metric_score
    from goldenlayers.metric_names import Metric

    with METRICS.restoring():
        METRICS.register("rewrite", Metric("rewrite", "RwA", "x", higher_is_better=False), replace=True)
        assert metric_score("rewrite", 0.0) == 1.0  # now negated, as fluency is
    assert metric_score("rewrite", 0.0) == 0.0


def test_report_labels_read_the_registries():
    from goldenlayers.report.data import (
        METRIC_ABBR,
        dataset_label,
        method_label,
        selector_family,
        selector_label,
    )

    assert [method_label(m) for m in ("r-rome", "emmet", "mine")] == ["R-ROME", "EMMET", "mine"]
    assert [dataset_label(d) for d in ("zsre", "world", "mine")] == ["ZsRE", "World", "mine"]
    assert [selector_label(s) for s in ("lga", "cma-mlp-w10", "bruteforce", "golden")] == \
        ["LGA", "CMA (mlp-w10)", "BF", "BF"]
    assert selector_family("cma-mlp-w10") == "cma" and selector_family("golden") == "bruteforce"
    assert METRIC_ABBR["overall"] == "OV" and METRIC_ABBR["efficacy_score"] == "ES"


def test_config_accepts_a_newly_registered_dataset_and_method():
    from goldenlayers.editing import get_method
    from goldenlayers.editing.registry import EditMethod, register_method
    from goldenlayers.runs.config import DatasetSpec, MethodSpec

    rome = get_method("rome")
    with METHODS.restoring(), DATASETS.restoring():
        register_method(EditMethod("my-rome", rome.family, rome.site, rome.batch, rome.multi_layer, rome.apply,
                                   "ROME under another name"))
        from goldenlayers.datasets import DatasetSpec as Data
        from goldenlayers.datasets import register_dataset

        register_dataset(Data("mine", "a test set", lambda path, name: ([], None)))
        assert MethodSpec(name="My_Rome").name == "my-rome"
        assert DatasetSpec(name="mine", file="x.json").name == "mine"
    with pytest.raises(ValueError, match="unknown editing method 'my-rome'"):
        MethodSpec(name="my-rome")
