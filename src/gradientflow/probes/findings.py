"""Findings in words, with their numbers, from probe statistics; and what to try (the seeds' remedies).

Input: the rows of probe windows (``Probe.history()`` or a stored run's ``probes`` table made
wide by ``from_long``): one row per layer and window, with ``last_step``. Each rule states its
threshold; a rule that does not fire says nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEAD = 0.10  # share of units never active over a window (C7)
SATURATED = 0.30  # share of pre-activations with |f'| < 5% of its max (C1, C15)
VANISHED = 1e-2  # a layer's dL/dh norm below this fraction of the largest layer's (C2)
EXPLODED = 1e2  # the input-side layer's dL/dh norm above this multiple of the output side's (C3)
COLLAPSED = 1e-3  # last hidden layer's activation std below this fraction of the first's (C15)
OFF_CENTRE = 1.0  # |mean x| / std x of a layer's input (C4, C19): named as the zig-zag's cause
COHERENT = 0.9  # share of a unit's weight-gradient entries sharing one sign (C4)
UPDATE_RANGE = (1e-5, 1e-1)  # ||dW|| / ||W|| per step; CS231n's rule of thumb is about 1e-3
DIVERGING = 1e3  # a layer's activation std over its first window's: the run is diverging
# one-sided activations: their "saturated" side is the negative half-line, reported as dead units instead
ATTENTION_COLLAPSED = 0.5  # share of a head's queries with one key over 99% of the weight
HIDDEN_SCALE = (1e-2, 1e2)  # a normalisation layer's input std over its output std outside this range
DIVERGED_STD = 1e2  # ... and above this absolute std (a layer that starts near zero may grow a thousandfold)
BLOWN_UP = 1e4  # an activation or input std above this: the signal has blown up (a norm layer may hide it)
NORMALISED_VANISHING = ("vanishing gradients in a normalised network (C2): the initial scale is reset by its norm "
                        "layers, so look at the path the gradient takes: residual connections around the blocks, "
                        "norms before (not after) them, a smaller depth or learning rate, warm-up")
RECURRENT_TYPES = ("LSTM", "GRU", "RNN")  # rows of recurrent layers
RECURRENT_GATES = tuple(f"{k} gate" for k in RECURRENT_TYPES)  # and of their gates
KEEP_STATE = {"RNN": "gated cells (LSTM or GRU)", "LSTM": "a forget-gate bias of 1 or more",
              "GRU": "an update-gate bias that carries more of the state"}  # what lets a gradient through time
NOT_HIDDEN = ("softmax",)  # a distribution over classes or keys (functional rows), not a hidden layer
ONE_SIDED = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "mish", "softplus", "relu6", "hardswish")


@dataclass(frozen=True)
class Finding:
    kind: str
    layers: list[str]
    message: str
    recommendation: str
    numbers: dict

    def to_dict(self) -> dict:
        return asdict(self)


def from_long(rows: list[dict], layers: list[dict] = (), time: list[dict] = ()) -> list[dict]:
    """Stored long rows (step, layer, name, value) -> one dict per (step, layer), in stored order
    (a pandas pivot); ``layers`` (step, layer, type, activation) adds the text columns and
    ``time`` (step, layer, t, norm: the ``time_gradients`` table) a recurrent row's ``time_grad``."""
    import pandas as pd

    if not rows:
        return []
    wide = pd.DataFrame(rows).pivot_table(index=["step", "layer"], columns="name", values="value", aggfunc="last",
                                          sort=False, dropna=False)  # NaN is a value (no update yet)
    text = {(r["step"], r["layer"]): {"type": r["type"], "activation": r["activation"] or None} for r in layers}
    for r in sorted(time, key=lambda r: r["t"]):
        text.setdefault((r["step"], r["layer"]), {}).setdefault("time_grad", []).append(r["norm"])
    return [{"layer": layer, "last_step": int(step), **values, **text.get((step, layer), {})}
            for (step, layer), values in zip(wide.index, wide.to_dict("records"))]


def histograms(rows: list[dict]) -> dict[tuple[int, str], tuple[float, float, list[float]]]:
    """A stored ``histograms`` table (step, layer, bin, lo, hi, count rows) -> {(step, layer): (lo, hi, counts)}."""
    hists: dict[tuple[int, str], tuple[float, float, list[float]]] = {}
    for h in rows:
        lo, hi, counts = hists.get((h["step"], h["layer"]), (h["lo"], h["hi"], []))
        hists[(h["step"], h["layer"])] = (min(lo, h["lo"]), max(hi, h["hi"]), counts + [h["count"]])
    return hists


def _fmt(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3g}"


def _span(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}–{names[-1]}" if len(names) > 3 else ", ".join(names)


