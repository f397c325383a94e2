"""X1, beyond the seeds: how deep a tanh net trains, measured across (sigma_w^2, depth) against mean-field
theory's correlation depth scale xi_c (Schoenholz et al. 2017, "Deep information propagation").

Tanh MLPs with the mean-field init (W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2 = 0.05)) are
trained on MNIST-1D with SGD for a fixed budget, at every sigma_w^2 and depth of a grid and on
several seeds, by the batched trainer (``sweep.batched``: the nets of one depth train together).
A net *trained* when its final training loss is at least ``MARGIN`` nats under chance (ln of the
class count): an untrainable net stays at chance to within a hundredth of a nat. Per sigma_w^2 the
measured boundary L* is the depth where the share of seeds that trained crosses 1/2 (interpolated
in log depth between the two grid depths around it).

Theory: the correlation between two inputs approaches its fixed point as exp(-l / xi_c), with
1/xi_c = -ln chi_c (``theory.analyse``), and Schoenholz et al. find nets train only while
L <~ 6 xi_c. The verdict asks whether L* is proportional to xi_c, and with what constant, where the
grid can see it (6 xi_c inside the grid's depths); near the critical point xi_c diverges and the
boundary is set by the training budget instead, which the figure shows and the verdict leaves out.
"""

from __future__ import annotations

import math

import numpy as np

from .. import plots, theory
from ..config import TrainConfig
from . import claim
from .claim import Claim, Verdict

CLAIMS = (Claim("X1", "Beyond the seeds (Schoenholz et al. 2017): a deep tanh network trains only to a depth "
                      "proportional to mean-field theory's correlation depth scale xi_c at its (sigma_w^2, sigma_b^2) "
                      "(the paper: L <~ 6 xi_c), which diverges at the order-to-chaos transition.",
                "beyond the seeds; Schoenholz et al. 2017"),)


class Size(claim.Size):
    sigma_w2: tuple[float, ...]  # the grid's sigma_w^2 (fan_in Var w)
    depths: tuple[int, ...]  # hidden layers
    seeds: int  # nets per cell, seeds seed .. seed + seeds - 1
    width: int
    n_train: int  # MNIST-1D training samples
    batch_size: int
    epochs: int
    lr: float  # plain SGD


# sigma_w^2 on both sides of the critical point (1.76 at sigma_b^2 = 0.05), most of them where 6 xi_c
# falls inside the depths, so that the fit keeps enough points when one boundary moves past the grid
QUICK = Size(sigma_w2=(1.0, 1.15, 1.3, 1.75, 2.25, 2.75, 3.25, 4.0), depths=(10, 20, 30, 45, 60, 80), seeds=2,
             width=32, n_train=2000, batch_size=64, epochs=12, lr=0.01)
FULL = Size(sigma_w2=(1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0),
            depths=(10, 15, 20, 30, 45, 60, 80, 100), seeds=4, width=32, n_train=2000, batch_size=64, epochs=20,
            lr=0.01)
SIGMA_B2 = 0.05
MARGIN = 0.1  # nats under chance: "trained" (untrainable nets end within 0.01 of ln 10)
MIN_POINTS = 4  # sigma_w^2 values with a boundary inside the grid that the fit needs
SLOPE = 0.5  # proportional: the slope of log L* on log xi_c within 1 +- this
SCATTER = math.log(1.5)  # the std of log(L* / xi_c), at most: the constant holds within a factor 1.5


