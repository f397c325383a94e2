"""C10-C13: momentum, AdaGrad, RMSProp and Adam on 2-D surfaces, and their curves on MNIST-1D.

The 2-D runs use the engine's optimisers (``optim.make``: torch.optim, proved equal to the
seeds' formulas in tests/test_optim.py) on:
- a ravine f(x, y) = (a x^2 + b y^2) / 2 with curvatures a = 0.01 along it and b = 2 across it;
- the ravine again at every rate of a grid, for SGD and for momentum: each is compared at its own
  best rate (C10), and the zig-zag the seeds describe (steps across the ravine that cancel) is
  measured as the seeds see it: the share of steps whose move across (dy) flips sign, and the
  path length across (sum |dy|), at each optimiser's best rate and at a matched effective step
  (momentum at SGD's best alpha times 1 - mu: the same alpha / (1 - mu) on a steady gradient);
- a saddle f(x, y) = x^2 / 2 + y^4 / 4 - y^2 / 2 (minima at y = +-1), started next to the saddle,
  each optimiser at the rate that leaves it soonest among those that then settle in a minimum
  (tuned on the saddle itself, not on the ravine);
- a 1-D double well x^4 - 2 x^2 + x / 2 started on the side of its poor local minimum, over a grid of
  rates: where does each optimiser end (C10's "poor local minima")?
- the same ravine with Gaussian noise on the gradient (a stochastic gradient that never
  vanishes), where AdaGrad's and RMSProp's effective step alpha / (sqrt(r) + delta) is read
  from the optimiser's state, with the seeds' constants: delta = 1e-5 and RMSProp's rho = 0.999
  (seed 001; torch's defaults are 1e-10/1e-8 and 0.99).
C13's Adam without bias correction has no torch switch, so it is written out here from the
formula (``adam_steps``) and tested against the plain reference in tests/reference.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import optim, plots
from ..config import ModelSpec, TrainConfig
from . import claim
from .claim import Claim, Verdict
from .common import fit_config, train
from .seeds import spread

CLAIMS = (
    Claim("C10", "Momentum: v <- mu v + g; theta <- theta - alpha v; mu in [0, 1), usually 0.9; mu = 0 is plain "
                 "SGD. Damps oscillation across a ravine, speeds travel along it, and carries the iterate through "
                 "saddle points and poor local minima.", "001"),
    Claim("C11", "AdaGrad: r <- r + g^2; w <- w - alpha/(sqrt(r) + delta) g. Big steps in flat directions, small "
                 "in steep ones; but r only grows, so the step size decays until learning stalls.", "001"),
    Claim("C12", "RMSProp: r <- rho r + (1 - rho) g^2, same update; rho forgets old gradients.", "001"),
    Claim("C13", "Adam: v <- mu v + (1-mu) g; r <- rho r + (1-rho) g^2; v~ = v/(1-mu^t), r~ = r/(1-rho^t); "
                 "theta <- theta - alpha/(sqrt(r~) + delta) v~, mu = 0.9, rho = 0.999. The bias correction removes "
                 "the slow 'cold start' of the first steps.", "001"),
)


class Size(claim.Size):
    steps: int  # of each 2-D descent (ravine, saddle)
    noisy_steps: int  # of the noisy-ravine runs: at least twice RMSProp's start-up (STARTUP steps)
    train: TrainConfig  # the MNIST-1D net; the optimiser and its rate are set per run
    adam: TrainConfig  # C13's short MNIST-1D runs: Adam with and without its bias corrections
    adam_rates: tuple[float, ...]
    seeds: int  # per (correction, rate) cell of C13's runs


_NET = TrainConfig.compose(ModelSpec(depth=2, width=100, activation="relu", init="he"))
_ADAM_RATES = (1e-3, 3e-3, 1e-2, 3e-2)
QUICK = Size(steps=150, noisy_steps=10000,
             train=_NET.replace(n_train=2000, n_test=500, epochs=10, batch_size=32),
             adam=_NET.replace(n_train=2000, n_test=500, epochs=3, batch_size=32, optimizer="adam"),
             adam_rates=_ADAM_RATES, seeds=3)
FULL = Size(steps=400, noisy_steps=20000,
            train=_NET.replace(n_train=4000, n_test=1000, epochs=50, batch_size=32),
            adam=_NET.replace(n_train=4000, n_test=1000, epochs=10, batch_size=32, optimizer="adam"),
            adam_rates=(3e-4, *_ADAM_RATES), seeds=5)
CORRECTIONS = {"both": "corrected", "none": "uncorrected", "second": "v uncorrected"}  # optim.BIAS_CORRECTIONS

RAVINE = (0.01, 2.0)  # curvature along, across
RAVINE_START = (-8.0, 1.0)
SADDLE_START = (1.0, 1e-4)
RATES = {"sgd": 0.9, "momentum": 0.9, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.05}  # 2-D step sizes
NOISE = 0.5  # std of the noise added to each gradient component in the noisy ravine
SEED_DELTA = 1e-5  # the seeds' delta for AdaGrad, RMSProp and Adam (seed 001)
SEED_RHO = 0.999  # the seeds' rho for RMSProp (seed 001)
STARTUP = round(5 / (1 - SEED_RHO))  # RMSProp's r starts at 0: after 5/(1 - rho) steps its bias is below e^-5
THIN = 10  # the noisy runs' paths, losses and effective steps are kept every THIN steps
FASTER = 10.0  # momentum "speeds travel": loss after N steps at least 10x below SGD's, each at its best rate
TUNE = tuple(0.01 * 2 ** (k / 2) for k in range(16))  # 0.01 ... 1.8, a factor sqrt(2) apart: the rates tried per optimiser
WELL_RATES = tuple(0.002 * 2 ** (k / 2) for k in range(14))  # the double well's rates: 0.002 ... 0.18
WELL_BARRIER = 0.13  # x below it: the global basin of the double well
# C11: effective steps compared between step N/10 and step N of the noisy ravine: AdaGrad's r grows like t, so its
# step should fall like 1/sqrt(t) (to ~0.32 over a 10x longer run).
# C12: RMSProp's r is an average over ~1/(1 - rho) = 1000 steps that starts at 0, so its step is compared between the
# end of that start-up (STARTUP) and N; AdaGrad over the same window is the control that the window shows a decay
# (1/sqrt(t): sqrt(STARTUP / N), 0.71 at N = 2 STARTUP)
DECAYED = 0.5  # AdaGrad "decays": the step at N is below half of the step at N/10
KEPT = 0.8  # RMSProp "forgets": the step at N is at least 0.8 of the step at STARTUP (r's sampling noise is ~5%)
MNIST_RATES = {"sgd": 0.1, "momentum": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3}


def ravine(p: torch.Tensor) -> torch.Tensor:
    """f(x, y) = (a x^2 + b y^2) / 2, a = 0.01, b = 2: condition number 200."""
    return 0.5 * (RAVINE[0] * p[0] ** 2 + RAVINE[1] * p[1] ** 2)


def saddle(p: torch.Tensor) -> torch.Tensor:
    """f(x, y) = x^2 / 2 + y^4 / 4 - y^2 / 2: a saddle at 0, minima at (0, +-1)."""
    return 0.5 * p[0] ** 2 + 0.25 * p[1] ** 4 - 0.5 * p[1] ** 2


def double_well(p: torch.Tensor) -> torch.Tensor:
    """f(x) = x^4 - 2 x^2 + x / 2 (y unused): a poor local minimum at x = 0.93 (f = -0.55) and the global one at
    x = -1.06 (f = -1.51), a barrier at x = 0.13 between them. Descents start at x = 2, on the poor side."""
    return p[0] ** 4 - 2 * p[0] ** 2 + 0.5 * p[0] + 0 * p[1]


def zigzag(path: list[list[float]]) -> dict:
    """The zig-zag across the ravine as the seeds describe it (steps across that cancel): the share of
    steps whose move across, dy_t = y_t - y_(t-1), has the opposite sign of the one before, and the path
    length across, sum |dy_t| (the distance travelled across, against |y_0| = 1 needed)."""
    with np.errstate(invalid="ignore", over="ignore"):
        dy = np.diff(np.array(path)[:, 1])
        if not np.all(np.isfinite(dy)):
            return {"flips": None, "path_across": None}
        flips = np.sign(dy[1:]) * np.sign(dy[:-1]) < 0
    return {"flips": float(flips.mean()), "path_across": float(np.abs(dy).sum())}


def tune(name: str, steps: int) -> dict:
    """Each rate of ``TUNE`` on the ravine for ``steps`` steps: final loss, the RMS of y (how far across it
    stays) and the zig-zag (``zigzag``); the best rate is the one with the lowest final loss (a fair
    comparison tunes each optimiser)."""
    rows = []
    for lr in TUNE:
        r = descend(ravine, RAVINE_START, name, lr, steps)
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.array(r["path"])[1:, 1]
            rms = float(np.sqrt(np.mean(y * y)))
        rows.append({"lr": lr, "loss": r["loss"][-1], "rms_across": rms, **zigzag(r["path"])})
    finite_rows = [r for r in rows if np.isfinite(r["loss"])]
    return {"rates": rows, "best": min(finite_rows, key=lambda r: r["loss"])}


SETTLED = 1e-3  # a saddle descent "settles" when its loss over the last quarter stays within this of the minimum


def tune_saddle(name: str, steps: int) -> dict:
    """Each rate of ``TUNE`` on the saddle from ``SADDLE_START``: the step where |y| first passes 0.5, and
    whether the descent then settles in a minimum (f = -1/4 at y = +-1; its loss over the last quarter
    within ``SETTLED``); the best rate leaves soonest among those that settle."""
    rows, paths = [], {}
    for lr in TUNE:
        r = descend(saddle, SADDLE_START, name, lr, steps)
        tail = np.array(r["loss"][-(steps // 4):])
        settled = bool(np.all(np.isfinite(tail)) and np.abs(tail + 0.25).max() < SETTLED)
        rows.append({"lr": lr, "escape": _escape(r["path"]), "settled": settled})
        paths[lr] = r["path"]
    able = [r for r in rows if r["settled"] and r["escape"] is not None]
    best = min(able, key=lambda r: (r["escape"], r["lr"])) if able else None
    return {"rates": rows, "best": best, "path": paths[best["lr"]] if best else None}


def basins(name: str, steps: int) -> dict:
    """The double well from x = 2 at every rate of ``WELL_RATES``: where each descent ends (None: diverged)."""
    ends = []
    for lr in WELL_RATES:
        x = descend(double_well, (2.0, 0.0), name, lr, steps)["path"][-1][0]
        ends.append(x if np.isfinite(x) else None)
    finished = [x for x in ends if x is not None]
    return {"rates": list(WELL_RATES), "ends": ends,
            "global_share": sum(x < WELL_BARRIER for x in finished) / len(finished) if finished else 0.0}


def descend(fn, start, name: str, lr: float, steps: int, noise: float = 0.0, seed: int = 0, *,
            rho: float | None = None, delta: float | None = None) -> dict:
    """``steps`` of the engine's optimiser ``name`` (``rho``, ``delta``: None for its defaults) on ``fn``
    from ``start``: path, losses, effective steps."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = optim.make(name, [p], lr=lr, rho=rho, delta=delta)
    g = torch.Generator().manual_seed(seed)
    path, losses, effective = [list(start)], [float(fn(p.detach()))], []
    for _ in range(steps):
        loss = fn(p)
        opt.zero_grad()
        loss.backward()
        if noise:
            p.grad += noise * torch.randn(2, generator=g, dtype=torch.float64)
        opt.step()
        path.append(p.detach().tolist())
        losses.append(float(fn(p.detach())))
        state = opt.state[p]
        if name == "adagrad":
            effective.append((lr / (state["sum"].sqrt() + opt.defaults["eps"])).tolist())
        elif name == "rmsprop":
            effective.append((lr / (state["square_avg"].sqrt() + opt.defaults["eps"])).tolist())
    return {"path": path, "loss": losses, "effective_step": effective}


