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


# The import arrows of ../shared/DESIGN.md ("->" may import), one row per module or sub-package. Same-package
# imports are always allowed; "probes/stats" is a leaf of its own. Where this table goes beyond the map, the
# closing note of issue 11 says why: model -> layers (initialize_ walks the layers), propagate -> model (a
# fresh mlp), config -> train (LoopSpec lives beside the loop that uses it), train -> data (the Dataset it
# takes).
_BELOW_EXPERIMENTS = {"jsontext", "thinning", "memory", "gaussian", "schedules", "data", "store", "probes/stats", "activations", "properties",
                      "theory", "init", "layers", "model", "propagate", "optim", "train", "probes", "config", "job",
                      "plots", "folders", "catalog", "records", "evaluation", "guard", "snapshot", "trainer"}
ALLOWED = {
    "gaussian": set(), "schedules": set(), "data": set(), "probes/stats": set(),
    # beyond DESIGN.md: standard JSON (NaN as null) for every file and --json output (issue 30)
    "jsontext": set(), "store": {"jsontext", "thinning"},
    # beyond DESIGN.md: the one thinning rule of every capped history (issue 32)
    "thinning": set(),
    # beyond DESIGN.md: memory estimates from sizes, checked before allocating (issue 30)
    "memory": set(),
    # beyond DESIGN.md: the folder the CLI and the reports write into, once store.output_folder (a
    # CLI/report concern, not the store's)
    "folders": set(),
    # beyond DESIGN.md: SQL over runs is its own module beside the store (issue 30: its limits)
    "sql": {"store", "memory"},
    "activations": {"gaussian"},
    "properties": {"activations", "gaussian"},
    "theory": {"activations", "gaussian"},
    # beyond DESIGN.md: lsuv_ finds a net's layers through the one shared walk (issue 13, item 9)
    "init": {"activations", "theory", "layers"},
    "layers": {"activations"},
    "model": {"activations", "init", "layers"},
    "propagate": {"layers", "init", "theory", "probes/stats", "model", "memory"},
    "optim": {"schedules"},
    # beyond DESIGN.md: train.py was six concepts; each is a module of its own (issue 32). The typed
    # records around a run, the shared loss and evaluation, the NaN guard, state copies, the stepper
    "records": {"store"},  # for a type annotation only
    "evaluation": set(),
    # beyond DESIGN.md (issue 33): the guard re-runs a step with the engine's loss, which follows the task
    "guard": {"records", "evaluation"},
    "snapshot": set(),
    "trainer": {"optim", "data", "evaluation", "guard", "records", "snapshot"},
    "train": {"optim", "schedules", "store", "data", "evaluation", "guard", "records", "trainer"},
    # beyond DESIGN.md: probe.report(path) (issue 13) draws the probe figures and writes the page
    # atomically; imported inside the method, so importing the probes stays light, and no cycle
    "probes": {"activations", "layers", "probes/stats", "plots", "store", "thinning"},
    # beyond DESIGN.md: one table of the catalogs' names, read by the config, the lab and the CLI (issue 32)
    "catalog": {"activations", "init", "optim", "schedules", "data"},
    "config": {"activations", "init", "data", "optim", "train", "catalog"},
    "job": {"config", "data", "model", "train", "probes", "store", "memory"},
    "plots": {"activations", "properties", "theory", "store"},
    # beyond DESIGN.md: X1 (issue 15) trains its grid with the sweep's batched trainer
    "experiments": _BELOW_EXPERIMENTS | {"sweep"},
    # beyond DESIGN.md: each claim's "open in the lab" link (lab.links, plain data)
    "report": {"store", "lab", "jsontext"},
    # beyond DESIGN.md: the batched trainer shows each net fit's sample order (train.epoch_order) and
    # hands back fit's Summary, so its runs read like fit's, with optim's default momentum (issue 15)
    # and shares the engine's loss, evaluation, metric rows and the guard's first-non-finite rule (issue 32)
    # and (issue 33) refuses to batch a regression set (data.REGRESSION)
    # the batched trainer runs Maxout layers on its fused path
    "sweep": {"job", "config", "store", "theory", "train", "optim", "evaluation", "guard", "records", "trainer",
              "data", "activations"},
    # beyond DESIGN.md: the lab's controls offer the catalogs' names (activations, init, optim,
    # schedules, data), its "gain" init reads properties.gain, and its play/pause loop steps with
    # the engine's own parts (issue 14); since issue 32 it trains through the engine's Trainer
    # beyond DESIGN.md (issue 33): the lab builds its net with model.mlp (batch norm, dropout), finds
    # the activation modules through layers, and penalises weights with the penalty observer
    "lab": {"job", "config", "probes", "theory", "store", "activations", "init", "optim", "properties", "train", "memory",
            "data", "schedules", "jsontext", "thinning", "trainer", "guard", "records", "catalog", "model", "layers",
            "penalty"},
    # beyond DESIGN.md (issue 33): L1 and L2 on the weights as a trainer's observer
    "penalty": {"records"},
    "integrations": {"probes", "store"},
    "cli": _BELOW_EXPERIMENTS | {"sql", "experiments", "report", "sweep", "lab", "integrations"},
}


