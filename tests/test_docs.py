"""The documentation's tutorials and the README's examples run as written: every ```python block of a
page, in order, in one namespace per page, in a fresh folder (shell blocks are shown, not run)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
README = DOCS.parent / "README.md"
pytestmark = pytest.mark.filterwarnings("ignore")


def blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_every_tutorial_has_code_to_run():
    assert [p.stem for p in TUTORIALS] == ["learner", "practitioner", "researcher"]
    assert all(blocks(p) for p in TUTORIALS)


@pytest.mark.parametrize("page", [*TUTORIALS, README], ids=lambda p: p.stem)
def test_a_tutorial_runs_as_written(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for i, code in enumerate(blocks(page)):
        exec(compile(code, f"{page.name}, block {i + 1}", "exec"), namespace)
    assert capsys.readouterr().out  # it printed what the page says it prints
