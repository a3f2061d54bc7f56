"""The paper's figures with matplotlib (Agg canvas; no pyplot, so no global backend state is touched).

- Figure 1 (section 4.2, Figure 5): per-layer metric curves on the test and proxy sets, with the test and
  proxy golden layers marked; one panel per (dataset, metric).
- Figure 2 (section 4.2): dataset x layer heatmap of the gap to each test set's best layer (blue small, red
  large), stars at the optimal layers, a yellow band at the proxy-union golden layer; one panel per model.
- Figure 3 (section 5.2.2): selector comparison bars (metrics x selectors) per (model, dataset).
- Figure 4 (section 5.2.3): run time of LGA vs CMA vs brute force per dataset, log scale; one panel per model.
Each function returns a Figure; `save_png(fig, path)` writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from goldenlayers.report.data import METRIC_ABBR, Curves, dataset_label, selector_family, selector_label
from goldenlayers.runs.schema import METRICS

_FAMILY_ORDER = ("lga", "cma", "bruteforce")
_FAMILY_LABEL = dict(lga="LGA", cma="CMA", bruteforce="BF")


TEST_STYLE = dict(color="C0", ls="-")  # test curve and its golden layer
PROXY_STYLE = dict(color="C3", ls=(0, (4, 3)))  # proxy curve's golden layer: red, dashed over the test line


def integer_layer_axis(ax, layers: list[int]) -> None:
    """Layer ticks at integers only, and half a layer of room on each side so that a golden-layer line at the
    first or last layer is drawn inside the axes, not on its frame."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(min(layers) - 0.5, max(layers) + 0.5)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def golden_curves(panels: dict[str, dict[str, Curves]], title: str) -> Figure:
    """Figure 1. panels: {dataset: {metric: Curves}}; rows = datasets, columns = the union of metrics."""
    seen = {m for per in panels.values() for m in per}
    metrics = [m for m in METRICS if m in seen] + sorted(seen - set(METRICS))
    if not panels or not metrics:
        raise ValueError("golden_curves needs at least one dataset with one metric")
    fig = _figure(3.0 * len(metrics), 2.4 * len(panels))
    axes = fig.subplots(len(panels), len(metrics), squeeze=False)
    for i, (ds, per) in enumerate(panels.items()):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            c = per.get(metric)
            if c is None:
                ax.set_axis_off()
                continue
            ax.plot(c.layers, c.test, color=TEST_STYLE["color"], marker="o", ms=3, label="test")
            ax.axvline(c.test_layer, lw=1.6, label=f"test golden {c.test_layer}", **TEST_STYLE)
            if c.proxy is not None:
                ax.plot(c.layers, c.proxy, color=PROXY_STYLE["color"], ls="--", marker="s", ms=3, label="proxy")
                # dashed on top of the solid test line: where both golden layers coincide both colours show
                ax.axvline(c.proxy_layer, lw=1.6, zorder=3, label=f"proxy golden {c.proxy_layer}", **PROXY_STYLE)
            integer_layer_axis(ax, c.layers)
            ax.set_title(f"{dataset_label(ds)}: {metric}", fontsize=9)
            ax.set_xlabel("layer", fontsize=8)
            ax.set_ylabel(METRIC_ABBR.get(metric, metric), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="best", framealpha=0.6)
    fig.suptitle(title, fontsize=10)
    return fig


