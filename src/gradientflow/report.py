"""The report over the experiments' records: ``claims.json`` and one self-contained ``report.html``.

The HTML embeds every figure as a base64 PNG, so the file can be mailed or opened offline. Both
files are written atomically; ``claims.json`` holds exactly the records the HTML shows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

from jinja2 import Environment, select_autoescape

from . import jsontext
from .store import write_atomic

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gradientflow: the seeds' claims, measured</title>
<style>
 body { font: 15px/1.5 system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
 h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
 table { border-collapse: collapse; width: 100%; margin: 1em 0; font-size: 14px; }
 th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
 th { background: #f4f4f4; }
 .pass { background: #1a7f37; } .fail { background: #cf222e; } .error { background: #8250df; }
 .badge { color: white; border-radius: 4px; padding: 1px 8px; font-weight: 600; font-size: 13px; }
 section { border-top: 2px solid #eee; margin-top: 2.2em; padding-top: 0.6em; }
 blockquote { border-left: 4px solid #ccc; margin: 0.6em 0; padding: 0.2em 1em; color: #444; background: #fafafa; }
 img { max-width: 100%; border: 1px solid #eee; }
 code, pre { background: #f6f8fa; font-size: 13px; } pre { padding: 0.6em; overflow-x: auto; }
 .num td:first-child { font-family: monospace; }
</style></head><body>
<h1>gradientflow: the seeds' claims, measured</h1>
<p class="sub">{{ tally }} &middot;{% if seed is not none %} seed {{ seed }} &middot;
 {{ "quick" if quick else "full" }} size &middot;{% endif %} every verdict is computed from the numbers below
 by the rule stated with it.</p>
<table>
<tr><th>claim</th><th>verdict</th><th>what the numbers say</th></tr>
{% for c in claims %}
<tr><td><a href="#{{ c.id }}">{{ c.id }}</a></td><td><span class="badge {{ c.verdict }}">{{ c.verdict }}</span></td>
<td>{{ c.why }}</td></tr>
{% endfor %}
</table>
{% for c in claims %}
<section id="{{ c.id }}">
<h2>{{ c.id }} <span class="badge {{ c.verdict }}">{{ c.verdict }}</span></h2>
<blockquote>{{ c.claim }}<br><small>seed files {{ c.source }}; experiment <code>{{ c.experiment }}</code></small></blockquote>
<p><b>Measured:</b> {{ c.why }}</p>
<p><b>Rule:</b> {{ c.threshold }}</p>
{% if c.image %}<img src="data:image/png;base64,{{ c.image }}" alt="figure for {{ c.id }}">{% endif %}
{% if c.numbers %}<table class="num"><tr><th>number</th><th>value</th></tr>
{% for k, v in c.numbers.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
<p><b>Re-run alone:</b> <code>{{ c.command }}</code></p>
{% if c.lab %}<p><b>Live:</b> <a href="{{ c.lab }}">open in the lab</a> ({% if served %}this lab{% else %}start it with <code>gradientflow lab</code>; on another port or host, open this report from the lab: <code>gradientflow lab --report FOLDER</code>{% endif %})</p>{% endif %}
<details><summary>config</summary><pre>{{ c.config_json }}</pre></details>
</section>
{% endfor %}
</body></html>
"""


def _image(out: Path, figure) -> str | None:
    """The figure's PNG as base64, when ``figure`` names a plain file inside ``out`` (a claims.json from
    elsewhere may name any path: a link or a path leading out of the folder is not read)."""
    if not isinstance(figure, str) or not figure:
        return None
    path = out / figure
    try:
        inside = path.resolve().is_relative_to(out.resolve())
    except OSError:
        return None
    if not inside or path.is_symlink() or not path.is_file():
        return None
    return base64.b64encode(path.read_bytes()).decode()


def render(out: Path, claims: list[dict], *, seed: int | None, quick: bool, lab: str | None = None) -> str:
    """The HTML text of the report over ``claims`` (records as ``experiments.reproduce`` returns them);
    its lab links point at ``lab`` (a served report: the lab's own address), else at the lab's default
    address."""
    env = Environment(autoescape=select_autoescape(default=True))
    from .lab.links import BASE, link

    shown = [{**c, "image": _image(out, c.get("figure")), "config_json": json.dumps(c.get("config", {}), indent=2),
              "lab": link(c["id"], lab or BASE)} for c in claims]
    return env.from_string(TEMPLATE).render(claims=shown, tally=tally(claims), seed=seed, quick=quick,
                                            served=lab is not None)


def served(out: str | Path) -> Callable[[str], str]:
    """For ``gradientflow lab --report OUT``: the report of ``out/claims.json`` as HTML, given the
    address the lab was reached at, which its "open in the lab" links then use (a report opened from
    disk cannot know the lab's port). Read at each request; a claims.json that is not a reproduce
    output raises ValueError, KeyError or TypeError."""
    out = Path(out)

    def page(lab: str) -> str:
        claims = json.loads((out / "claims.json").read_text())
        if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
            raise ValueError("claims.json is not a list of claim records")
        return render(out, claims, seed=None, quick=False, lab=lab)

    return page


def tally(claims: list[dict]) -> str:
    """'17 of 21 claims pass; beyond the seeds: X1 pass', counted from the records."""
    seeds = [c for c in claims if c["id"].startswith("C")]
    beyond = [c for c in claims if not c["id"].startswith("C")]
    parts = [f"{sum(c['verdict'] == 'pass' for c in seeds)} of {len(seeds)} claims pass"] if seeds else []
    if beyond:
        parts.append("beyond the seeds: " + ", ".join(f"{c['id']} {c['verdict']}" for c in beyond))
    return "; ".join(parts)


def write(out: str | Path, claims: list[dict], *, seed: int, quick: bool) -> tuple[Path, Path]:
    """Write ``out/claims.json`` and ``out/report.html``; return their paths."""
    out = Path(out)
    html = render(out, claims, seed=seed, quick=quick)
    data = jsontext.dumps(claims, indent=2) + "\n"
    write_atomic(out / "claims.json", lambda f: f.write(data.encode()))
    write_atomic(out / "report.html", lambda f: f.write(html.encode()))
    return out / "claims.json", out / "report.html"