def run(size: Size, seed: int, folder) -> dict:
    from .. import job
    from ..sweep import batched

    seeds = list(range(seed, seed + size.seeds))
    loss = [[[math.nan] * len(seeds) for _ in size.depths] for _ in size.sigma_w2]
    accuracy = [[[math.nan] * len(seeds) for _ in size.depths] for _ in size.sigma_w2]
    for j, depth in enumerate(size.depths):  # one batch per depth: every sigma_w^2 and seed of it
        cfgs = [TrainConfig(data="mnist1d", n_train=size.n_train, depth=depth, width=size.width, activation="tanh",
                            init="meanfield", sigma_w2=w, sigma_b2=SIGMA_B2, optimizer="sgd", lr=size.lr,
                            epochs=size.epochs, batch_size=size.batch_size, seed=s)
                for w in size.sigma_w2 for s in seeds]
        for cfg, summary in zip(cfgs, batched.train(cfgs)):
            i, k = size.sigma_w2.index(cfg.sigma_w2), seeds.index(cfg.seed)
            loss[i][j][k], accuracy[i][j][k] = summary.train_loss, summary.test_accuracy
    classes = job.dataset(cfgs[0]).classes
    points = [theory.analyse("tanh", w, SIGMA_B2) for w in size.sigma_w2]
    return {"sigma_w2": list(size.sigma_w2), "depths": list(size.depths), "seeds": seeds, "sigma_b2": SIGMA_B2,
            "chance_loss": math.log(classes), "train_loss": loss, "test_accuracy": accuracy,
            "xi_c": [p.xi_c for p in points], "critical_sigma_w2": float(theory.critical_sigma_w2("tanh", SIGMA_B2))}


def trained_share(m: dict) -> np.ndarray:
    """[sigma_w2, depth]: the share of seeds whose final training loss is ``MARGIN`` under chance."""
    loss = np.asarray(m["train_loss"], dtype=float)
    with np.errstate(invalid="ignore"):
        return np.mean(np.where(np.isfinite(loss), loss < m["chance_loss"] - MARGIN, False), axis=2)


def boundary(depths: list[int], share: np.ndarray) -> tuple[float, str]:
    """(L*, kind) for one sigma_w^2: the depth where ``share`` (per depth) first falls under 1/2,
    interpolated in log depth; kind "inside", "beyond" (every depth trained: L* >= the deepest, given
    as it) or "before" (the shallowest did not train: L* <= it, given as it)."""
    if share[0] < 0.5:
        return float(depths[0]), "before"
    for j in range(1, len(depths)):
        if share[j] < 0.5:
            t = (share[j - 1] - 0.5) / (share[j - 1] - share[j])
            return float(math.exp(math.log(depths[j - 1]) + t * (math.log(depths[j]) - math.log(depths[j - 1])))), "inside"
    return float(depths[-1]), "beyond"


def analyse(m: dict) -> dict:
    """The boundary per sigma_w^2, the points the fit reads (theory's 6 xi_c inside the grid and a
    measured boundary inside it), and the fit L* = c xi_c (c = exp mean log(L*/xi_c))."""
    share = trained_share(m)
    found = [boundary(m["depths"], share[i]) for i in range(len(m["sigma_w2"]))]
    xi = np.asarray(m["xi_c"], dtype=float)
    fit = [i for i, (_, kind) in enumerate(found) if kind == "inside" and 6 * xi[i] <= m["depths"][-1]]
    out = {"boundary": [b for b, _ in found], "kind": [k for _, k in found], "fit": fit, "share": share.tolist()}
    if len(fit) >= 2:
        lx, ly = np.log(xi[fit]), np.log([found[i][0] for i in fit])
        ratio = ly - lx
        out.update(c=float(np.exp(ratio.mean())), scatter=float(ratio.std()), scatter_constant=float(ly.std()),
                   r=float(np.corrcoef(lx, ly)[0, 1]) if lx.std() > 0 and ly.std() > 0 else math.nan,
                   slope=float(np.polyfit(lx, ly, 1)[0]))
    return out