def gap_heatmap(maps: dict[str, object], title: str) -> Figure:
    """Figure 2. maps: {model: GapMatrix-like (datasets, layers, gaps (D, L), optimal {dataset: [layers]},
    union_layer)}; one heatmap panel per model."""
    if not maps:
        raise ValueError("gap_heatmap needs at least one model")
    fig = _figure(max(8.0, 0.22 * max(len(g.layers) for g in maps.values()) + 2.5),
                  1.0 + sum(0.45 * len(g.datasets) + 1.4 for g in maps.values()))
    axes = fig.subplots(len(maps), 1, squeeze=False)[:, 0]
    for ax, (model, g) in zip(axes, maps.items(), strict=True):
        gaps = np.asarray(g.gaps, dtype=float)
        im = ax.imshow(gaps, aspect="auto", cmap="RdYlBu_r", vmin=0.0, vmax=max(float(gaps.max()), 1e-12),
                       interpolation="nearest")
        if g.union_layer is not None:
            x = g.layers.index(g.union_layer)
            ax.add_patch(Rectangle((x - 0.5, -0.5), 1.0, len(g.datasets), fill=False, edgecolor="gold", lw=3.5,
                                   label=f"proxy-union golden layer {g.union_layer}"))
        xs, ys = zip(*[(g.layers.index(layer), i) for i, d in enumerate(g.datasets) for layer in g.optimal[d]],
                     strict=True)
        ax.scatter(xs, ys, marker="*", s=70, color="white", edgecolors="black", linewidths=0.6, label="test optimal")
        ax.set_yticks(range(len(g.datasets)), [dataset_label(d) for d in g.datasets], fontsize=8)
        step = max(1, len(g.layers) // 24)
        ax.set_xticks(range(0, len(g.layers), step), [str(x) for x in g.layers[::step]], fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
        fig.colorbar(im, ax=ax, label="gap to best layer")
    fig.suptitle(title, fontsize=10)
    return fig


def selector_bars(values: dict[tuple[str, str], dict[str, dict[str, float]]], title: str) -> Figure:
    """Figure 3. values: {(model, dataset): {selector: {metric: value}}}; one panel per (model, dataset),
    metrics on x (those on a 0-1 scale: fluency, in bits, stays in the tables), one bar per selector."""
    if not values:
        raise ValueError("selector_bars needs at least one (model, dataset)")
    n = len(values)
    cols = min(n, 4)
    fig = _figure(3.6 * cols, 2.8 * ((n + cols - 1) // cols))
    axes = fig.subplots((n + cols - 1) // cols, cols, squeeze=False).ravel()
    for ax, ((model, ds), per) in zip(axes, values.items(), strict=False):
        metrics = [m for m in METRICS if m != "fluency" and any(m in v for v in per.values())]
        width = 0.8 / max(1, len(per))
        for k, (selector, v) in enumerate(per.items()):
            x = np.arange(len(metrics)) + (k - (len(per) - 1) / 2) * width
            ax.bar(x, [v.get(m, np.nan) for m in metrics], width, label=selector_label(selector))
        ax.set_xticks(range(len(metrics)), [METRIC_ABBR.get(m, m) for m in metrics], fontsize=8)
        ax.set_title(f"{model}: {dataset_label(ds)}", fontsize=9)
        ax.set_ylabel("test mean", fontsize=8)
        ax.set_ylim(0, 1.0)
    for ax in axes[n:]:
        ax.set_axis_off()
    handles = {lab: h for ax in axes[:n] for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def runtime_bars(times: dict[str, dict[str, dict[str, float]]], title: str) -> Figure:
    """Figure 4. times: {model: {dataset: {selector family: seconds}}}; log-scale seconds, one panel per model."""
    if not times:
        raise ValueError("runtime_bars needs at least one model")
    fig = _figure(7.0, 3.0 * len(times))
    axes = fig.subplots(len(times), 1, squeeze=False)[:, 0]
    for ax, (model, per_ds) in zip(axes, times.items(), strict=True):
        datasets = list(per_ds)
        families = [f for f in _FAMILY_ORDER if any(f in per_ds[d] for d in datasets)]
        families += sorted({selector_family(f) for d in datasets for f in per_ds[d]} - set(families))
        width = 0.8 / max(1, len(families))
        for k, fam in enumerate(families):
            x = np.arange(len(datasets)) + (k - (len(families) - 1) / 2) * width
            bars = ax.bar(x, [per_ds[d].get(fam, np.nan) for d in datasets], width, label=_FAMILY_LABEL.get(fam, fam))
            ax.bar_label(bars, fmt="%.3g s", fontsize=7)
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(range(len(datasets)), [dataset_label(d) for d in datasets], fontsize=8)
        ax.set_ylabel("seconds (log scale)", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