def adam_steps(grads: list[torch.Tensor], lr: float, mu: float = 0.9, rho: float = 0.999, delta: float = 1e-8, *,
               correct_v: bool, correct_r: bool) -> list[torch.Tensor]:
    """Adam's updates for a sequence of gradients of one parameter, each bias correction on or off (C13):
    v <- mu v + (1 - mu) g; r <- rho r + (1 - rho) g^2; step = -alpha v' / (sqrt(r') + delta), with
    v' = v / (1 - mu^t) if ``correct_v`` else v, and r' = r / (1 - rho^t) if ``correct_r`` else r.
    torch's Adam is the case with both on; it has no switch for the others."""
    v = torch.zeros_like(grads[0])
    r = torch.zeros_like(grads[0])
    steps = []
    for t, g in enumerate(grads, start=1):
        v = mu * v + (1 - mu) * g
        r = rho * r + (1 - rho) * g * g
        vv = v / (1 - mu ** t) if correct_v else v
        rr = r / (1 - rho ** t) if correct_r else r
        steps.append(-lr * vv / (rr.sqrt() + delta))
    return steps


def uncorrected_factor(t: np.ndarray, mu: float = optim.DEFAULT_MU, rho: float = optim.DEFAULT_RHO["adam"]) -> np.ndarray:
    """(1 - mu^t) / sqrt(1 - rho^t): Adam's uncorrected step over its corrected one at step t on a steady gradient
    (delta aside), since v_t = (1 - mu^t) g and r_t = (1 - rho^t) g^2 there (Kingma & Ba 2015, section 3)."""
    return (1 - mu ** t) / np.sqrt(1 - rho ** t)


