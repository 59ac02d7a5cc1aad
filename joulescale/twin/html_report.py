"""One self-contained HTML page of a comparison: the setting, the table, the verdict and the plots.

Self-contained because a report is mailed, attached and opened offline: the plots are PNG data
URIs, the style is inline, there is no script, and the page's Content-Security-Policy forbids
any fetch, so a browser opening it makes no network request.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

from joulescale.twin import report
from joulescale.twin.compare import Comparison
from joulescale.twin.plots import Plot

PAGE_NAME = "report.html"
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.config td { text-align: left; font-family: monospace; word-break: break-word; }
tr.baseline td { font-weight: bold; }
p.verdict { font-size: 1.05em; background: #f3f7ee; border-left: 4px solid #6a9a3a; padding: 0.6em 1em; }
pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; }
figure { margin: 2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 60em; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _config_rows(config: dict[str, object]) -> str:
    rows = []
    for key, value in config.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        rows.append(f"<tr><th>{_esc(key)}</th><td>{_esc(shown)}</td></tr>")
    return "\n".join(rows)


def _results_table(comparison: Comparison) -> str:
    header, rows = report.table_rows(comparison)
    head = "".join(f"<th>{_esc(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        css = ' class="baseline"' if row[0] == report.BASELINE else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>")
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure id="{_esc(plot.name)}"><img src="data:image/png;base64,{data}" alt="{_esc(plot.title)}">'
            f"<figcaption><b>{_esc(plot.title)}.</b> {_esc(plot.caption)}</figcaption></figure>")


def render_html(comparison: Comparison, plots: Sequence[Plot]) -> str:
    s = comparison.settings
    document = report.to_json(comparison)
    config = document["config"]
    assert isinstance(config, dict)
    verdict = report.slo_verdict(comparison)
    title = f"JouleScale twin: {s.trace} at load {s.load:g}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<pre>{_esc(report.preamble(comparison))}</pre>",
        "<h2>Result</h2>",
        _results_table(comparison),
        *([f'<p class="verdict">{_esc(verdict)}</p>'] if verdict else []),
        f'<p class="conclusion">{_esc(report.conclusion(comparison))}</p>',
        "<h2>Plots</h2>",
        *(_figure(plot) for plot in plots),
        "<h2>Configuration</h2>",
        f'<table class="config"><tbody>\n{_config_rows(config)}\n</tbody></table>',
        f"<p>Simulated in {comparison.wall_s:.1f} s of wall time.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(comparison: Comparison, plots: Sequence[Plot], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PAGE_NAME
    path.write_text(render_html(comparison, plots), encoding="utf-8")
    return path


__all__ = ["CONTENT_SECURITY_POLICY", "PAGE_NAME", "render_html", "write_html"]