def verdicts(m: dict) -> dict[str, Verdict]:
    """Pass when, over the sigma_w^2 whose theory boundary 6 xi_c lies inside the grid and whose measured
    boundary does too (at least ``MIN_POINTS``, on both sides of the critical point), L* grows as the
    first power of xi_c (the least-squares slope of log L* on log xi_c within 1 +- ``SLOPE``), L* / xi_c
    is one constant within a factor 1.5 (std of its log <= ln 1.5), and that constant explains the
    boundary better than a boundary that ignores xi_c (the control: the scatter of log(L*/xi_c) is
    under the scatter of log L* itself). Pearson's r is reported, not ruled on: over the narrow range
    of xi_c a grid can see, it measures the noise of the boundary as much as its trend."""
    a = analyse(m)
    fit, crit = a["fit"], m["critical_sigma_w2"]
    sides = {m["sigma_w2"][i] < crit for i in fit}
    numbers = {"points_fitted": len(fit), "critical_sigma_w2": crit,
               **{f"boundary_at_sigma_w2_{w:g}": b for w, b in zip(m["sigma_w2"], a["boundary"])},
               **{f"six_xi_c_at_sigma_w2_{w:g}": 6 * x for w, x in zip(m["sigma_w2"], m["xi_c"])}}
    if len(fit) < 2:
        passed, why = False, (f"only {len(fit)} sigma_w^2 value(s) have both boundaries inside the grid's depths "
                              f"{m['depths'][0]}-{m['depths'][-1]}: nothing to fit")
    else:
        numbers.update(c=a["c"], c_over_6=a["c"] / 6, pearson_r=a["r"], log_log_slope=a["slope"],
                       scatter_log_ratio=a["scatter"], scatter_log_boundary=a["scatter_constant"])
        passed = (len(fit) >= MIN_POINTS and len(sides) == 2 and abs(a["slope"] - 1) <= SLOPE
                  and a["scatter"] <= SCATTER and a["scatter"] < a["scatter_constant"])
        beyond = [f"{w:g}" for w, k in zip(m["sigma_w2"], a["kind"]) if k == "beyond"]
        fitted = ", ".join(f"{m['sigma_w2'][i]:g}" for i in fit)
        why = (f"over {len(fit)} values of sigma_w^2 ({fitted}) the measured "
               f"boundary is L* = {a['c']:.2f} xi_c ({a['c'] / 6:.2f} x the paper's 6 xi_c) within a factor "
               f"{math.exp(a['scatter']):.2f} (L* alone varies by a factor {math.exp(a['scatter_constant']):.2f}); log L* "
               f"against log xi_c: slope {a['slope']:.2f}, r = {a['r']:.2f}. "
               + (f"At sigma_w^2 = {', '.join(beyond)} every depth up to {m['depths'][-1]} trained. " if beyond else "")
               + f"The critical point is sigma_w^2 = {crit:.3g}.")
    return {"X1": Verdict(
        passed,
        f"a net trained when its final training loss is {MARGIN:g} nats under chance; L* is where the share of "
        f"seeds that trained falls under 1/2. Over the sigma_w^2 where theory's 6 xi_c and the measured L* both lie "
        f"inside the grid (at least {MIN_POINTS}, on both sides of the critical point): the slope of log L* on "
        f"log xi_c within 1 +- {SLOPE:g} (proportional), L*/xi_c constant within a factor {math.exp(SCATTER):g} (std of its log), and "
        "more constant than L* itself (the control: a boundary that ignores xi_c).",
        numbers, "trainability", why)}


def figures(m: dict) -> dict:
    """Mean final training loss over (sigma_w^2, depth), with theory's 6 xi_c, the measured boundary
    L* and the fitted c xi_c drawn over it."""
    a = analyse(m)
    loss = np.nanmean(np.asarray(m["train_loss"], dtype=float), axis=2).T  # [depth, sigma_w2]
    grid = {"x": m["sigma_w2"], "y": m["depths"], "value": loss}
    w = np.linspace(min(m["sigma_w2"]), max(m["sigma_w2"]), 120)
    xi = np.asarray([theory.analyse("tanh", float(v), m["sigma_b2"]).xi_c for v in w])
    overlays = [(w, 6 * xi, "6 xi_c (Schoenholz et al. 2017)", {"color": "red", "lw": 2})]
    for kind, label, marker in (("inside", "measured boundary L*", "o"), ("beyond", "every depth trained", "^"),
                                ("before", "no depth trained", "v")):
        at = [i for i, k in enumerate(a["kind"]) if k == kind]
        if at:
            overlays.append(([m["sigma_w2"][i] for i in at], [a["boundary"][i] for i in at], label,
                             {"color": "white", "marker": marker, "ls": "none", "markeredgecolor": "black"}))
    if "c" in a:
        overlays.append((w, a["c"] * xi, f"fit: L* = {a['c']:.2f} xi_c", {"color": "orange", "ls": "--", "lw": 1.5}))
    fig = plots.sweep_heatmap(grid, "sigma_w2", "depth", "final train loss", overlays,
                              title=f"X1: tanh, sigma_b^2 = {m['sigma_b2']:g}, SGD, fixed budget "
                                    f"(chance = {m['chance_loss']:.3g})")
    return {"trainability": fig}