def _first_steps(steps: int, seed: int) -> dict:
    """|step_t| / alpha over the first ``steps`` Adam steps on a fixed gradient sequence, three ways."""
    g = torch.Generator().manual_seed(seed)
    grads = [torch.tensor([0.3, -0.02], dtype=torch.float64) + 0.01 * torch.randn(2, generator=g, dtype=torch.float64)
             for _ in range(steps)]
    lr = 1e-3
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = optim.make("adam", [p], lr=lr)
    corrected = []
    for grad in grads:
        before = p.detach().clone()
        p.grad = grad.clone()
        opt.step()
        corrected.append(float((p.detach() - before).abs().mean() / lr))
    size = lambda upd: [float(u.abs().mean() / lr) for u in upd]  # noqa: E731
    return {"corrected": corrected,
            "uncorrected": size(adam_steps(grads, lr, correct_v=False, correct_r=False)),
            "first_moment_only_uncorrected": size(adam_steps(grads, lr, correct_v=False, correct_r=True))}


def _adam_training(size: Size, seed: int) -> dict:
    """C13 in practice: Adam with both, one or neither bias correction at every rate, ``size.seeds`` seeds each:
    the mean training loss over the first epoch (the cold start) and the final one (None: diverged)."""
    out = {"rates": list(size.adam_rates), "steps_per_epoch": math.ceil(size.adam.n_train / size.adam.batch_size)}
    for correction in CORRECTIONS:
        cells = []
        for lr in size.adam_rates:
            runs = [fit_config(size.adam.replace(lr=lr, bias_correction=correction, seed=seed + k, data_seed=seed))
                    for k in range(size.seeds)]
            ok = [r.status == "finished" and len(r.history) == size.adam.epochs for r in runs]
            cells.append({"first_epoch": [r.history[0]["train_loss"] if good else None for r, good in zip(runs, ok)],
                          "final": [r.train_loss if good else None for r, good in zip(runs, ok)]})
        out[correction] = cells
    return out


