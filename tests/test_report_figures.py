"""Report figures (goldenlayers.report.figures): the matplotlib objects carry the data and axes they should, and
the PNGs are written and non-empty. Inputs are small hand-made arrays (test fixtures, not results)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from goldenlayers.report import figures as F
from goldenlayers.report.data import Curves


def curves(metric, test, proxy=None):
    test = np.asarray(test, dtype=float)
    t = int(np.argmax(test))
    c = Curves(metric, list(range(len(test))), test, t, float(test[t]), None if proxy is None else np.asarray(proxy))
    if proxy is not None:
        c.proxy_layer = int(np.argmax(proxy))
        c.proxy_score = float(test[c.proxy_layer])
    return c


def png_ok(path, min_bytes=5000):
    img = imread(path)
    assert path.stat().st_size > min_bytes and img.ndim == 3 and img[..., :3].std() > 0.05
    return img


def test_golden_curves(tmp_path):
    panels = {"zsre": {"rewrite": curves("rewrite", [0.2, 0.9, 0.7], [0.3, 0.6, 0.8]),
                       "overall": curves("overall", [0.1, 0.5, 0.4])},
              "wikibio": {"rewrite": curves("rewrite", [0.5, 0.4, 0.6], [0.5, 0.7, 0.6])}}
    fig = F.golden_curves(panels, "title")
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 datasets x 2 metrics (rewrite, then overall), wikibio has no overall
    ax = axes[0]
    assert ax.get_title() == "ZsRE: rewrite" and ax.get_xlabel() == "layer" and ax.get_ylabel() == "RwA"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["test"].get_ydata(), [0.2, 0.9, 0.7])
    np.testing.assert_allclose(lines["proxy"].get_ydata(), [0.3, 0.6, 0.8])
    assert lines["test golden 1"].get_xdata()[0] == 1 and lines["proxy golden 2"].get_xdata()[0] == 2
    assert axes[1].get_title() == "ZsRE: overall" and "proxy" not in {ln.get_label() for ln in axes[1].get_lines()}
    assert not axes[3].axison  # WikiBio has no overall panel
    png_ok(F.save_png(fig, tmp_path / "f1.png"))


def test_gap_heatmap(tmp_path):
    gaps = np.array([[0.3, 0.0, 0.1, 0.0], [0.2, 0.05, 0.0, 0.4]])
    g = SimpleNamespace(datasets=["zsre", "wikibio"], layers=[0, 1, 2, 3], gaps=gaps,
                        optimal={"zsre": [1, 3], "wikibio": [2]}, union_layer=1)
    fig = F.gap_heatmap({"gpt2-xl": g, "llama": SimpleNamespace(**{**vars(g), "union_layer": None})}, "t")
    ax = fig.get_axes()[0]
    np.testing.assert_allclose(ax.get_images()[0].get_array(), gaps)
    stars = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(stars).tolist())) == [(1.0, 0.0), (2.0, 1.0), (3.0, 0.0)]
    bands = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label().startswith("proxy-union")]
    assert len(bands) == 1 and bands[0].get_x() == 0.5 and bands[0].get_width() == 1.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ZsRE", "WikiBio"]
    assert len(fig.get_axes()) == 4  # 2 heatmaps + 2 colorbars
    assert not [p for p in fig.get_axes()[1].patches if p.get_label().startswith("proxy-union")]
    png_ok(F.save_png(fig, tmp_path / "f2.png"))


def test_selector_bars(tmp_path):
    values = {("m", "zsre"): {"cma": dict(rewrite=0.5, fluency=5.0, overall=0.2),
                              "lga": dict(rewrite=0.9, fluency=4.0, overall=0.8)},
              ("m", "wikibio"): {"lga": dict(rewrite=0.7, locality=0.6)}}
    fig = F.selector_bars(values, "t")
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["RwA", "OV"]  # fluency (bits) stays in the tables
    heights = [[b.get_height() for b in c] for c in ax.containers]
    assert heights == [[0.5, 0.2], [0.9, 0.8]]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["CMA", "LGA"]
    assert fig.get_axes()[1].get_title() == "m: WikiBio"
    png_ok(F.save_png(fig, tmp_path / "f3.png"))


def test_runtime_bars(tmp_path):
    times = {"gpt2-xl": {"zsre": {"bruteforce": 5000.0, "lga": 2.0, "cma": 300.0}, "wikibio": {"lga": 3.0}}}
    fig = F.runtime_bars(times, "t")
    ax = fig.get_axes()[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "seconds (log scale)"
    assert [c.get_label() for c in ax.containers] == ["LGA", "CMA", "BF"]
    h = [[b.get_height() for b in c] for c in ax.containers]
    assert h[0] == [2.0, 3.0] and h[1][0] == 300.0 and h[2][0] == 5000.0 and np.isnan(h[1][1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ZsRE", "WikiBio"]
    png_ok(F.save_png(fig, tmp_path / "f4.png"))


def test_empty_inputs_are_errors():
    for fn in (F.golden_curves, F.gap_heatmap, F.selector_bars, F.runtime_bars):
        with pytest.raises(ValueError):
            fn({}, "t")