def analyse(rows: list[dict]) -> list[Finding]:
    """The findings for the last window, with history used for 'since step N'."""
    if not rows:
        return []
    last_step = max(r["last_step"] for r in rows)
    last = [r for r in rows if r["last_step"] == last_step]
    diverged = _diverged(rows, last)
    if diverged is not None:  # every other statistic of a diverged run describes the divergence
        return [diverged]
    found: list[Finding] = _recurrent(last, rows)
    last = [r for r in last if not _recurrent_row(r)]  # the depth-wise rules are about layers in depth order
    hidden = [r for r in last if r.get("activation") not in (None, "", *NOT_HIDDEN) and not _nan(r.get("act_std"))] or last
    normalised = any(_norm_row(r) for r in last)  # its scale is reset by norm layers: init advice does not fit
    for r in last:
        dead = r.get("dead", math.nan)
        if not _nan(dead) and dead >= DEAD:
            since = _since(rows, r["layer"], lambda w: w.get("dead", 0) >= DEAD)
            found.append(Finding("dead", [r["layer"]], f"layer {r['layer']}: {dead:.0%} dead units since step {since}",
                                 "dead ReLUs (C7): lower the learning rate, use He init, or Leaky ReLU / PReLU / "
                                 "Maxout (C8, C9)", {"dead": dead, "since_step": since}))
    found += _saturated("saturated", "layer", [r for r in hidden if r.get("activation") not in ONE_SIDED],
                        "saturated units pass almost no gradient (C1, C15): use a smaller initial scale "
                        "(Xavier/LeCun), or a non-saturating activation (ReLU family)")
    grads = [(r["layer"], r.get("act_grad_norm", math.nan)) for r in hidden]
    grads = [(n, g) for n, g in grads if not _nan(g)]
    if len(grads) >= 2:
        top_name, top = max(grads, key=lambda t: t[1])
        weak = [n for n, g in grads if top > 0 and g < VANISHED * top]
        if weak:
            low = min(g for n, g in grads if n in weak)
            found.append(Finding("vanishing", weak, f"layers {_span(weak)}: gradient {_fmt(low / top)} of layer "
                                 f"{top_name}'s (norm of dL/d output)",
                                 NORMALISED_VANISHING if normalised else "vanishing gradients (C2): ReLU-family "
                                 "activations, Xavier/He init (C16, C17), input normalisation, a shallower net",
                                 {"ratio": low / top, "largest": top}))
        first, lastg = grads[0][1], grads[-1][1]
        if lastg > 0 and first > EXPLODED * lastg:
            found.append(Finding("exploding", [grads[0][0]], f"layer {grads[0][0]}'s gradient is {_fmt(first / lastg)}× "
                                 f"layer {grads[-1][0]}'s: gradients grow towards the input",
                                 "exploding gradients (C3): clip by norm (--clip-norm), lower the initial scale",
                                 {"ratio": first / lastg}))
    stds = [(r["layer"], r.get("act_std", math.nan)) for r in hidden if not _nan(r.get("act_std"))]
    if len(stds) >= 2 and not normalised and stds[0][1] > 0 and stds[-1][1] < COLLAPSED * stds[0][1]:
        found.append(Finding("collapse", [stds[-1][0]], f"activations collapse: layer {stds[-1][0]} std "
                             f"{_fmt(stds[-1][1])} against {_fmt(stds[0][1])} at layer {stds[0][0]}",
                             "the initial scale is too small (C15): use Xavier (tanh) or He (ReLU)",
                             {"first_std": stds[0][1], "last_std": stds[-1][1]}))
    for r in last:  # a normalisation layer whose input has collapsed or blown up, rescaled to look healthy
        if _norm_row(r) and not _nan(r.get("in_std")) and not _nan(r.get("act_std")) \
                and r["act_std"] > 0 and not HIDDEN_SCALE[0] <= r["in_std"] / r["act_std"] <= HIDDEN_SCALE[1]:
            ratio = r["in_std"] / r["act_std"]
            found.append(Finding("hidden_scale", [r["layer"]],
                                 f"layer {r['layer']} ({r['type']}): input std {_fmt(r['in_std'])} rescaled to "
                                 f"{_fmt(r['act_std'])}: the normalisation hides a {'collapsed' if ratio < 1 else 'blown-up'} "
                                 "signal", "the layers before it vanish or explode (C15, C3): fix their initial scale "
                                 "(Xavier for tanh, He for ReLU) rather than rely on the normalisation",
                                 {"in_std": r["in_std"], "out_std": r["act_std"]}))
    heads = [r for r in last if not _nan(r.get("attn_collapsed")) and r["attn_collapsed"] >= ATTENTION_COLLAPSED]
    if heads:
        worst = max(heads, key=lambda r: r["attn_collapsed"])
        found.append(Finding("attention_collapse", [r["layer"] for r in heads],
                             f"attention heads {_span([r['layer'] for r in heads])}: up to {worst['attn_collapsed']:.0%} "
                             f"of queries put over 99% of their weight on one key (logit std "
                             f"{_fmt(worst['attn_logit_std'])}, entropy {_fmt(worst['attn_entropy'])} nats)",
                             "the query-key logits are too large (not a seed claim; C3's exploding products in "
                             "another guise): lower the learning rate or add warm-up, scale down the query/key "
                             "initialisation, or normalise queries and keys",
                             {r["layer"]: r["attn_collapsed"] for r in heads}))
    coherent = {r["layer"]: r["sign_coherence"] for r in last
                if not _nan(r.get("sign_coherence")) and r["sign_coherence"] > COHERENT}
    if coherent:  # the zig-zag measured; its cause named where the inputs are off-centre (C4, C19)
        off = {r["layer"]: r["input_mean_over_std"] for r in last if r["layer"] in coherent
               and not _nan(r.get("input_mean_over_std")) and r["input_mean_over_std"] > OFF_CENTRE}
        names = list(coherent)
        cause = (f"; their inputs are not zero-centred (|mean|/std up to {max(off.values()):.2g})" if off else "")
        found.append(Finding("zigzag", names, f"layers {_span(names)}: up to {max(coherent.values()):.0%} of each "
                             f"unit's weight gradients share one sign{cause}",
                             "zig-zag updates (C4): centre the inputs (--normalize standardize, C19), prefer tanh to "
                             "sigmoid (C5), larger batches" if off else "zig-zag updates (C4): larger batches",
                             {**coherent, **{f"{k}:input_mean_over_std": v for k, v in off.items()}}))
    for r in last:
        units, distinct = r.get("units"), r.get("distinct_units")
        if units and distinct is not None and units > 1 and distinct == 1:
            found.append(Finding("symmetry", [r["layer"]], f"layer {r['layer']}: all {int(units)} units are "
                                 "copies of one", "symmetric (e.g. all-zero) init (C14): initialise weights "
                                 "randomly", {"distinct_units": distinct}))
    found += _update_ratios(last)
    return found