def run(size: Size, seed: int, folder) -> dict:
    n = size.steps
    tuned = {k: tune(k, n) for k in ("sgd", "momentum")}
    matched_lr = tuned["sgd"]["best"]["lr"] * (1 - optim.DEFAULT_MU)  # momentum's alpha / (1 - mu) = SGD's alpha
    matched = descend(ravine, RAVINE_START, "momentum", matched_lr, n)
    out = {"ravine": {k: descend(ravine, RAVINE_START, k, lr, n) for k, lr in RATES.items()},
           "tuned": tuned,
           "matched": {"lr": matched_lr, "loss": matched["loss"][-1], **zigzag(matched["path"]),
                       "path": matched["path"][:60]},
           "saddle": {k: tune_saddle(k, n) for k in ("sgd", "momentum")},
           "double_well": {k: basins(k, 4 * n) for k in ("sgd", "momentum")},
           "noisy": {k: descend(ravine, RAVINE_START, k, RATES[k], size.noisy_steps, NOISE, seed, delta=SEED_DELTA,
                                rho=SEED_RHO if k == "rmsprop" else None) for k in ("adagrad", "rmsprop")},
           "adam_first_steps": _first_steps(50, seed), "adam_training": _adam_training(size, seed), "mnist1d": {}}
    for k in ("sgd", "momentum", "adagrad", "rmsprop", "adam"):
        cfg = size.train.replace(optimizer=k, lr=MNIST_RATES[k], seed=seed, data_seed=seed)
        out["mnist1d"][k] = train(cfg, folder, k)
    for k, r in out["noisy"].items():  # keep the data small: every 10th point of the long runs
        r["path"] = r["path"][::10]
        r["loss"] = r["loss"][::10]
        r["effective_step"], r["every"] = r["effective_step"][THIN - 1::THIN], THIN  # after steps 10, 20, ...
    return out


