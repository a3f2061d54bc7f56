"""Report tables in the paper's shapes, rendered as markdown and HTML.

- Table 1 (paper section 4.1): per model, sample-wise optimal vs golden layer (mean ± std over test cases of a
  metric, rewrite by default) and "Statistical Difference" (Student t-test, goldenlayers.selection.golden).
- Tables 2 / 9 (section 5.2.1, Appendix B.3): per model and dataset, rows editing method x layer selector (the
  layer LGA or CMA chose; "BF (proxy golden)": brute force's golden layer on the proxy set, `golden_metric`,
  rewrite by default, as the paper defines golden layers by Rewrite Accuracy), columns RwA, RpA,
  LOC, PRT, FLC and OV on the test set; Table 10: rows model x selector for one method.
- Tables 3-8 (Appendix B.2): per metric, the proxy golden layer and the test golden layer with the test-set
  score at each, per model and dataset.
Overall is the fixed per-row score of goldenlayers.evaluation.overall; its definition is stated under each table.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from goldenlayers.evaluation.overall import OverallSpec, overall, overall_note
from goldenlayers.metric_names import COUNTERFACT_ROME_METRICS, ROME_SCORE, ROME_SCORE_PARTS, harmonic_mean
from goldenlayers.report.data import (
    BRUTEFORCE,
    METRIC_ABBR,
    RunData,
    Unavailable,
    dataset_label,
    golden_module,
    method_label,
    metric_curves,
    selector_family,
    selector_label,
)
from goldenlayers.runs.schema import HIGHER_IS_BETTER, METRICS

DASH = "—"


@dataclass
class Table:
    """columns: flat header; groups: optional (label, span) header row above it (HTML colspans; markdown
    prefixes the label to the spanned column names); rows: cells already formatted as strings."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    groups: list[tuple[str, int]] | None = None
    note: str = ""

    def _flat_columns(self) -> list[str]:
        if not self.groups:
            return list(self.columns)
        labels = [g for g, span in self.groups for _ in range(span)]
        return [f"{g} {c}".strip() for g, c in zip(labels, self.columns, strict=True)]

    def markdown(self) -> str:
        cols = self._flat_columns()
        lines = [f"**{self.title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines + ([f"\n_{self.note}_"] if self.note else []))

    def html(self) -> str:
        e = html.escape
        head = ""
        if self.groups:
            head += "<tr>" + "".join(f'<th colspan="{span}">{e(g)}</th>' for g, span in self.groups) + "</tr>"
        head += "<tr>" + "".join(f"<th>{e(c)}</th>" for c in self.columns) + "</tr>"
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        note = f'<p class="note">{e(self.note)}</p>' if self.note else ""
        return (f'<table id="{e(self.key)}"><caption>{e(self.title)}</caption><thead>{head}</thead>'
                f"<tbody>{body}</tbody></table>{note}")


def num(v: float | None, digits: int = 4) -> str:
    return DASH if v is None or v != v else f"{v:.{digits}f}"  # None or NaN: a dash


def header(metric: str) -> str:
    return f"{METRIC_ABBR[metric]}({'↑' if HIGHER_IS_BETTER[metric] else '↓'})"


def pick_method(data: RunData, model: str, wanted: str) -> str:
    """`wanted` when the model has brute-force rows for it, else the first swept method."""
    methods = data.methods(model)
    if not methods:
        raise Unavailable(f"{model}: no brute-force rows")
    return wanted if wanted in methods else methods[0]


def _ms(golden, c, which: str, digits: int) -> str:
    """The paper's "mean±std" cell of a GoldenComparison (which: optimal | golden)."""
    return DASH if c is None else golden.mean_std(getattr(c, f"{which}_mean"), getattr(c, f"{which}_std"), digits)


def table1(data: RunData, method: str = "r-rome", metric: str = "rewrite", split: str | None = "test",
           alpha: float = 0.05, test: str = "paired", digits: int = 4) -> Table:
    golden = golden_module()
    models = [m for m in data.models() if data.methods(m)]
    if not models:
        raise Unavailable("needs brute-force rows (selector 'bruteforce'); the run has none")
    datasets = [d for d in data.datasets() if any(d in data.datasets(m) for m in models)]
    rows, used = [], set()
    for model in models:
        meth = pick_method(data, model, method)
        used.add(meth)
        cells = []
        for ds in datasets:
            m = data.matrix(model, ds, meth, metric, split)
            try:
                cells.append(None if m is None else golden.compare_golden(
                    m, alpha=alpha, test=test, higher_is_better=HIGHER_IS_BETTER[metric]))
            except ValueError:  # fewer than 2 complete cases
                cells.append(None)
        rows += [
            [model, "Sample-Wise Optimal Layer", *(_ms(golden, c, "optimal", digits) for c in cells)],
            ["", "Golden Layer", *(_ms(golden, c, "golden", digits) for c in cells)],
            ["", "Golden layer index", *(DASH if c is None else str(c.golden_layer) for c in cells)],
            ["", "Statistical Difference", *(DASH if c is None else f"{c.verdict} (p={c.p:.3g}, n={c.n})"
                                              for c in cells)],
        ]
    note = (f"{METRIC_ABBR[metric]} of {', '.join(sorted(map(method_label, used)))} edits on the "
            f"{split or 'full'} set, mean±std over cases; {test} Student t-test, alpha={alpha}.")
    return Table("table1", f"Table 1: golden vs sample-wise optimal layer ({metric})",
                 ["Model", "", *map(dataset_label, datasets)], rows, note=note)


def transfer_tables(data: RunData, method: str = "r-rome", spec: OverallSpec | None = None, digits: int = 4,
                    left_out: list[str] | None = None) -> list[Table]:
    """Tables 3-8: one per metric with data; a dataset column pair (Layer, score) where the metric exists. A metric
    without brute-force rows is listed in `left_out` (when given) with the reason."""
    models = [m for m in data.models() if data.methods(m)]
    if not models:
        raise Unavailable("need brute-force rows (selector 'bruteforce'); the run has none")
    curves = {(model, ds): metric_curves(data, model, ds, pick_method(data, model, method), spec)
              for model in models for ds in data.datasets(model)}
    tables = []
    for number, metric in enumerate(METRICS, start=3):
        datasets = [d for d in data.datasets() if any(metric in c for (m, dd), c in curves.items() if dd == d)]
        if not datasets:
            if left_out is not None:
                why = ("needs test-split brute-force rows of at least one metric that varies over the layers"
                       if metric == "overall" else f"no brute-force {metric!r} rows on the test split")
                left_out.append(f"Table {number} ({metric}): {why}")
            continue
        rows = []
        for model in models:
            for set_name in ("Proxy", "Test"):
                row = [model if set_name == "Proxy" else "", set_name]
                for ds in datasets:
                    c = curves.get((model, ds), {}).get(metric)
                    layer, score = (None, None) if c is None else (
                        (c.proxy_layer, c.proxy_score) if set_name == "Proxy" else (c.test_layer, c.test_score))
                    row += [DASH if layer is None else str(layer), num(score, digits)]
                rows.append(row)
        note = "Both rows scored on the test set: at the proxy set's golden layer and at the test set's own."
        if metric == "overall":
            note += " " + overall_note([m for m in METRICS if any(m in c for c in curves.values())], spec) + \
                " of each layer's means."
        tables.append(Table(f"table{number}", f"Table {number}: proxy vs test golden layer ({metric})",
                            ["Model", "Set", *[x for _ in datasets for x in ("Layer", metric.capitalize())]],
                            rows, groups=[("", 2), *[(dataset_label(d), 2) for d in datasets]], note=note))
    return tables


def selector_means(data: RunData, model: str, ds: str, golden_metric: str = "rewrite",
                   spec: OverallSpec | None = None) -> dict[tuple[str, str], tuple[str, dict[str, float]]]:
    """{(method, selector): (layers text, {metric: test mean})} for one model and dataset: the rows edited at a
    selector's chosen layer, and for each swept method "bruteforce" = its brute-force rows at the proxy set's
    golden layer of `golden_metric`."""
    out = {}
    for method, selector in data.picks(model, ds):
        means, layers, _ = data.means(model, ds, method, selector, "test")
        out[(method, selector)] = (",".join(map(str, layers)), means)
    for method in data.methods(model):
        c = metric_curves(data, model, ds, method, spec).get(golden_metric)
        if c is not None and c.proxy_layer is not None:
            means, _, _ = data.means(model, ds, method, BRUTEFORCE, "test", c.proxy_layer)
            out[(method, BRUTEFORCE)] = (str(c.proxy_layer), means)
    return out


def with_rome_score(means: dict) -> dict:
    """`means` plus ROME's Score (harmonic mean of ES, PS, NS) when the three are there."""
    if all(m in means for m in ROME_SCORE_PARTS):
        return {**means, ROME_SCORE: harmonic_mean(means[m] for m in ROME_SCORE_PARTS)}
    return means


def _row_label(selector: str) -> str:
    return "BF (proxy golden)" if selector == BRUTEFORCE else selector_label(selector)


def _selector_table(key: str, title: str, first: str, rows: dict, spec: OverallSpec | None, digits: int) -> Table:
    """rows: {(group label, selector): (layers text, means)}."""
    rows = {k: (layers, with_rome_score(means)) for k, (layers, means) in rows.items()}
    metrics = [m for m in (*METRICS, *COUNTERFACT_ROME_METRICS, ROME_SCORE)
               if m != "overall" and any(m in means for _, means in rows.values())]
    groups = list(dict.fromkeys(g for g, _ in rows))  # keep group order; brute force last within a group
    ordered = sorted(rows.items(), key=lambda kv: (groups.index(kv[0][0]), kv[0][1] == BRUTEFORCE))
    body, last = [], None
    for (group, selector), (layers, means) in ordered:
        body.append([group if group != last else "", _row_label(selector), layers,
                     *(num(means.get(m), digits) for m in metrics), num(overall(means, spec), digits)])
        last = group
    return Table(key, title, [first, "Selection", "Layer", *map(header, metrics), header("overall")], body,
                 note="Test-set means. " + overall_note(metrics, spec) + "; a row lacking a metric averages the "
                 "others.")


def _against_truth(data: RunData, model: str, ds: str, method: str, selector: str, layers: str, truth,
                   spec: OverallSpec | None, golden_metric: str):
    """A selector's SelectorScore against the test sweep `truth` (None without one or when its layer is not in it).
    Brute force's scores are the proxy curve it chose from, its seconds the proxy sweep's."""
    from goldenlayers.selection.regret import score_selector

    if truth is None or "," in layers or not layers or int(layers) not in truth.layers:
        return None
    if selector == BRUTEFORCE:  # the proxy curve it chose from, and the proxy sweep's time
        c = metric_curves(data, model, ds, method, spec)[golden_metric]
        sign = 1.0 if HIGHER_IS_BETTER[golden_metric] else -1.0
        scored = (c.layers, list(sign * c.proxy), data.sweep_seconds(model, ds, method, "proxy"))
    else:
        scored = data.selector_scores(model, ds, selector) or (None, None, float("nan"))
    return score_selector(selector, int(layers), truth, scored[2], scored[0], scored[1])


@dataclass
class Comparison:
    """Table 2 of one model, dataset and editing method, as `goldenlayers compare` and the demo print it: one row
    per selector (method, selector, layer, cases, the test means, overall, seconds, speedup_vs_bruteforce; with a
    test sweep also regret, regret_<metric>, spearman, cost), the definition of Overall used, and the ground
    truth (None without a brute-force sweep of the test set)."""

    rows: list[dict]
    normalisation: str
    truth: object = None


def comparison(data: RunData, model: str, ds: str, method: str, golden_metric: str = "rewrite",
               spec: OverallSpec | None = None) -> Comparison:
    """Table 2 computed from a run's rows (the one place it is computed; see `Comparison`)."""
    truth = data.truth(model, ds, method, spec)
    times = data.runtimes(model).get(ds, {})
    bf = times.get(BRUTEFORCE)
    rows, used = [], []
    for (meth, selector), (layers, means) in selector_means(data, model, ds, golden_metric, spec).items():
        if meth != method:
            continue
        seconds = times.get(selector_family(selector))
        row = dict(method=method, selector=selector, layer=layers,
                   cases=data.means(model, ds, method, selector, "test")[2] if selector != BRUTEFORCE else None,
                   **{m: v for m, v in means.items() if m != "overall"}, overall=overall(means, spec),
                   seconds=seconds, speedup_vs_bruteforce=bf / seconds if bf and seconds else None)
        s = _against_truth(data, model, ds, method, selector, layers, truth, spec, golden_metric)
        if s is not None:
            row.update({k: v for k, v in s.row().items() if k not in ("selector", "layer", "seconds")})
            row["cases"] = truth.cases
        used += [m for m in means if m not in used and m != "overall"]
        rows.append(row)
    order = ("lga", "cma", BRUTEFORCE)
    rows.sort(key=lambda r: (order.index(f) if (f := selector_family(r["selector"])) in order else len(order),
                             r["selector"]))
    note = overall_note([m for m in METRICS if m in used], spec) if used else ""
    return Comparison(rows, note, truth)


def regret_tables(data: RunData, golden_metric: str = "rewrite", spec: OverallSpec | None = None,
                  digits: int = 4) -> list[Table]:
    """Per model and dataset with brute-force rows on the test set: each selector's layer scored against that
    ground truth (goldenlayers.selection.regret): the test Overall there, regret in Overall and per metric,
    Spearman's rho of its layer scores with the per-layer test Overall, cost as a fraction of the test sweep."""
    golden_module()  # Unavailable without it
    tables = []
    for model in data.models():
        for ds in data.datasets(model):
            rows, metrics = [], []
            for (method, selector), (layers, _) in selector_means(data, model, ds, golden_metric, spec).items():
                truth = data.truth(model, ds, method, spec)
                s = _against_truth(data, model, ds, method, selector, layers, truth, spec, golden_metric)
                if s is None:
                    continue
                metrics = list(truth.means)
                rows.append([method_label(method), _row_label(selector), layers, num(s.metrics["overall"], digits),
                             num(s.regret["overall"], digits), *(num(s.regret[m], digits) for m in metrics),
                             num(s.spearman, 2), num(s.cost, 3)])
            if rows:
                tables.append(Table(f"regret-{model}-{ds}", f"Selectors vs brute force on the test set: {model} on "
                                    f"{dataset_label(ds)}", ["Edit", "Selection", "Layer", "OV(↑)", "Regret OV",
                                                             *(f"Regret {METRIC_ABBR[m]}" for m in metrics), "ρ",
                                                             "Cost"], rows,
                                    note="Scored on the brute-force sweep of the test set: OV at the chosen layer; "
                                    "regret = best test mean (Overall, or the metric) minus the mean at the chosen "
                                    "layer (fluency: the reverse); ρ: Spearman correlation of the selector's layer "
                                    "scores with the per-layer test Overall; cost: selector seconds / test-sweep "
                                    "seconds. " + overall_note(metrics, spec) + "."))
    if not tables:
        raise Unavailable("needs brute-force rows on the test split and rows edited at a selector's layer")
    return tables


def selector_tables(data: RunData, method: str = "r-rome", golden_metric: str = "rewrite",
                    spec: OverallSpec | None = None, digits: int = 4) -> list[Table]:
    """Tables 2/9 (per model and dataset: method x selector) and, with several models, Table 10 (per dataset:
    model x selector for `method`)."""
    tables, by_ds = [], {}
    for model in data.models():
        for ds in data.datasets(model):
            rows = selector_means(data, model, ds, golden_metric, spec)
            if not rows:
                continue
            by_ds.setdefault(ds, {}).update({(model, sel): v for (m, sel), v in rows.items() if m == method})
            rows = {(method_label(m), sel): v for (m, sel), v in rows.items()}
            number = 9 if ds == "counterfact" else 2  # the paper puts Counterfact's in Appendix B.3
            tables.append(_selector_table(f"table2-{model}-{ds}", f"Table {number}: {model} on {dataset_label(ds)}, "
                                          "editing method x layer selection", "Edit", rows, spec, digits))
    if len(data.models()) > 1:
        tables += [_selector_table(f"table10-{ds}", f"Table 10: {method_label(method)} on {dataset_label(ds)}, "
                                   "model x layer selection", "Model", rows, spec, digits)
                   for ds, rows in by_ds.items() if rows]
    if not tables:
        raise Unavailable("need test rows edited at a selector's layer, or brute-force rows with "
                          "a proxy split; the run has neither")
    return tables