def _update_ratios(last: list[dict]) -> list[Finding]:
    """One finding for the layers whose update/weight ratio per step is out of range, too small and too
    large apart (a frozen layer has no update ratio, and says nothing)."""
    found = []
    for low, verdict in ((True, "too small: learning stalls"), (False, "too large: training is unstable")):
        out = {r["layer"]: r["update_ratio"] for r in last if not _nan(r.get("update_ratio"))
               and (r["update_ratio"] < UPDATE_RANGE[0] if low else r["update_ratio"] > UPDATE_RANGE[1])}
        if out:
            names, worst = list(out), (min if low else max)(out.values())
            found.append(Finding("update_ratio", names, f"layers {_span(names)}: update/weight ratio per step "
                                 f"down to {_fmt(worst)} ({verdict})" if low else f"layers {_span(names)}: update/weight "
                                 f"ratio per step up to {_fmt(worst)} ({verdict})",
                                 "adjust the learning rate; about 1e-3 is typical", out))
    return found


def _diverged(rows: list[dict], last: list[dict]) -> Finding | None:
    """The first step and place where values stopped being finite (the probes' own device-side flags):
    forward values first appear in the earliest layer, gradients in the last one the backward reached
    first; or, while finite, the first layer (in forward order) whose activations or inputs blew up
    past ``BLOWN_UP`` in std, or grew over ``DIVERGING`` times their first window's scale."""
    marks = [(r["nonfinite_step"], i, r["layer"], "activations") for i, r in enumerate(last)
             if not _nan(r.get("nonfinite_step"))]
    marks += [(r["nonfinite_grad_step"], -i, r["layer"], "gradients") for i, r in enumerate(last)
              if not _nan(r.get("nonfinite_grad_step"))]
    if marks:
        step, _, layer, what = min(marks)
        names = [m[2] for m in sorted(marks) if m[0] == step]
        return Finding("diverged", [layer], f"values stopped being finite at step {int(step)}: first in layer {layer}'s "
                       f"{what}" + (f" (then {_span(names[1:])})" if len(names) > 1 else ""),
                       "divergence (C3): lower the learning rate, clip gradients by norm (--clip-norm), add warm-up",
                       {"step": int(step), "layer": layer, "in": what})
    blown = [(max(r.get(k) or 0.0 for k in ("act_std", "in_std") if not _nan(r.get(k))), r) for r in last
             if any(not _nan(r.get(k)) for k in ("act_std", "in_std"))]
    blown = [(std, r) for std, r in blown if std > BLOWN_UP]
    if blown:
        std, r = blown[0]
        return Finding("diverged", [r["layer"]], f"the signal blew up: std {_fmt(std)} at layer {r['layer']} first "
                       f"(of {len(blown)} layers over {_fmt(BLOWN_UP)})", "divergence (C3): lower the learning rate, "
                       "clip gradients by norm (--clip-norm), add warm-up", {"std": std, "layer": r["layer"]})
    first = {}
    for r in sorted(rows, key=lambda r: r["last_step"]):
        if not _nan(r.get("act_std")) and r["act_std"] > 0:
            first.setdefault(r["layer"], r)
    grown = [(r["act_std"] / first[r["layer"]]["act_std"], r) for r in last
             if r["layer"] in first and not _nan(r.get("act_std")) and first[r["layer"]] is not r
             and not _norm_row(r)]
    grown = [(g, r) for g, r in grown if g > DIVERGING and r["act_std"] > DIVERGED_STD]
    if not grown:
        return None
    ratio, r = grown[0]  # forward order: where the growth starts
    return Finding("diverged", [r["layer"]], f"activations grew {_fmt(ratio)}× since step {first[r['layer']]['first_step']}, "
                   f"from layer {r['layer']} on", "divergence (C3): lower the learning rate, clip gradients by norm "
                   "(--clip-norm), add warm-up", {"ratio": ratio, "layer": r["layer"]})


