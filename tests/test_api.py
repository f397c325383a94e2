"""The public surface is curated and documented; imports flow one way (DESIGN.md)."""

import ast
import inspect
from pathlib import Path

import gradientflow

SRC = Path(gradientflow.__file__).parent


def test_every_public_name_has_a_docstring():
    for name in gradientflow.__all__:
        obj = getattr(gradientflow, name)
        if inspect.ismodule(obj) or callable(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


# module -> the gradientflow modules it may import
ALLOWED = {
    "gaussian": set(),
    "activations": set(),
    "properties": {"gaussian", "activations"},
    "init": {"activations", "theory"},
    "theory": {"gaussian", "activations"},
    "config": {"activations", "init", "data", "optim", "schedules"},
    "data": set(),
    "optim": set(),
    "schedules": set(),
    "store": set(),
    "train": {"optim", "schedules", "store", "config", "data"},
    "job": {"data", "model", "config", "store", "train", "probes"},
    "model": {"activations", "init"},
    "propagate": {"properties", "activations", "probes"},
    "cost": {"activations"},
    "plots": {"activations", "properties", "propagate"},
    "report": {"store"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def test_imports_flow_one_way():
    for path in SRC.glob("*.py"):
        mod = path.stem
        if mod in ("__init__", "cli"):
            continue
        assert mod in ALLOWED, f"new module {mod}: add it to ALLOWED with its permitted imports"
        extra = _imports(path) - ALLOWED[mod]
        assert not extra, f"{mod} imports {extra}, which DESIGN.md does not allow"


def test_nothing_imports_the_cli():
    for path in SRC.glob("*.py"):
        if path.stem != "cli":
            assert "cli" not in _imports(path)


def test_experiments_import_no_cli_and_no_report():
    """experiments/ may use everything below it (DESIGN.md), never the CLI or the report built on top of it."""
    for path in (SRC / "experiments").glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        assert not found & {"cli", "report"}, f"experiments/{path.name} imports {found & {'cli', 'report'}}"
