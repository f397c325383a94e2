"""C3: exploding gradients; clipping the gradient (its norm or its values) keeps a high learning rate alive.

A deep ReLU net drawn with a large init (N(0, std^2) with fan_in std^2 well above He's 2) has a
layer factor sqrt(chi_1) = sqrt(sigma_w^2 / 2) > 1: the gradient grows towards the input. The
probe measures that at init beside the theory. Then, with several seeds (weights and data order):

- the control: unclipped SGD at every rate of a grid, from small (it trains) to the high rate
  (where it diverges); diverged runs are counted per rate, never dropped;
- at the high rate, the same runs with the total gradient norm clipped and with every gradient
  value clipped (``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``).

The verdict: at init the gradient grows towards the input; at the high rate most unclipped seeds
diverge; and each clipping keeps every seed alive at the high rate with a median final loss no
worse than the best unclipped rate's (``NO_WORSE``).
"""

from __future__ import annotations

import math

import numpy as np

from .. import init, job, plots, theory
from ..config import DataSpec, ModelSpec, TrainConfig
from ..optim import OptimizerSpec
from ..store import Run
from ..train import LoopSpec
from . import claim
from .claim import Claim, Verdict, finite
from .common import fit_config, hidden, probe_once, train
from .seeds import median_diverged_last, spread

CLAIMS = (Claim("C3", "Products of factors above 1 blow up; a step off a 'cliff' throws the parameters far away and "
                      "training diverges. Clipping the gradient (its norm or its values) bounds the step and "
                      "prevents it.", "001, 004"),)


class Size(claim.Size):
    train: TrainConfig  # the net, data and loop; the rate, the clipping and the seed are set per run
    rates: tuple[float, ...]  # unclipped rates, ascending; the last is the high rate the clipped runs use
    clip_norm: float  # threshold on the total gradient norm
    clip_value: float  # threshold on every gradient value
    seeds: int


# 8 x 64 ReLU with N(0, 0.3^2) weights: sigma_w^2 = 64 x 0.09 = 5.8 > 2, so the gradient grows towards the input
_MODEL, _SGD = ModelSpec(depth=8, width=64, activation="relu", init="normal", std=0.3), OptimizerSpec(optimizer="sgd")
_RATES = (0.005, 0.01, 0.02, 0.05)
# grad_norm_every=1: the figure draws every step's gradient norm beside the loss
QUICK = Size(train=TrainConfig.compose(DataSpec(n_train=2000, n_test=500), _MODEL, _SGD, LoopSpec(epochs=10, batch_size=50, grad_norm_every=1)),
             rates=_RATES, clip_norm=5.0, clip_value=0.05, seeds=3)
FULL = Size(train=TrainConfig.compose(DataSpec(n_train=4000, n_test=1000), _MODEL, _SGD, LoopSpec(epochs=30, batch_size=50, grad_norm_every=1)),
            rates=(0.0025, *_RATES), clip_norm=5.0, clip_value=0.05, seeds=5)
CLIPPINGS = ("norm", "value")
NO_WORSE = 0.05  # clipped at the high rate: median final loss at most 5% above the best unclipped rate's


def _seeds(cfg: TrainConfig, seed: int, seeds: int, folder, stored: str | None = None) -> tuple[list[dict], dict]:
    """``cfg`` trained with ``seeds`` seeds: each run's status and final loss, and the first seed's loss and
    gradient-norm curves when ``stored`` names a run to keep (in ``folder``), else {}."""
    runs, curves = [], {}
    for k in range(seeds):
        c = cfg.replace(seed=seed + k)
        if k == 0 and stored:
            r = train(c, folder, stored)
            curves = {key: r[key] for key in ("status", "steps", "message", "loss_steps", "loss")}
            curves["grad_norm"] = Run(folder / stored).series("grad_norm", "train")[1]
        else:
            r = fit_config(c).to_dict()
        runs.append({"status": r["status"], "train_loss": r["train_loss"]})
    return runs, curves