def _saturated(kind: str, noun: str, rows: list[dict], advice: str, detail=lambda r: "") -> list[Finding]:
    """One finding naming the rows with at least ``SATURATED`` of their pre-activations saturated."""
    sat = [r for r in rows if not _nan(r.get("saturated")) and r["saturated"] >= SATURATED]
    if not sat:
        return []
    worst = max(sat, key=lambda r: r["saturated"])
    names = [r["layer"] for r in sat]
    return [Finding(kind, names, f"{noun}s {_span(names)}: up to {worst['saturated']:.0%} of pre-activations "
                    f"saturated ({noun} {worst['layer']}{detail(worst)})", advice, {r["layer"]: r["saturated"] for r in sat})]


def _recurrent_row(r: dict) -> bool:
    return r.get("type") in (*RECURRENT_TYPES, *RECURRENT_GATES)


def _recurrent(last: list[dict], rows: list[dict]) -> list[Finding]:
    """Saturated gates (C1 inside the cell) and gradients that vanish or explode through time (C2
    and C3 along the time axis) from the recurrent rows of the last window. The time rule reads the
    forward direction only: there processing order is sequence order and the gradient enters at
    the last step, as in Pascanu et al. (2013); a reverse direction's curve is shown, not judged."""
    found = _saturated("saturated_gates", "gate", [r for r in last if r.get("type") in RECURRENT_GATES],
                       "a saturated gate passes almost no gradient (C1, inside the cell): look at the gate biases "
                       "and the input scale; lower the learning rate; clip gradients (C3)",
                       lambda r: f", mean value {r['act_mean']:.3g}")
    for r in last:
        ratio = r.get("time_grad_ratio", math.nan)
        if r.get("type") not in RECURRENT_TYPES or _nan(ratio) or r["layer"].endswith("_reverse"):
            continue
        steps = f" (of {len(r['time_grad'])})" if isinstance(r.get("time_grad"), list) else ""  # not in stored rows
        if ratio < VANISHED:
            since = _since(rows, r["layer"], lambda w: not _nan(w.get("time_grad_ratio", math.nan))
                           and w["time_grad_ratio"] < VANISHED)
            found.append(Finding("vanishing_through_time", [r["layer"]],
                                 f"layer {r['layer']}: the gradient entering at the last step{steps} is "
                                 f"{_fmt(ratio)} of itself by the first (‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) since step {since}",
                                 "vanishing gradients through time (C2 along the time axis): " + KEEP_STATE[r["type"]]
                                 + ", orthogonal recurrent weights, or shorter sequences (truncated backprop through time)",
                                 {"ratio": ratio, "since_step": since}))
        elif ratio > EXPLODED:
            found.append(Finding("exploding_through_time", [r["layer"]],
                                 f"layer {r['layer']}: the gradient entering at the last step{steps} grows "
                                 f"{_fmt(ratio)}× by the first", "exploding gradients through time (C3): clip by "
                                 "norm (--clip-norm), smaller recurrent weights", {"ratio": ratio}))
    return found


def _norm_row(r: dict) -> bool:
    """A normalisation layer's row (torch's, or a model's own such as ``LlamaRMSNorm``)."""
    return "Norm" in str(r.get("type") or "") and r.get("activation") in (None, "")


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _since(rows: list[dict], layer: str, condition) -> int:
    """The first step of the trailing run of windows in which ``condition`` holds for ``layer``."""
    windows = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["last_step"])
    start = windows[-1]
    for w in reversed(windows):
        if not condition(w):
            break
        start = w
    return int(start.get("first_step", start["last_step"]))