def _node(dotted: str) -> str:
    """'gradientflow.probes.stats' -> 'probes/stats'; 'gradientflow.cli.app' -> 'cli'."""
    parts = dotted.split(".")[1:]
    if parts[:2] == ["probes", "stats"]:
        return "probes/stats"
    return parts[0] if parts else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The gradientflow modules ``path`` imports, as absolute dotted names (relative imports resolved)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gradientflow"}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
                if base.split(".")[0] != "gradientflow":
                    continue
            else:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for a in node.names:  # "from . import stats" names a module; "from .x import f" names a value
                candidate = f"{base}.{a.name}"
                is_module = (SRC.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                    (SRC.parent / candidate.replace(".", "/")).is_dir()
                found.add(candidate if is_module else base)
    return found


def _modules():
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_the_import_walk_sees_sub_packages():
    nodes = {_node(_module_name(p)) for p in _modules()}
    assert {"probes", "probes/stats", "experiments", "cli"} <= nodes
    # the walk resolves relative imports: probes/probe.py imports layers and probes/stats
    probe = {_node(m) for m in _imports(SRC / "probes" / "probe.py")}
    assert {"layers", "probes/stats"} <= probe


def test_imports_flow_one_way():
    for path in _modules():
        node = _node(_module_name(path))
        assert node in ALLOWED, f"new module {node}: add it to DESIGN.md's map and to ALLOWED"
        extra = {_node(m) for m in _imports(path)} - ALLOWED[node] - {node}
        assert not extra, f"{path.relative_to(SRC)} imports {extra}, which DESIGN.md does not allow for {node}"


def test_nothing_imports_the_cli():
    for path in _modules():
        if _node(_module_name(path)) != "cli":
            assert "cli" not in {_node(m) for m in _imports(path)}, path


def test_import_is_light():
    """``import gradientflow`` loads none of the heavy optional-at-import dependencies."""
    import subprocess
    import sys

    heavy = ("scipy", "pyarrow", "duckdb", "pandas", "matplotlib", "jinja2", "sklearn", "pydantic")
    code = f"import sys, gradientflow; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_integrations_are_imported_only_when_used():
    """The base package, its CLI, the sweeps and the probes never import an optional extra's package."""
    import subprocess
    import sys

    extras = ("ray", "tensorboard", "lightning", "transformers", "accelerate", "starlette", "uvicorn", "playwright")
    code = ("import sys, gradientflow, gradientflow.cli, gradientflow.sweep, gradientflow.probes, "
            f"gradientflow.experiments; print([m for m in {extras!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_importing_never_changes_the_matplotlib_backend():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import gradientflow.plots, gradientflow.experiments.vanishing; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


def test_experiments_import_no_cli_and_no_report():
    """experiments/ may use everything below it (DESIGN.md), never the CLI or the report built on top of it."""
    for path in (SRC / "experiments").glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        assert not found & {"cli", "report"}, f"experiments/{path.name} imports {found & {'cli', 'report'}}"