def run(size: Size, seed: int, folder) -> dict:
    base = size.train.replace(data_seed=seed)
    net, d = job.prepare(base.replace(seed=seed))
    rows = hidden(probe_once(net, d.x_train[:500], d.y_train[:500]))
    sw2, _ = init.meanfield_scales(base.init, base.width, scale=base.scale())
    high = size.rates[-1]
    out = {"sigma_w2": sw2, "clip_norm": size.clip_norm, "clip_value": size.clip_value, "classes": d.classes,
           "depth": base.depth, "rates": list(size.rates),
           "act_grad_norm_at_init": [r["act_grad_norm"] for r in rows],
           "theory_factor": [p.grad_norm_factor for p in theory.predict_layers("relu", base.depth, sw2)],
           "chi1": float(theory.chi1("relu", 1.0, sw2)), "unclipped": {}, "curves": {}}
    for lr in size.rates:  # the first seed at the high rate is stored for its curves
        out["unclipped"][str(lr)], curves = _seeds(base.replace(lr=lr), seed, size.seeds, folder,
                                                   "unclipped" if lr == high else None)
    out["curves"]["unclipped"] = curves
    for name, fields in {"norm": {"clip_norm": size.clip_norm}, "value": {"clip_value": size.clip_value}}.items():
        out[name], out["curves"][name] = _seeds(base.replace(lr=high, **fields), seed, size.seeds, folder, name)
    return out


def _losses(runs: list[dict]) -> list[float]:
    """Final training losses, infinity for a diverged run."""
    return [r["train_loss"] if r["status"] == "finished" and finite(r["train_loss"]) else math.inf for r in runs]


def _diverged(runs: list[dict]) -> int:
    return sum(not math.isfinite(v) for v in _losses(runs))


def summary(m: dict) -> dict:
    """The numbers the verdict reads: the growth at init, diverged runs per rate, the best unclipped rate (the
    lowest median final loss among rates where no seed diverged) and each clipping's median at the high rate."""
    g = m["act_grad_norm_at_init"]
    high = str(m["rates"][-1])
    safe = {lr: median_diverged_last(_losses(runs)) for lr, runs in m["unclipped"].items() if _diverged(runs) == 0}
    best = min(safe, key=lambda lr: safe[lr]) if safe else None
    return {"growth": g[0] / g[-1], "high_rate": float(high),
            "diverged_by_rate": {lr: _diverged(runs) for lr, runs in m["unclipped"].items()},
            "seeds": len(m["unclipped"][high]), "best_rate": None if best is None else float(best),
            "best_loss": math.inf if best is None else safe[best],
            **{f"{c}_diverged": _diverged(m[c]) for c in CLIPPINGS},
            **{f"{c}_loss": median_diverged_last(_losses(m[c])) for c in CLIPPINGS}}


def verdicts(m: dict) -> dict[str, Verdict]:
    s = summary(m)
    n, high_div = s["seeds"], s["diverged_by_rate"][str(m["rates"][-1])]
    clipped_ok = {c: s[f"{c}_diverged"] == 0 and s[f"{c}_loss"] <= (1 + NO_WORSE) * s["best_loss"] for c in CLIPPINGS}
    passed = s["growth"] > 1 and 2 * high_div > n and all(clipped_ok.values())
    chance = math.log(m["classes"])
    numbers = {"sigma_w2": m["sigma_w2"], "layer_factor_theory": math.sqrt(m["chi1"]),
               "grad_growth_h1_over_hL": s["growth"], "grad_growth_theory": m["theory_factor"][0],
               **{k: s[k] for k in s if k != "growth"}, "chance_loss": chance}
    rates = ", ".join(f"{d}/{n} at {lr}" for lr, d in s["diverged_by_rate"].items())
    best = (f"the best unclipped rate, {s['best_rate']:g}, reaches a median loss {s['best_loss']:.3g}"
            if s["best_rate"] is not None else "no unclipped rate kept every seed alive")
    clips = "; ".join(f"clipping the {c} ({m['clip_' + c]:g}) at {s['high_rate']:g}: {s[c + '_diverged']}/{n} "
                      f"diverged, median loss {s[c + '_loss']:.3g}" for c in CLIPPINGS)
    why = (f"at init the gradient is {s['growth']:.3g}x larger at layer 1 than at layer {m['depth']} (theory "
           f"{m['theory_factor'][0]:.3g}x); unclipped runs diverged {rates}; {best}; {clips}.")
    return {"C3": Verdict(
        passed,
        "the gradient at init grows from the last hidden layer to the first (factors above 1 multiply up); at the "
        "high rate most unclipped seeds stop as diverged (the NaN guard); clipped by norm and by value at that rate, "
        f"every seed finishes with a median final loss at most {NO_WORSE:.0%} above the best unclipped rate's (the "
        "lowest median among rates where no seed diverged: the lower-rate control).",
        numbers, "clipping", why)}


