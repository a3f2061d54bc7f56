"""The self-contained HTML report: run metadata, every table, every figure embedded as a base64 PNG, and the
notes on what was left out. One file, no external resources (it opens offline and can be mailed around)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from goldenlayers.report.tables import Table

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #1d1d1f;
       max-width: 1150px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 12px 0 4px; font-size: 12.5px; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; white-space: nowrap; }
th, td { border: 1px solid #c8c8c8; padding: 3px 8px; text-align: right; }
th { background: #eef2f7; } td:first-child, td:nth-child(2) { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
p.note { font-size: 11.5px; color: #555; margin: 2px 0 14px; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid #e3e3e3; }
figcaption { font-size: 12px; color: #444; }
.meta td { text-align: left; } .left { color: #8a4b00; font-size: 12.5px; }
p.status { background: #fff4e5; border: 1px solid #e8a33d; padding: 6px 10px; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; font-size: 11px; overflow-x: auto; }
"""


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _text(v) -> str:
    """A metadata value as a reader writes it: no Python None, no raw dicts or lists."""
    if v is None:
        return "none"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_text(x)}" for k, x in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v) or "none"
    return str(v)


def _meta_table(meta: dict, counts: dict[str, int]) -> str:
    e = html.escape
    versions = dict(meta.get("versions", {}))
    if versions.get("gpus") is None:  # no CUDA in that session: say so once
        versions.pop("cuda", None)
        versions["gpus"] = "none (CPU)"
    items = [("run", meta.get("name", "")), ("created", meta.get("created_at", "")),
             ("sessions", str(len(meta.get("sessions", [])))), ("seeds", _text(meta.get("seeds", {}))),
             *((k, _text(v)) for k, v in versions.items()),
             *((f"{t} rows", str(n)) for t, n in counts.items())]
    return '<table class="meta"><tbody>' + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in items) + \
        "</tbody></table>"


def render_html(title: str, meta: dict, counts: dict[str, int], tables: list[Table],
                figures: list[tuple[str, Path]], left_out: list[str], config_yaml: str = "",
                failures: list[str] = (), status: list[str] = ()) -> str:
    """The report page. figures: (caption, PNG path) pairs, embedded; left_out: one line per missing part;
    failures: lines on the run's failure rows; status: lines shown first (e.g. that the run is unfinished)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             *(f'<p class="status">{e(x)}</p>' for x in status),
             "<h2>Run</h2>", _meta_table(meta, counts)]
    if left_out:
        parts.append("<h2>Left out</h2><ul>" + "".join(f'<li class="left">{e(x)}</li>' for x in left_out) + "</ul>")
    if failures:
        parts.append("<h2>Failures</h2><ul>" + "".join(f'<li class="left">{e(x)}</li>' for x in failures) + "</ul>")
    parts.append("<h2>Tables</h2>")
    parts += [t.html() for t in tables]
    parts.append("<h2>Figures</h2>")
    parts += [f'<figure><img alt="{e(cap)}" src="{png_data_uri(path)}"><figcaption>{e(cap)}</figcaption></figure>'
              for cap, path in figures]
    if config_yaml:
        parts.append(f"<h2>Config</h2><pre>{e(config_yaml)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
