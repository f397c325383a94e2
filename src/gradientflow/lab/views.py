"""What a lab session shows the page, apart from its training: layer labels, the decision boundary,
the points not yet sent, and the memory estimate checked before a session is built."""

from __future__ import annotations

import math
import re

import torch

from .. import data as datasets
from .. import memory
from ..thinning import every_second_older

CURVE_POINTS = 2000
KEEP_WINDOWS = 300  # probe windows a session keeps, older ones thinned
GRID = 64  # the decision boundary's finest resolution (2-D data); coarser for costly nets


def session_bytes(cfg) -> int:
    """Estimated peak bytes of a session: the engine's training estimate (``memory.training``) plus
    the rollback point (a copy of the parameters) and the probes' windows."""
    samples, features, outputs = datasets.planned(cfg.data, None, None)  # the lab offers built-in sets only
    params = memory.mlp_parameters(features, cfg.width, cfg.depth, outputs)
    probes = KEEP_WINDOWS * (cfg.depth + 1) * 2048  # a row of scalars and a 50-bin histogram per layer and window
    return memory.training(features, cfg.width, cfg.depth, outputs, batch=cfg.batch_size, samples=samples) \
        + memory.FLOAT * params + probes


def layer_labels(net: torch.nn.Module) -> dict[str, str]:
    """Each linear layer's module name and the label the page shows: 1 to L for the hidden layers, then
    "output" (module indices would call the last hidden layer of a 50-layer net "layer 98")."""
    names = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    return {n: ("output" if k == len(names) else str(k)) for k, n in enumerate(names, 1)}


@torch.no_grad()
def boundary(net: torch.nn.Module, data: datasets.Dataset, size: int = GRID) -> dict:
    """The net's output on a ``size`` x ``size`` grid over the 2-D data, with up to 400 training points
    and 200 test points, as the page draws them. Classification: each grid point's class and its
    confidence (the largest softmax probability). Regression (``task``): the output value itself, a
    continuous map, and ``scale``, the largest |target| of the training split, which the page's
    colour ramp spans."""
    x = data.x_train
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx = torch.linspace(float(lo[0]), float(hi[0]), size)
    gy = torch.linspace(float(lo[1]), float(hi[1]), size)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)
    net.eval()
    out = net(grid)
    net.train()
    show = x[:400]
    drawn = {"extent": [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])], "size": size, "task": data.task,
             "neurons": neuron_maps(net, lo.tolist(), hi.tolist()),
             "points": _points(show, data.y_train[:400]), "test_points": _points(data.x_test[:200], data.y_test[:200])}
    if data.task == "regression":
        return {**drawn, "value": [finite(round(v, 3)) for v in out[:, 0].tolist()],
                "scale": float(data.y_train.abs().max())}
    p = torch.softmax(out, 1)
    return {**drawn, "classes": int(data.classes), "label": p.argmax(1).tolist(),
            "confidence": [round(v, 3) for v in p.max(1).values.tolist()]}


MAP_GRID = 12  # each neuron's map: this many points a side
MAP_LAYERS = 8  # maps for nets this deep at most (the Playground's are 6); deeper nets are drawn as dots


@torch.no_grad()
def neuron_maps(net: torch.nn.Module, lo: list[float], hi: list[float], units: int | None = None) -> dict | None:
    """What each of the first ``units`` units of the inputs (after any feature crosses) and of each
    hidden layer computes over the plane, on a ``MAP_GRID`` x ``MAP_GRID`` grid: per column of the
    diagram, per unit, the values scaled to integers in [-99, 99] by the column's largest magnitude
    (``peak``). None for a net deeper than ``MAP_LAYERS`` or not a plain sequence of modules."""
    units = units or DIAGRAM_UNITS
    if not isinstance(net, torch.nn.Sequential):
        return None
    gx, gy = torch.linspace(lo[0], hi[0], MAP_GRID), torch.linspace(lo[1], hi[1], MAP_GRID)
    h = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)
    mods = list(net)
    linear = [i for i, m in enumerate(mods) if isinstance(m, torch.nn.Linear)]
    if len(linear) - 1 > MAP_LAYERS:
        return None
    was_training = net.training
    net.eval()
    try:
        columns = []
        for i, m in enumerate(mods):
            if i in linear:  # what enters each linear layer: the inputs, then each hidden layer's output
                columns.append(h[:, :units])
            h = m(h)
    finally:
        net.train(was_training)
    maps, peaks = [], []
    for c in columns:
        peak = float(c.abs().max()) if c.numel() else 0.0
        usable = peak > 0 and math.isfinite(peak)
        scaled = (c / peak * 99).round().to(torch.int64) if usable else torch.zeros_like(c, dtype=torch.int64)
        maps.append(scaled.T.tolist())
        peaks.append(finite(peak))
    return {"size": MAP_GRID, "maps": maps, "peaks": peaks}