def figures(m: dict) -> dict:
    fig, (a, b, c) = plots.subplots(1, 3, figsize=(15, 3.9))
    layers = np.arange(1, m["depth"] + 1)
    g = np.array(m["act_grad_norm_at_init"])
    a.semilogy(layers, g / g[-1], "o-", label="measured at init")
    a.semilogy(layers, m["theory_factor"], "--", color="C3", label="theory sqrt(prod chi_1)")
    a.set(xlabel="hidden layer l", ylabel="||dL/dh_l|| / ||dL/dh_L||",
          title=f"gradient grows towards the input (sigma_w^2 = {m['sigma_w2']:.3g})")
    a.legend(fontsize=8)
    # final loss per seed against the rate; a diverged seed is an x at the top of the panel
    chance = math.log(m["classes"])
    top = 1.15 * chance
    rates = [float(r) for r in m["unclipped"]]
    for lr in rates:
        losses = _losses(m["unclipped"][str(lr)])
        finished = [v for v in losses if math.isfinite(v)]
        b.scatter([lr] * len(finished), finished, s=18, color="C0", alpha=0.7)
        if len(finished) < len(losses):
            b.scatter([lr], [top], s=40, color="C3", marker="x")
            b.annotate(f"{len(losses) - len(finished)}/{len(losses)}", (lr, top), xytext=(5, -3),
                       textcoords="offset points", fontsize=8, color="C3")
    b.plot(rates, [spread(_losses(m["unclipped"][str(lr)])).median for lr in rates], "-", color="C0",
           label="unclipped (median of finished seeds)")
    high = rates[-1]
    for k, name in enumerate(CLIPPINGS, start=1):
        losses = _losses(m[name])
        b.scatter([high * (1.08 if k == 1 else 1.16)] * len(losses), [v if math.isfinite(v) else top for v in losses],
                  s=26, marker="D" if k == 1 else "s", color=f"C{k}", label=f"{name} clipped ({m['clip_' + name]:g})")
    b.axhline(chance, color="0.5", ls="--", lw=0.8, label="chance ln(classes)")
    b.set(xscale="log", xlabel="learning rate", ylabel="final training loss (x = diverged)",
          title="per seed: the lower-rate control and clipping at the high rate")
    b.set_xticks(rates, [f"{r:g}" for r in rates])
    b.minorticks_off()
    b.legend(fontsize=7)
    for k, name in enumerate(("unclipped", *CLIPPINGS)):
        r = m["curves"][name]
        c.semilogy(r["loss_steps"], r["loss"], color=f"C{k}", lw=0.9, label=f"{name} ({r['status']})")
        if r["status"] == "diverged":
            c.axvline(r["steps"], color=f"C{k}", ls=":")
    c.axhline(chance, color="0.5", ls="--", lw=0.8)
    c.set_ylim(top=20 * chance)  # the diverging run leaves the panel on its way to overflow
    c.set(xlabel="step", ylabel="training loss", title=f"first seed at lr {high:g}, same batches")
    c.legend(fontsize=8)
    fig.tight_layout()
    return {"clipping": fig}
