"""MkDocs hooks: the pages written from the code's own output, never by hand.

- ``claims.md``: each claim's verdict, rule and figure from the ``claims.json`` that
  ``gradientflow reproduce`` wrote (``make docs`` runs ``make demo`` first; the folder is
  ``$GRADIENTFLOW_CLAIMS``, default ``out``). The claims' figures are added to the site from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

MARK = "<!-- claims: written by docs/_hooks/generated.py -->"


def _folder() -> Path:
    return Path(os.environ.get("GRADIENTFLOW_CLAIMS", "out"))


def _claims() -> list[dict]:
    path = _folder() / "claims.json"
    if not path.is_file():
        raise PluginError(f"{path} not found: run `make demo` (gradientflow reproduce --quick --out out) first")
    return json.loads(path.read_text())


def on_files(files, config):
    for claim in _claims():
        png = _folder() / "figures" / f"{claim.get('figure')}.png"
        uri = f"claims/{claim.get('figure')}.png"
        if claim.get("figure") and png.is_file() and files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(png.resolve())))
    return files


def _numbers(numbers: dict) -> str:
    shown = [f"`{k}` = {json.dumps(v)}" for k, v in list(numbers.items())[:8]]
    more = len(numbers) - len(shown)
    return "; ".join(shown) + (f"; and {more} more in `claims.json`" if more > 0 else "")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "claims.md":
        return markdown
    if MARK not in markdown:
        raise PluginError(f"claims.md lost its marker {MARK}")
    claims = _claims()
    passed = sum(c["verdict"] == "pass" for c in claims)
    parts = [f"{passed} of {len(claims)} claims pass in the run this site was built from "
             f"(`{claims[0].get('command', 'gradientflow reproduce --quick')}` and its siblings).\n"]
    for c in claims:
        verdict = {"pass": "✅ pass", "fail": "❌ fail"}.get(c["verdict"], f"⚠️ {c['verdict']}")
        parts.append(f"## {c['id']}: {verdict}\n\n> {c['claim']}\n\n*Seeds: {c.get('source', '')}; experiment "
                     f"`{c.get('experiment', '')}`.*\n\n**What the numbers say.** {c.get('why', '')}\n\n"
                     f"**The rule and its control.** {c.get('threshold', '')}\n\n"
                     f"**Key numbers.** {_numbers(c.get('numbers') or {})}\n\n"
                     f"**Run it.** `{c.get('command', '')}`\n")
        if c.get("figure") and files.get_file_from_path(f"claims/{c['figure']}.png") is not None:
            parts.append(f"![{c['id']}](claims/{c['figure']}.png)\n")
    return markdown.replace(MARK, "\n".join(parts))