def _points(x: torch.Tensor, y: torch.Tensor) -> list[list]:
    """[x1, x2, label] rows: the class index, or a regression set's target to 3 decimals."""
    return [[round(a, 3), round(b, 3), c if isinstance(c, int) else round(c, 3)]
            for (a, b), c in zip(x.tolist(), y.tolist())]


class Fresh:
    """Points, test results and layer rows made since the last frame."""

    def __init__(self):
        self.curves: list[dict] = []
        self.tests: list[dict] = []
        self.layers: list[dict] = []

    def bound(self) -> None:
        """Past ``CURVE_POINTS`` points unsent (no frame taken for a long while), thin the older half."""
        for name in ("curves", "tests"):
            points = getattr(self, name)
            if len(points) > CURVE_POINTS:
                gone = every_second_older(range(len(points)))
                setattr(self, name, [p for i, p in enumerate(points) if i not in gone])


def append_point(series: dict[str, list], point: dict) -> None:
    """Add a point to columns kept for ``keep``; past ``CURVE_POINTS`` the older half is thinned."""
    for k, v in point.items():
        series[k].append(v)
    if len(series["step"]) > CURVE_POINTS:
        gone = every_second_older(range(len(series["step"])))
        for k in series:
            series[k] = [v for i, v in enumerate(series[k]) if i not in gone]


def finite(v):
    """``v`` when it is a finite number, else None (the page's JSON has no NaN)."""
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


IN_USE = {"he": ("use He init, ", "He (ReLU)"), "xavier": ("use Xavier (tanh) or ",)}  # advice already followed


def for_page(found: list[dict], labels: dict[str, str], since: dict, init: str) -> list[dict]:
    """The probes' findings as the page shows them: layers by the page's labels, a "since step N" that
    stays where the finding first held (``since`` remembers it while the finding lasts; the history's
    window moves and is thinned), and advice the set-up already follows left out."""
    shown, seen = [], set()
    for f in found:
        f = dict(f)
        key = (f["kind"], tuple(f["layers"]))
        seen.add(key)
        first = f.get("numbers", {}).get("since_step")
        if first is not None:
            kept = since.setdefault(key, first)
            f["message"] = f["message"].replace(f"since step {first}", f"since step {kept}")
        f["message"] = relabel(f["message"], labels)
        f["layers"] = [labels.get(str(n), str(n)) for n in f["layers"]]
        for phrase in IN_USE.get(init, ()):
            f["recommendation"] = f["recommendation"].replace(phrase, "")
        shown.append(f)
    for key in set(since) - seen:  # a finding that stopped holding starts afresh next time
        del since[key]
    return _grouped(shown)


def relabel(text: str, labels: dict[str, str]) -> str:
    """A finding's sentence with the module names of its layers ("layer 20", "layers 0–16", "layers 0, 2, 4")
    replaced by the page's labels ("the output layer", "layers 1–9", "layers 1, 2, 3"); names the page does not
    draw stay as they are."""
    def many(m: re.Match) -> str:
        sep = "–" if "–" in m.group(1) else ", "
        return "layers " + sep.join(labels.get(p, p) for p in m.group(1).split(sep))

    def one(m: re.Match) -> str:
        label = labels.get(m.group(1))
        return m.group(0) if label is None else "the output layer" if label == "output" else f"layer {label}"

    text = re.sub(r"\blayers ([\w.]+(?:(?:–|, )[\w.]+)*)", many, text)
    return re.sub(r"\blayer ([\w.]*\w)", one, text)


def _grouped(found: list[dict]) -> list[dict]:
    """One entry per kind: a finding repeated for 50 layers is one line that names them."""
    by_kind: dict[str, list[dict]] = {}
    for f in found:
        by_kind.setdefault(f["kind"], []).append(f)
    out = []
    for group in by_kind.values():
        first = dict(group[0])
        if len(group) > 1:
            layers = [n for f in group for n in f["layers"]]
            first["layers"] = layers
            first["message"] += f"; the same in {len(group) - 1} more: layers {', '.join(layers[1:])}"
        out.append(first)
    return out


DIAGRAM_UNITS = 12  # units drawn per layer in the network diagram (the first ones; the rest are counted)


@torch.no_grad()
def diagram(net: torch.nn.Module, labels: dict[str, str], units: int = DIAGRAM_UNITS) -> dict:
    """The network as the page draws it: each linear layer's size and label, and the weights and
    their latest gradients between the first ``units`` units of consecutive layers (sign and size
    drawn as edges), as nested lists [out][in]."""
    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    if not layers:
        return {"sizes": [], "labels": [], "weights": [], "grads": []}
    sizes = [layers[0][1].in_features] + [m.out_features for _, m in layers]

    def cut(t):
        return None if t is None else [[round(v, 4) for v in row] for row in t[:units, :units].tolist()]

    return {"sizes": sizes, "labels": ["input"] + [labels.get(n, n) for n, _ in layers],
            "weights": [cut(m.weight) for _, m in layers], "grads": [cut(m.weight.grad) for _, m in layers],
            "units": units}
