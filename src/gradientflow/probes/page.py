"""A probe's findings, its last window and its figures as HTML: ``Probe.report`` (a self-contained
page, figures embedded as PNG) and ``Probe._repr_html_`` (the notebook view). Autoescaped: layer
names and messages are shown as text."""

from __future__ import annotations

import base64
import io
import math

from jinja2 import Environment, select_autoescape

COLUMNS = ("layer", "type", "activation", "units", "act_std", "saturated", "dead", "act_grad_norm",
           "weight_grad_norm", "update_ratio", "attn_entropy", "attn_collapsed", "time_grad_ratio")

_TABLE = """<table class="gf-probe">
<tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for c in columns %}<td>{{ fmt(r.get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table>"""

_FINDINGS = """{% if findings %}<ul>{% for f in findings %}<li><b>{{ f.kind }}</b>: {{ f.message }}<br>
<small>try: {{ f.recommendation }}</small></li>{% endfor %}</ul>{% else %}<p>No finding: every rule stayed
silent.</p>{% endif %}"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gradientflow probe</title>
<style>
 body { font: 15px/1.5 system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
 table { border-collapse: collapse; font-size: 13px; } td, th { border-bottom: 1px solid #ddd; padding: 3px 8px; }
 img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
</style></head><body>
<h1>gradientflow probe</h1>
<p>{{ steps }} steps watched, {{ windows }} windows; the table is the last window (steps {{ first }}–{{ last }}).</p>
<h2>Findings</h2>
""" + _FINDINGS + """
<h2>Last window</h2>
""" + _TABLE + """
{% if skipped %}<h2>Not probed</h2><ul>{% for name, why in skipped %}<li><code>{{ name }}</code>: {{ why }}</li>{% endfor %}</ul>{% endif %}
<h2>Figures</h2>
{% for stem, png in figures %}<img src="data:image/png;base64,{{ png }}" alt="{{ stem }}">{% endfor %}
</body></html>
"""


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _env() -> Environment:
    env = Environment(autoescape=select_autoescape(default=True))
    env.globals["fmt"] = _fmt
    return env


def last_window(history: list[dict]) -> list[dict]:
    if not history:
        return []
    last = history[-1]["last_step"]
    return [r for r in history if r["last_step"] == last]


def notebook(history: list[dict], findings: list, open_steps: int) -> str:
    """The notebook view: findings and the last closed window, without closing the open one."""
    rows = last_window(history)
    html = _env().from_string(_FINDINGS + (_TABLE if rows else "<p>No window closed yet.</p>")).render(
        findings=findings, rows=rows, columns=COLUMNS)
    if open_steps:
        html += f"<p><small>{open_steps} step(s) in the open window: summary() or flush() closes it.</small></p>"
    return html


def page(history: list[dict], findings: list, skipped: list[tuple[str, str]], steps: int) -> str:
    """The self-contained page: findings, the last window, the modules not probed and the figures."""
    from .. import plots

    rows = last_window(history)
    hists = {(r["last_step"], r["layer"]): (r["hist_lo"], r["hist_hi"], r["hist"])
             for r in history if isinstance(r.get("hist"), list)}  # attention heads and gates: table only
    figures = []
    for stem, fig in plots.probe_figures(history, hists):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        figures.append((stem.replace("_", " "), base64.b64encode(buffer.getvalue()).decode()))
    return _env().from_string(_PAGE).render(
        findings=findings, rows=rows, columns=COLUMNS, skipped=skipped, figures=figures, steps=steps,
        windows=len({r["last_step"] for r in history}), first=rows[0]["first_step"] if rows else 0,
        last=rows[0]["last_step"] if rows else 0)