def _escape(path: list[list[float]], level: float = 0.5) -> int | None:
    """First step where |y| passes ``level``: the iterate has left the saddle."""
    return next((t for t, (_, y) in enumerate(path) if abs(y) > level), None)


def verdicts(m: dict) -> dict[str, Verdict]:
    rv, sd, tuned, well, matched = m["ravine"], m["saddle"], m["tuned"], m["double_well"], m["matched"]
    best = {k: tuned[k]["best"] for k in ("sgd", "momentum")}
    esc = {k: sd[k]["best"]["escape"] if sd[k]["best"] else None for k in ("sgd", "momentum")}
    steps = len(rv["sgd"]["loss"]) - 1

    def less(a, b):  # a measured below b (a run that diverged measures nothing)
        return a is not None and b is not None and a < b

    parts = {
        "travels faster along the ravine": best["momentum"]["loss"] * FASTER <= best["sgd"]["loss"],
        "zig-zags less across it": less(best["momentum"]["flips"], best["sgd"]["flips"])
        and less(matched["flips"], best["sgd"]["flips"]) and less(matched["path_across"], best["sgd"]["path_across"]),
        "leaves the saddle sooner": esc["momentum"] is not None and (esc["sgd"] is None or esc["momentum"] < esc["sgd"]),
        "carries through the poor local minimum": well["momentum"]["global_share"] > well["sgd"]["global_share"],
    }
    c10 = all(parts.values())
    noisy = m["noisy"]
    every = noisy["adagrad"].get("every", 1)  # the effective steps kept: after steps every, 2 every, ...
    ada, rms = np.array(noisy["adagrad"]["effective_step"]), np.array(noisy["rmsprop"]["effective_step"])
    last = len(ada) * every  # the last step N

    def at(steps: np.ndarray, step: int) -> float:  # the mean effective step after ``step`` steps
        return float(steps[step // every - 1].mean())

    ada_decay = at(ada, last) / at(ada, last // 10)
    start = min(STARTUP, last // 2)  # a run shorter than twice the start-up is judged from its middle
    rms_kept = at(rms, last) / at(rms, start)
    ada_same_window = at(ada, last) / at(ada, start)
    flat_over_steep = float(np.array(rv["adagrad"]["effective_step"])[9, 0] / np.array(rv["adagrad"]["effective_step"])[9, 1])
    c11 = ada_decay < DECAYED and flat_over_steep > 1
    c12 = rms_kept >= KEPT and ada_same_window < KEPT
    first = m["adam_first_steps"]
    factor = uncorrected_factor(np.arange(1, 10_001))
    c13 = abs(first["corrected"][0] - 1) < 0.1 and first["uncorrected"][0] < first["corrected"][0]
    acc = {k: r["test_accuracy"] for k, r in m["mnist1d"].items()}
    practice, practice_sentence = adam_practice(m)
    return {
        "C10": Verdict(
            c10, f"each optimiser at its own best rate on the ravine (the lowest loss after {steps} steps over "
                 f"{len(TUNE)} rates {TUNE[0]:g}..{TUNE[-1]:.2g}): momentum (mu = 0.9) ends at least {FASTER:g}x lower "
                 "than SGD (travel along); its move across the ravine flips sign in a smaller share of steps than "
                 "SGD's, at its best rate and at a matched effective step (alpha (1 - mu) of SGD's best alpha), where "
                 "its path across is also shorter (the seeds' zig-zag damped); each tuned on the saddle itself, it "
                 "passes |y| > 0.5 in fewer steps; on a 1-D double well started on the poor side, momentum ends in "
                 f"the global basin at more of {len(WELL_RATES)} rates than SGD. All four must hold.",
            {"best_rate_sgd": best["sgd"]["lr"], "best_rate_momentum": best["momentum"]["lr"],
             "ravine_loss_sgd": best["sgd"]["loss"], "ravine_loss_momentum": best["momentum"]["loss"],
             "flips_sgd": best["sgd"]["flips"], "flips_momentum": best["momentum"]["flips"],
             "flips_momentum_matched": matched["flips"], "path_across_sgd": best["sgd"]["path_across"],
             "path_across_momentum": best["momentum"]["path_across"],
             "path_across_momentum_matched": matched["path_across"], "matched_rate_momentum": matched["lr"],
             "rms_across_sgd": best["sgd"]["rms_across"], "rms_across_momentum": best["momentum"]["rms_across"],
             "saddle_rate_sgd": sd["sgd"]["best"] and sd["sgd"]["best"]["lr"],
             "saddle_rate_momentum": sd["momentum"]["best"] and sd["momentum"]["best"]["lr"],
             "saddle_escape_step_sgd": esc["sgd"], "saddle_escape_step_momentum": esc["momentum"],
             "global_basin_share_sgd": well["sgd"]["global_share"],
             "global_basin_share_momentum": well["momentum"]["global_share"], "mnist1d_test_accuracy": acc},
            "optimisers_2d",
            f"at their best rates (SGD {best['sgd']['lr']:.3g}, momentum {best['momentum']['lr']:.3g}): ravine loss "
            f"{best['sgd']['loss']:.3g} vs {best['momentum']['loss']:.3g}; the move across flips sign in "
            f"{_share(best['sgd']['flips'])} of SGD's steps vs {_share(best['momentum']['flips'])} of momentum's "
            f"({_share(matched['flips'])} at the matched step {matched['lr']:.3g}); path across "
            f"{_num(best['sgd']['path_across'])} vs {_num(best['momentum']['path_across'])} at the best rates and "
            f"{_num(matched['path_across'])} at the matched step (RMS of y {best['sgd']['rms_across']:.3g} vs "
            f"{best['momentum']['rms_across']:.3g}); tuned on the saddle, it is left at step {esc['sgd']} vs "
            f"{esc['momentum']}; global basin reached at {well['sgd']['global_share']:.0%} vs "
            f"{well['momentum']['global_share']:.0%} of the double well's rates. Momentum "
            + "; ".join(f"{what}: {'yes' if ok else 'no'}" for what, ok in parts.items()) + "."),
        "C11": Verdict(
            c11, f"noisy ravine: AdaGrad's mean effective step alpha/(sqrt(r)+delta) at the last step N is below "
                 f"{DECAYED:g} of its value at step N/10 (1/sqrt(t) predicts 0.32); and on the clean ravine after 10 "
                 "steps it is larger along the flat direction than across the steep one.",
            {"adagrad_step_N_over_step_N_10": ada_decay, "adagrad_flat_over_steep_step": flat_over_steep},
            "adaptive_steps",
            f"AdaGrad's effective step fell to {ada_decay:.3g} of its early value; flat/steep step ratio "
            f"{flat_over_steep:.3g}."),
        "C12": Verdict(
            c12, f"noisy ravine with the seeds' rho = {SEED_RHO:g} and delta = {SEED_DELTA:g}: RMSProp's mean "
                 f"effective step at the last step N is at least {KEPT:g} of its value at the end of its start-up "
                 f"(step {start} = 5/(1 - rho), where r's zero start has faded), so old gradients are forgotten "
                 "and the step does not decay; the control: AdaGrad's step over the same window falls below "
                 f"{KEPT:g} (the window can show a decay).",
            {"rmsprop_step_N_over_step_startup": rms_kept, "adagrad_step_N_over_step_startup": ada_same_window,
             "adagrad_step_N_over_step_N_10": ada_decay, "window": [start, last], "rho": SEED_RHO,
             "delta": SEED_DELTA},
            "adaptive_steps", f"from step {start} to {last}, RMSProp kept {rms_kept:.3g} of its effective "
                              f"step; AdaGrad over the same window kept {ada_same_window:.3g} (1/sqrt(t) predicts "
                              f"{math.sqrt(start / last):.3g})."),
        "C13": Verdict(
            c13, "Adam (mu 0.9, rho 0.999) on a steady gradient: with bias correction the first step is alpha "
                 "(|step|/alpha within 10% of 1); the seeds' 'slow cold start' means that without correction the "
                 "first step is smaller than with it.",
            {"first_step_over_alpha_corrected": first["corrected"][0],
             "first_step_over_alpha_uncorrected": first["uncorrected"][0],
             "first_step_over_alpha_only_v_uncorrected": first["first_moment_only_uncorrected"][0],
             "step10_over_alpha_uncorrected": first["uncorrected"][9],
             "closed_form_factor_t1": float(factor[0]), "closed_form_factor_max": float(factor.max()),
             "closed_form_factor_argmax_t": int(factor.argmax()) + 1, "closed_form_factor_min_t_le_1e4": float(factor.min()),
             **practice},
            "adam_bias_correction",
            _adam_why(first) + f" In closed form the uncorrected step is {factor[0]:.3g}x the corrected one at t = 1, "
            f"peaks at {factor.max():.3g}x at t = {int(factor.argmax()) + 1} and stays above {factor.min():.3g}x up to "
            f"t = 10^4. {practice_sentence}"),
    }


def _share(v: float | None) -> str:
    return "n/a (diverged)" if v is None else f"{v:.0%}"


def _num(v: float | None) -> str:
    return "n/a (diverged)" if v is None else f"{v:.3g}"


def adam_practice(m: dict) -> tuple[dict, str]:
    """C13's training runs in numbers (per correction: the median first-epoch loss at each rate, and the best
    median final loss with its rate) and in one sentence written from them."""
    t = m["adam_training"]
    numbers, first, best = {}, [], []
    for correction, label in CORRECTIONS.items():
        early = [spread(c["first_epoch"]).median for c in t[correction]]
        final = [spread(c["final"]).median for c in t[correction]]
        diverged = sum(spread(c["final"]).missing for c in t[correction])
        k = int(np.nanargmin(final)) if not np.all(np.isnan(final)) else None
        numbers[f"adam_{correction}"] = {"first_epoch_by_rate": early, "best_final": None if k is None else final[k],
                                         "best_rate": None if k is None else t["rates"][k], "diverged": diverged}
        first.append(f"{label} " + ", ".join(f"{v:.3g}" for v in early))
        best.append(f"{label} {final[k]:.3g} at {t['rates'][k]:g}" if k is not None else f"{label} diverged")
    seeds = len(t["both"][0]["final"])
    sentence = (f"On MNIST-1D ({seeds} seeds), the mean loss over the first epoch ({t['steps_per_epoch']} steps) at "
                f"rates {', '.join(f'{r:g}' for r in t['rates'])}: " + "; ".join(first)
                + "; the best median final loss: " + "; ".join(best) + ".")
    return numbers, sentence


def _adam_why(first: dict) -> str:
    c, u, v_only = first["corrected"][0], first["uncorrected"][0], first["first_moment_only_uncorrected"][0]
    mu, rho = optim.DEFAULT_MU, optim.DEFAULT_RHO["adam"]
    pace = "slower than" if u < c else "faster than"
    return (f"first step / alpha: corrected {c:.3g}, uncorrected {u:.3g} ({pace} corrected), with only the first "
            f"moment uncorrected {v_only:.3g}. Uncorrected, v carries a factor 1 - mu^t and sqrt(r) a factor "
            f"sqrt(1 - rho^t): at t = 1, {1 - mu:.2g} against {math.sqrt(1 - rho):.2g} with the defaults (mu = {mu:g}, "
            f"rho = {rho:g}), so their ratio {(1 - mu) / math.sqrt(1 - rho):.3g} is the uncorrected first step over "
            "alpha; slow only when v alone goes uncorrected (Kingma & Ba 2015, section 3).")


def figures(m: dict) -> dict:
    fig, (a, b, tuning) = plots.subplots(1, 3, figsize=(20, 4.6))
    xs, ys = np.meshgrid(np.linspace(-9, 1, 200), np.linspace(-1.3, 1.3, 200))
    a.contour(xs, ys, 0.5 * (RAVINE[0] * xs ** 2 + RAVINE[1] * ys ** 2), levels=20, colors="0.8", linewidths=0.6)
    for k, (name, r) in enumerate(m["ravine"].items()):
        path = np.array(r["path"])[:60]
        a.plot(path[:, 0], path[:, 1], ".-", ms=2, lw=0.8, color=f"C{k}", label=f"{name} (alpha {RATES[name]:g})")
    path = np.array(m["matched"]["path"])
    a.plot(path[:, 0], path[:, 1], "--", lw=1.2, color="k",
           label=f"momentum at SGD's best alpha x (1 - mu) = {m['matched']['lr']:.3g}")
    a.set(xlabel="x (along the ravine)", ylabel="y (across)", title="C10-C13: ravine, first 60 steps")
    a.legend(fontsize=8)
    xs, ys = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-1.5, 1.5, 200))
    b.contour(xs, ys, 0.5 * xs ** 2 + 0.25 * ys ** 4 - 0.5 * ys ** 2, levels=20, colors="0.8", linewidths=0.6)
    for k, (name, r) in enumerate(m["saddle"].items()):
        if r["path"] is None:
            continue
        path = np.array(r["path"])
        b.plot(path[:, 0], path[:, 1], ".-", ms=2, lw=0.8, color=f"C{k}",
               label=f"{name} (alpha {r['best']['lr']:.3g}: |y| > 0.5 at step {r['best']['escape']})")
    b.plot([0], [0], "kx", ms=10, label="saddle")
    b.set(xlabel="x", ylabel="y", title="saddle: x^2/2 + y^4/4 - y^2/2 (each at its best saddle rate)")
    b.legend(fontsize=8)
    for k, name in enumerate(("sgd", "momentum")):
        rows = [r for r in m["tuned"][name]["rates"] if np.isfinite(r["loss"])]
        best = m["tuned"][name]["best"]
        tuning.loglog([r["lr"] for r in rows], [r["loss"] for r in rows], "o-", ms=3, color=f"C{k}",
                      label=f"{name}: best {best['lr']:.3g}, RMS across {best['rms_across']:.3g}")
        tuning.plot(best["lr"], best["loss"], "*", ms=12, color=f"C{k}")
    tuning.set(xlabel="learning rate alpha", ylabel=f"ravine loss after {len(m['ravine']['sgd']['loss']) - 1} steps",
               title="C10: each optimiser tuned (star: its best rate)", ylim=(None, 100 * m["ravine"]["sgd"]["loss"][0]))
    tuning.legend(fontsize=8)
    fig.tight_layout()

    fig2, (c, d) = plots.subplots(1, 2, figsize=(13, 4))
    for k, name in enumerate(("adagrad", "rmsprop")):
        eff, every = np.array(m["noisy"][name]["effective_step"]), m["noisy"][name].get("every", 1)
        c.loglog(every * np.arange(1, len(eff) + 1), eff.mean(1), color=f"C{k + 2}", label=name)
    c.axvline(min(STARTUP, every * len(eff) // 2), color="0.5", ls=":", lw=1, label="C12's window starts (5/(1 - rho))")
    c.set(xlabel="step", ylabel="effective step alpha / (sqrt(r) + delta)",
          title=f"noisy ravine (delta {SEED_DELTA:g}, RMSProp rho {SEED_RHO:g}): AdaGrad decays")
    c.legend(fontsize=8)
    for k, (name, r) in enumerate(m["mnist1d"].items()):
        acc = r["test_accuracy_by_epoch"]
        d.plot(range(1, len(acc) + 1), acc, "o-", ms=3, color=f"C{k}", label=f"{name} (lr {MNIST_RATES[name]:g})")
    d.set(xlabel="epoch", ylabel="test accuracy", title="MNIST-1D, 2 x 100 ReLU")
    d.legend(fontsize=8)
    fig2.tight_layout()

    fig3, (e, f) = plots.subplots(1, 2, figsize=(13, 3.9))
    first = m["adam_first_steps"]
    t = np.arange(1, len(first["corrected"]) + 1)
    e.semilogy(t, first["corrected"], "o-", ms=3, label="Adam (bias-corrected)")
    e.semilogy(t, first["uncorrected"], "s-", ms=3, label="no correction")
    e.semilogy(t, first["first_moment_only_uncorrected"], "^-", ms=3, label="v uncorrected, r corrected")
    e.semilogy(t, uncorrected_factor(t), "k:", lw=1.5, label="(1 - mu^t) / sqrt(1 - rho^t), closed form")
    e.axhline(1, color="0.5", lw=0.8, ls="--")
    e.set(xlabel="step t", ylabel="|step| / alpha", title="C13: Adam's first steps")
    e.legend(fontsize=8)
    t = m["adam_training"]
    for k, (correction, label) in enumerate(CORRECTIONS.items()):
        for which, style in (("first_epoch", "o-"), ("final", "s--")):
            cells = [spread(c[which]) for c in t[correction]]
            for lr, s in zip(t["rates"], cells):
                f.scatter([lr] * sum(v is not None for v in s.values), [v for v in s.values if v is not None], s=8,
                          color=f"C{k}", alpha=0.5)
            f.plot(t["rates"], [s.median for s in cells], style, ms=3, color=f"C{k}",
                   label=f"{label}, {'first epoch' if which == 'first_epoch' else 'final'}")
    f.set(xscale="log", xlabel="learning rate alpha", ylabel="training loss (median, dots: seeds)",
          title=f"MNIST-1D: the first epoch ({t['steps_per_epoch']} steps) and the end")
    f.legend(fontsize=7)
    fig3.tight_layout()
    return {"optimisers_2d": fig, "adaptive_steps": fig2, "adam_bias_correction": fig3}
