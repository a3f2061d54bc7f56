"""`report(run_dir)`: every table and figure the run's rows support, as markdown, PNGs and one self-contained
HTML page (paper Tables 1-10 and Figures 1-4; see tables.py and figures.py for the shapes).

Writes <out>/report.md, <out>/report.html and <out>/figures/*.png (out defaults to <run>/report). A part the
run cannot support (no brute-force rows, no proxy split, goldenlayers.selection.golden missing, ...) is left
out and listed, with the reason, under "Left out" in both documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from goldenlayers.evaluation.overall import DEFAULT_OVERALL, OverallSpec, overall
from goldenlayers.metric_names import higher_is_better
from goldenlayers.report import figures as F
from goldenlayers.report.data import RunData, Unavailable, golden_module, metric_curves
from goldenlayers.report.html import render_html
from goldenlayers.report.progress import partial_note, run_progress, summary
from goldenlayers.report.tables import (
    Table,
    pick_method,
    regret_tables,
    selector_means,
    selector_tables,
    table1,
    transfer_tables,
)
from goldenlayers.runs.rundir import RunDir
from goldenlayers.runs.store import failure_lines


class ReportSettings(BaseModel):
    """method: the editing method of Table 1, Tables 3-8 and Figures 1-3 (a model without brute-force rows of it
    falls back to its first swept method); table1_metric / table1_split: what Table 1 compares ("all" = every
    case); golden_metric: picks brute force's proxy golden layer (Tables 2/9/10, Figures 2-3); overall: the
    weights and fluency scale of Overall (goldenlayers.evaluation.overall.OverallSpec; default equal weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "r-rome"
    table1_metric: str = "rewrite"
    table1_split: Literal["test", "all"] = "test"
    golden_metric: str = "rewrite"
    overall: OverallSpec = DEFAULT_OVERALL
    alpha: float = Field(0.05, gt=0, lt=1)
    test: Literal["paired", "independent"] = "paired"
    digits: int = Field(4, ge=1, le=8)


@dataclass
class ReportOutput:
    dir: Path
    markdown: Path
    html: Path
    tables: list[Table]
    figures: dict[str, Path] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failure rows, grouped, then the first reasons
    status: str | None = None  # "Unfinished run: ..." when jobs of the plan are not done


def _affected(key: str, data: RunData) -> tuple[tuple[str, ...], str | None, str | None]:
    """(job kinds, model, dataset) whose unfinished jobs a table or figure (by its key) depends on."""
    cells = ("select", "bruteforce", "evaluate")
    if key.startswith("table2-"):
        for model in data.models():
            for ds in data.datasets(model):
                if key == f"table2-{model}-{ds}":
                    return cells, model, ds
        return cells, None, None
    if key.startswith("table10-"):
        return cells, None, key.removeprefix("table10-")
    if key == "fig3":
        return cells, None, None
    if key == "fig4":
        return ("select", "bruteforce"), None, None
    return ("bruteforce",), None, None  # Table 1, Tables 3-8, Figures 1-2: the brute-force sweep


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _figure1(data: RunData, s: ReportSettings) -> dict[str, object]:
    out = {}
    for model in [m for m in data.models() if data.methods(m)]:
        method = pick_method(data, model, s.method)
        panels = {ds: c for ds in data.datasets(model) if (c := metric_curves(data, model, ds, method, s.overall))}
        if panels:
            out[f"fig1-{_slug(model)}"] = (F.golden_curves(panels, f"{model}, {method}: per-layer test (solid) and "
                                                                   "proxy (dashed) means, golden layers marked"),
                                           f"Figure 1: per-layer metrics and proxy/test golden layers ({model})")
    if not out:
        raise Unavailable("needs brute-force rows on the test split")
    return out


def _figure2(data: RunData, s: ReportSettings) -> dict[str, object]:
    golden, maps, metric = golden_module(), {}, s.golden_metric
    for model in [m for m in data.models() if data.methods(m)]:
        method = pick_method(data, model, s.method)
        tests, proxies = {}, {}
        for ds in data.datasets(model):
            t, p = (data.matrix(model, ds, method, metric, split) for split in ("test", "proxy"))
            if t is not None and p is not None and t.layers == p.layers:
                tests[ds], proxies[ds] = t, p
        if tests and len({tuple(t.layers) for t in tests.values()}) == 1:
            union = golden.proxy_union(proxies, tests, higher_is_better(metric))
            maps[model] = golden.gap_matrix(tests, higher_is_better(metric), union_layer=union.layer)
    if not maps:
        raise Unavailable(f"needs brute-force {metric!r} rows on both the proxy and the test split")
    return {"fig2": (F.gap_heatmap(maps, f"Gap to each test set's best layer ({metric}); stars: test optimal, "
                                         "band: proxy-union golden layer"),
                     f"Figure 2: layer x dataset gap heatmap ({metric})")}


def _figure3(data: RunData, s: ReportSettings) -> dict[str, object]:
    values = {}
    for model in data.models():
        for ds in data.datasets(model):
            rows = {sel: means for (m, sel), (_, means) in
                    selector_means(data, model, ds, s.golden_metric, s.overall).items() if m == s.method}
            if rows:
                values[(model, ds)] = {sel: dict(means, overall=overall(means, s.overall)) for sel, means in rows.items()}
    if not values:
        raise Unavailable(f"needs test rows of {s.method!r} edited at selected layers")
    return {"fig3": (F.selector_bars(values, f"{s.method}: layer selectors compared on the test set"),
                     "Figure 3: LGA vs CMA (vs brute force's proxy golden layer), test-set metrics")}


def _figure4(data: RunData, s: ReportSettings) -> dict[str, object]:
    times = {m: t for m in data.models() if (t := data.runtimes(m))}
    if not times:
        raise Unavailable("needs selector rows or brute-force rows with seconds")
    return {"fig4": (F.runtime_bars(times, "Layer-search run time (log scale)"),
                     "Figure 4: run time of LGA vs CMA vs brute force (brute force: its proxy-set cells, unless it "
                     "recorded selector rows)")}


def report(run_dir: RunDir | str | Path, out: str | Path | None = None,
           settings: ReportSettings | None = None) -> ReportOutput:
    """Build the report of a run directory; see the module docstring."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    s = settings or ReportSettings()
    data, out = RunData(run.store), Path(out) if out else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    result = ReportOutput(out, out / "report.md", out / "report.html", [])

    def attempt(what: str, fn):
        try:
            return fn()
        except Unavailable as e:
            result.left_out.append(f"{what}: {e}")
            return None

    split = None if s.table1_split == "all" else "test"
    t1 = attempt("Table 1", lambda: table1(data, s.method, s.table1_metric, split, s.alpha, s.test, s.digits))
    result.tables += ([t1] if t1 else [])
    result.tables += attempt("Tables 2/9/10", lambda: selector_tables(data, s.method, s.golden_metric, s.overall,
                                                                      s.digits)) or []
    result.tables += attempt("Regret", lambda: regret_tables(data, s.golden_metric, s.overall, s.digits)) or []
    result.tables += attempt("Tables 3-8", lambda: transfer_tables(data, s.method, s.overall, s.digits,
                                                                   result.left_out)) or []
    if any(t.key.startswith("table2-") for t in result.tables):
        if "counterfact" not in data.datasets():
            result.left_out.append("Table 9: it is Table 2 on CounterFact, and the run has no counterfact rows")
        if len(data.models()) < 2:
            result.left_out.append("Table 10: compares models, and the run has one")
    states = run_progress(run)
    result.status = summary(states)
    for t in result.tables:
        note = partial_note(states, *_affected(t.key, data))
        if note:
            t.title, t.note = f"{t.title} (partial)", f"{t.note} {note}".strip()
    captions = {}
    for what, fn in (("Figure 1", _figure1), ("Figure 2", _figure2), ("Figure 3", _figure3), ("Figure 4", _figure4)):
        for name, (fig, caption) in (attempt(what, lambda fn=fn: fn(data, s)) or {}).items():
            result.figures[name] = F.save_png(fig, out / "figures" / f"{name}.png")
            note = partial_note(states, *_affected(name, data))
            captions[name] = f"{caption} (partial). {note}" if note else caption
    result.failures = failure_lines(run.store)
    meta, title = run.meta, f"goldenlayers report: {run.config.name}"
    md = [f"# {title}", "", *([f"**{result.status}**", ""] if result.status else []),
          f"Run directory: `{run.path}`; rows: {data.counts()}", ""]
    if result.left_out:
        md += ["## Left out", "", *(f"- {x}" for x in result.left_out), ""]
    if result.failures:
        md += ["## Failures", "", *(f"- {x}" for x in result.failures), ""]
    md += ["## Tables", ""] + [t.markdown() + "\n" for t in result.tables]
    md += ["## Figures", ""] + [f"![{captions[n]}](figures/{p.name})\n\n{captions[n]}\n" for n, p in
                                result.figures.items()]
    result.markdown.write_text("\n".join(md))
    result.html.write_text(render_html(title, meta, data.counts(), result.tables,
                                       [(captions[n], p) for n, p in result.figures.items()], result.left_out,
                                       (run.path / "config.yaml").read_text(), failures=result.failures,
                                       status=[result.status] if result.status else []))
    return result
