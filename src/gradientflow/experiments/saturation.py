"""X2, beyond the seeds: how the hidden layers of a deep sigmoid or tanh net saturate during training
(Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks",
AISTATS, section 3 and Figures 2-4).

Nets of ``depth`` hidden layers of ``width`` units (the paper: 5 x 1000 on Shapeset; here 4 x 64 on
MNIST-1D, to fit the budget) start from the paper's *standard* initialisation, its eq. (1):

    W_ij ~ U[-1/sqrt(n), 1/sqrt(n)],   Var(W) = 1/(3 n),   n = fan-in,   biases 0.

A training config names an initialiser and a gain but no fan mode, so a standard-init config says
``init="lecun"``, gain 1/sqrt(3) (the variance 1/(3 n)), and ``paper_network`` draws that variance
from the paper's uniform distribution; the *normalised* (Xavier) initialisation, eq. (16),
W ~ U[-sqrt(6)/sqrt(n_in + n_out), sqrt(6)/sqrt(n_in + n_out)], Var(W) = 2/(n_in + n_out), is the
registry's ``xavier_uniform``. Every net trains with plain SGD on mini-batches of 10, the paper's
size, in the batched trainer (``sweep.batched``: the seeds and inits of one activation together,
each with the engine's sample order), whose ``on_epoch`` hook hands the stacked weights to this
experiment before the first step and after every epoch: on ``probe`` fixed training inputs it reads,
per hidden layer, the mean, the standard deviation and the 98th percentile of |a| (the statistics
of the paper's Figures 2 and 3), and the test error.

The rules, each over the seeds:

- **sigmoid** (paper, Fig. 2: "very quickly at the beginning, all the sigmoid activation values of
  the last hidden layer are pushed to their lower saturation value of 0", while the other layers'
  means stay above 0.5 and fall from the output towards the input; the top layer "then slowly
  desaturates around epoch 100"): in a majority of seeds the top layer's mean falls under ``LOW``
  within the first ``EARLY`` of training while every lower layer's mean stays at or above
  ``LOWER_KEPT``; then, after its minimum, it rises by at least ``RISE`` by the end, and the rise
  comes after a plateau at least as long as the fall took. Control: the tanh net of the same shape
  and init, whose 0 is the middle of its range, not a saturation: its top layer keeps a mean slope
  E[f'(z)] / max f' of at least ``SLOPE_KEPT`` over the same early window, where the sigmoid's falls
  under it (from the moments, E[s'] = E[a] - E[a^2] for the sigmoid, E[1 - a^2] for tanh).
- **tanh** (paper, Fig. 3 top: "We see the first hidden layer saturating first, then the second,
  etc."): a layer *saturates* at the first read where the 98th percentile of |a| reaches
  ``NEAR_ONE`` (there tanh' = 1 - a^2 < 0.02: the unit passes under 2% of the gradient). In a
  majority of seeds layer 1 saturates strictly before every other layer; the median seed has at
  least two saturated layers; and the saturation climbs the net in order: Kendall's tau between
  the layer index and its saturation time (a layer that never saturates ranks last), median over
  seeds, at least ``TAU``. Layer 1 first with the rest in random order gives tau 0.5 on average.
  Control (paper, Fig. 3 bottom: softsign layers "saturate less and do so together"): the softsign
  net of the same shape, init and rate: no layer saturates in a majority of seeds.
- **normalised init** (the same tanh net with Xavier's init): reported beside the rule, not ruled
  on. What the runs showed while this experiment was built: it saturates in the same order (tau
  about 1), two to three times sooner, so the normalised init does *not* remove the sequential
  saturation at this size and rate. (The paper's Fig. 3 bottom is the softsign net, not a
  normalised one.)

The rates are set per activation, not tuned on any result: 0.2 for tanh and softsign and 2.0 for the
sigmoid, whose gradients through the saturated top layer are tiny; the rate sets the clock. What the
exploration (4 x 64, 5 seeds, per-read statistics) showed: the sigmoid's recovery comes after a
plateau that grows as the rate falls (rate 1.0: two of five seeds had recovered within 4,000 steps;
rate 2.0: ten of ten); tanh's order above layer 1 depends on the rate and the data: at rate 0.1 on
4,000 samples (10 epochs) tau 0.91, at rate 0.1 on 2,000 samples (20 epochs) 0.55, at rate 0.05 on
4,000 samples (20 epochs) 0.33, the top hidden layer (next to the output) saturating second. The
shipped rate 0.2 was chosen for the time budget (12 epochs instead of 20) after those runs. Quick
size: about 12 s on one core.

    gradientflow reproduce --only X2 --quick --out DIR
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import activations, init, job, plots
from ..config import TrainConfig
from ..model import initialize_
from . import claim
from .claim import Claim, Verdict
from .seeds import majority, spread

CLAIMS = (Claim("X2", "Beyond the seeds (Glorot & Bengio 2010, Figs. 2-4): under the standard initialisation "
                      "U[-1/sqrt(n), 1/sqrt(n)], the top hidden layer of a deep sigmoid net is driven to saturation "
                      "at 0 early in training and recovers only slowly; in a deep tanh net saturation appears layer "
                      "after layer, starting from the first; softsign layers saturate less.",
                "beyond the seeds; Glorot & Bengio 2010"),)


class Size(claim.Size):
    depth: int  # hidden layers
    width: int
    seeds: int  # nets per kind, seeds seed .. seed + seeds - 1
    n_train: int  # MNIST-1D training samples
    n_test: int
    batch_size: int
    epochs: int
    probe: int  # training inputs the activations are read on


QUICK = Size(depth=4, width=64, seeds=5, n_train=2000, n_test=500, batch_size=10, epochs=12, probe=200)
FULL = Size(depth=4, width=64, seeds=9, n_train=4000, n_test=1000, batch_size=10, epochs=12, probe=500)

# the paper's two initialisations as a config names them (``paper_network`` draws the standard one uniform):
# standard Var = 1/(3 n_in) (eq. 1), normalised U with Var = 2/(n_in + n_out) (eq. 16)
INITS = {"standard": {"init": "lecun", "gain": 1 / math.sqrt(3)}, "normalised": {"init": "xavier_uniform"}}
# label: (activation, init, SGD rate)
NETS = {"sigmoid": ("sigmoid", "standard", 2.0), "tanh": ("tanh", "standard", 0.2),
        "tanh_normalised": ("tanh", "normalised", 0.2), "softsign": ("softsign", "standard", 0.2)}
LOW = 0.1  # sigmoid: the top layer's mean "at 0": under a fifth of the sigmoid's centre 0.5
LOWER_KEPT = 0.4  # ... while every lower layer's mean stays near or above 0.5 (the paper: above 0.5)
EARLY = 0.1  # "very quickly at the beginning": within the first tenth of training
RISE = 0.02  # desaturates: the top mean ends at least this far above its minimum
SLOPE_KEPT = 0.5  # control: a top layer not saturated keeps half of its activation's largest slope on average
NEAR_ONE = 0.99  # tanh: the 98th percentile of |a| "near 1" (tanh' < 0.02 there)
TAU = 0.6  # the saturation climbs in order: more than layer 1 first and the rest at random (0.5)


def configs(size: Size, seed: int) -> list[TrainConfig]:
    """One config per net: every kind of ``NETS``, each on ``size.seeds`` seeds."""
    return [TrainConfig(data="mnist1d", n_train=size.n_train, n_test=size.n_test, depth=size.depth, width=size.width,
                        activation=act, **INITS[init], optimizer="sgd", lr=lr, epochs=size.epochs,
                        batch_size=size.batch_size, seed=s)
            for act, init, lr in NETS.values() for s in range(seed, seed + size.seeds)]


def paper_network(cfg: TrainConfig, d) -> torch.nn.Module:
    """``job.network``'s mlp with the paper's uniform draws: a standard-init config (``lecun``, gain 1/sqrt(3),
    which names the variance 1/(3 n_in)) gets W ~ U[-1/sqrt(n_in), 1/sqrt(n_in)] (eq. 1), drawn by
    ``xavier_uniform`` in fan-in mode from the config's seed; the normalised init (``xavier_uniform``) is
    the paper's eq. (16) already. Biases stay 0."""
    net = job.network(cfg, d)
    if cfg.init == INITS["standard"]["init"]:
        initialize_(net, "xavier_uniform", scale=init.Scale(gain=1 / math.sqrt(3), mode="fan_in"),
                    generator=torch.Generator().manual_seed(cfg.seed))
    return net


def _layers(weights: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [K, out, in], bias [K, out]) of each Linear of the stacked mlps, in forward order."""
    names = sorted({n.rsplit(".", 1)[0] for n in weights}, key=int)  # the Sequential's Linear indices
    return [(weights[f"{n}.weight"], weights[f"{n}.bias"]) for n in names]


def _forward(layers, fn, x: torch.Tensor, hidden: list | None = None) -> torch.Tensor:
    """The K nets' logits on x [K, B, features]; each hidden layer's activations appended to ``hidden``."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < len(layers) - 1:
            h = fn(h)
            if hidden is not None:
                hidden.append(h)
    return h


@torch.no_grad()
def _read(weights: dict, fn, probe: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor) -> tuple:
    """Per net and hidden layer, the mean, std and 98th percentile of |a| on ``probe``; per net the test error."""
    layers = _layers(weights)
    k = layers[0][0].shape[0]
    hidden: list[torch.Tensor] = []
    _forward(layers, fn, probe.expand(k, -1, -1), hidden)
    a = torch.stack(hidden, 1).flatten(2)  # [K, layers, probe x width]
    p98 = a.abs().kthvalue(math.ceil(0.98 * a.shape[2]), dim=2).values  # the empirical quantile, no interpolation
    wrong = _forward(layers, fn, x_test.expand(k, -1, -1)).argmax(-1) != y_test
    return a.mean(2), a.std(2), p98, wrong.double().mean(1)


def train_watched(cfgs: list[TrainConfig], size: Size) -> dict:
    """Train the nets of ``cfgs`` (one batch of the batched trainer: one activation) with the paper's draws,
    reading the activations before the first step and after every epoch: {"mean", "std", "p98"
    [K][read][layer], "test_error" [K][read]}."""
    from ..sweep import batched

    d = job.dataset(cfgs[0])
    fn = activations.get(cfgs[0].activation).fn
    probe, x_test = d.x_train[:size.probe].unsqueeze(0), d.x_test.unsqueeze(0)
    rows = []
    batched.train(cfgs, network=paper_network,
                  on_epoch=lambda epoch, weights: rows.append(_read(weights, fn, probe, x_test, d.y_test)))
    while len(rows) < size.epochs + 1:  # every net diverged and the trainer stopped early: the reads it missed are NaN
        rows.append(tuple(torch.full_like(t, math.nan) for t in rows[-1]))
    mean, std, p98, err = (torch.stack(column, 1) for column in zip(*rows))
    return {"mean": mean.tolist(), "std": std.tolist(), "p98": p98.tolist(), "test_error": err.tolist()}


def run(size: Size, seed: int, folder) -> dict:
    cfgs = configs(size, seed)
    out = {"epochs": list(range(size.epochs + 1)), "depth": size.depth, "seeds": list(range(seed, seed + size.seeds)),
           "nets": {}}
    for act in dict.fromkeys(c.activation for c in cfgs):  # one batch per activation: every init and seed of it
        mine = [c for c in cfgs if c.activation == act]
        watched = train_watched(mine, size)
        for label, (net_act, init_label, lr) in NETS.items():
            if net_act == act:
                own = [i for i, c in enumerate(mine) if c.init == INITS[init_label]["init"]]
                out["nets"][label] = {"activation": act, "init": init_label, "lr": lr,
                                      **{key: [watched[key][i] for i in own] for key in watched}}
    return out


# --- the rules' statistics ---

def _arrays(r: dict) -> tuple[np.ndarray, ...]:
    """mean, std, p98 [seed, read, layer] and test error [seed, read] as floats (a stored null as NaN)."""
    return tuple(np.asarray(r[key], dtype=float) for key in ("mean", "std", "p98", "test_error"))


def mean_slope(activation: str, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """E[f'(z)] / max f' from the activations' moments: sigmoid s' = s(1 - s), so E[s'] = E[a] - E[a^2],
    over its largest slope 1/4; tanh' = 1 - tanh^2, so E[1 - a^2], largest slope 1 (E[a^2] = std^2 + mean^2)."""
    second = std ** 2 + mean ** 2
    if activation == "sigmoid":
        return 4 * (mean - second)
    if activation == "tanh":
        return 1 - second
    raise ValueError(f"mean_slope reads sigmoid or tanh moments, not {activation!r}")


def early_reads(epochs: list[float]) -> int:
    """How many reads fall within the first ``EARLY`` of training (at least the first after init)."""
    return max(2, sum(e <= EARLY * epochs[-1] for e in epochs))


def sigmoid_course(m: dict) -> list[dict]:
    """Per seed of the sigmoid net: when and how far its top layer fell, what the lower layers held then,
    and whether and when it rose again."""
    mean, _, _, err = _arrays(m["nets"]["sigmoid"])
    epochs, early = m["epochs"], early_reads(m["epochs"])
    out = []
    for k in range(len(mean)):
        top = mean[k, :, -1]
        fell = [j for j in range(early) if top[j] < LOW]
        i = int(np.nanargmin(top)) if np.isfinite(top).any() else 0
        row = {"fell": bool(fell), "epoch_fell": epochs[fell[0]] if fell else None, "minimum": float(top[i]),
               "epoch_minimum": epochs[i], "end": float(top[-1]), "error_at_minimum": float(err[k, i]),
               "error_end": float(err[k, -1])}
        if fell:
            row["lower_means_when_fell"] = mean[k, fell[0], :-1].tolist()
            row["lower_kept"] = bool(np.all(mean[k, fell[0], :-1] >= LOWER_KEPT))
        rose = [j for j in range(i + 1, len(top)) if top[j] >= top[i] + RISE]
        row["recovered"] = bool(top[-1] >= top[i] + RISE)
        row["epoch_rose"] = epochs[rose[0]] if rose else None
        # slowly: the plateau from the fall to the rise lasts at least as long as the fall took
        row["slow"] = bool(fell and rose and epochs[rose[0]] - epochs[fell[0]] >= epochs[fell[0]])
        row["shows"] = bool(row["fell"] and row.get("lower_kept") and row["recovered"] and row["slow"])
        out.append(row)
    return out


def early_top_slope(m: dict, label: str) -> list[float]:
    """Per seed of net ``label`` (sigmoid or tanh): the lowest mean slope of its top layer over the early reads."""
    r = m["nets"][label]
    mean, std, _, _ = _arrays(r)
    slope = mean_slope(r["activation"], mean[:, :, -1], std[:, :, -1])
    return [float(np.min(s[:early_reads(m["epochs"])])) for s in slope]


def saturation_times(m: dict, label: str) -> np.ndarray:
    """[seed, layer]: the first epoch at which the 98th percentile of |a| reaches ``NEAR_ONE``; inf for never."""
    _, _, p98, _ = _arrays(m["nets"][label])
    epochs = np.asarray(m["epochs"], dtype=float)
    reached = p98 >= NEAR_ONE  # NaN (a diverged net) never reaches
    first = np.where(reached.any(1), reached.argmax(1), -1)
    return np.where(first >= 0, epochs[np.maximum(first, 0)], np.inf)


def kendall_tau(times: np.ndarray) -> float:
    """Kendall's tau-b between the layer index and ``times`` (inf: never, tied last with the other nevers)."""
    concordant = discordant = ties = 0
    n = len(times)
    for i in range(n):
        for j in range(i + 1, n):
            if times[i] == times[j]:
                ties += 1
            elif times[i] < times[j]:
                concordant += 1
            else:
                discordant += 1
    pairs = n * (n - 1) // 2
    untied = math.sqrt(pairs * (pairs - ties))  # no ties in the layer index; tau-b's correction for those in times
    return (concordant - discordant) / untied if untied else 0.0


def saturation_order(m: dict, label: str) -> dict:
    """Per seed: saturation times, layer 1 strictly first, how many layers saturated, Kendall's tau; and
    the medians over seeds."""
    times = saturation_times(m, label)
    first = [bool(np.isfinite(t[0]) and np.all(t[0] < t[1:])) for t in times]
    count = [int(np.isfinite(t).sum()) for t in times]
    tau = [kendall_tau(t) for t in times]
    return {"times": times.tolist(), "first": first, "saturated": count, "tau": tau,
            "median_times": np.median(times, 0).tolist(), "median_saturated": float(np.median(count)),
            "median_tau": float(np.median(tau))}


def _epochs(values) -> str:
    return ", ".join("never" if not math.isfinite(v) else f"{v:.2g}" for v in values)


def verdicts(m: dict) -> dict[str, Verdict]:
    seeds = len(m["seeds"])
    course = sigmoid_course(m)
    shows = [c["shows"] for c in course]
    sig_slope, tanh_slope = early_top_slope(m, "sigmoid"), early_top_slope(m, "tanh")
    control_slope = majority([s >= SLOPE_KEPT for s in tanh_slope]) and majority([s < SLOPE_KEPT for s in sig_slope])
    sigmoid_ok = majority(shows) and control_slope

    tanh, soft, normal = (saturation_order(m, k) for k in ("tanh", "softsign", "tanh_normalised"))
    tanh_ok = majority(tanh["first"]) and tanh["median_saturated"] >= 2 and tanh["median_tau"] >= TAU
    soft_ok = majority([c == 0 for c in soft["saturated"]])
    passed = sigmoid_ok and tanh_ok and soft_ok

    def med(values) -> float:  # over the seeds that have the value (a net that never rose has no rise epoch)
        return spread(values).median
    fell = [c for c in course if c["fell"]]
    lower = np.median([c["lower_means_when_fell"] for c in fell], 0) if fell else []
    _, _, p98_soft, _ = _arrays(m["nets"]["softsign"])
    _, _, p98_tanh, _ = _arrays(m["nets"]["tanh"])
    soft_end, tanh_end = np.median(p98_soft[:, -1, :], 0), np.median(p98_tanh[:, -1, :], 0)
    _, _, p98_norm, _ = _arrays(m["nets"]["tanh_normalised"])
    sooner = tanh["median_times"][0] / normal["median_times"][0] if normal["median_times"][0] > 0 else math.inf
    numbers = {
        "sigmoid.seeds_showing": f"{sum(shows)} of {seeds}",
        "sigmoid.top_mean_minimum_median": med([c["minimum"] for c in course]),
        "sigmoid.epoch_fell_median": med([c["epoch_fell"] for c in course]),
        "sigmoid.epoch_rose_median": med([c["epoch_rose"] for c in course]),
        "sigmoid.top_mean_end_median": med([c["end"] for c in course]),
        "sigmoid.lower_means_when_fell_median": list(lower),
        "sigmoid.test_error_at_minimum_median": med([c["error_at_minimum"] for c in course]),
        "sigmoid.test_error_end_median": med([c["error_end"] for c in course]),
        "sigmoid.early_top_slope_median": med(sig_slope), "tanh.early_top_slope_median": med(tanh_slope),
        **{f"{k}.saturation_epoch_median": r["median_times"]
           for k, r in (("tanh", tanh), ("softsign", soft), ("tanh_normalised", normal))},
        **{f"{k}.kendall_tau_median": r["median_tau"] for k, r in (("tanh", tanh), ("tanh_normalised", normal))},
        "tanh.layer1_first": f"{sum(tanh['first'])} of {seeds}",
        "tanh.saturated_layers_median": tanh["median_saturated"],
        "tanh_normalised.layer1_first": f"{sum(normal['first'])} of {seeds}",
        "softsign.seeds_without_saturation": f"{sum(c == 0 for c in soft['saturated'])} of {seeds}",
        "softsign.end_p98_median": soft_end.tolist(), "tanh.end_p98_median": tanh_end.tolist(),
        "tanh.init_p98_median": np.median(p98_tanh[:, 0, :], 0).tolist(),
        "tanh_normalised.init_p98_median": np.median(p98_norm[:, 0, :], 0).tolist(),
    }
    why = (f"sigmoid: in {sum(c['fell'] for c in course)} of {seeds} seeds the top layer's mean fell under {LOW:g} "
           f"by epoch {med([c['epoch_fell'] for c in course]):.2g} (median minimum {med([c['minimum'] for c in course]):.3f}; "
           f"lower layers' means {', '.join(f'{v:.2f}' for v in lower)} then), its mean slope down to "
           f"{med(sig_slope):.2f} of the largest against {med(tanh_slope):.2f} for the tanh net's top layer; it rose "
           f"again in {sum(c['recovered'] for c in course)} of {seeds} seeds (median from "
           f"epoch {med([c['epoch_rose'] for c in course]):.2g}, to {med([c['end'] for c in course]):.3f} at the end) "
           f"while the test error went from {med([c['error_at_minimum'] for c in course]):.2f} to "
           f"{med([c['error_end'] for c in course]):.2f}; {sum(shows)} of {seeds} seeds show the whole course. "
           f"tanh: layer 1 saturated first in {sum(tanh['first'])} of {seeds} seeds; median saturation epochs by layer "
           f"{_epochs(tanh['median_times'])} (Kendall tau {tanh['median_tau']:.2f}, {tanh['median_saturated']:g} layers "
           f"saturated). softsign: no layer saturated in {sum(c == 0 for c in soft['saturated'])} of {seeds} seeds "
           f"(98th percentiles at the end {', '.join(f'{v:.2f}' for v in soft_end)} against tanh's "
           f"{', '.join(f'{v:.3f}' for v in tanh_end)}). The normalised tanh net saturated by layer at "
           f"{_epochs(normal['median_times'])} (tau {normal['median_tau']:.2f}): "
           + (f"in the same order, {sooner:.1f}x sooner, so at this size the normalised init does not remove the "
              "layer-by-layer saturation." if normal["median_tau"] >= TAU else "not in layer order."))
    return {"X2": Verdict(
        passed,
        f"over the seeds, the statistic a majority or a median. Sigmoid (Glorot & Bengio 2010, Fig. 2: the top hidden "
        f"layer is pushed to its lower saturation 0 very early, the others stay above 0.5, and it desaturates slowly, "
        f"around epoch 100 there): the top layer's mean under {LOW:g} within the first {EARLY:.0%} of training while every "
        f"lower layer's mean stays >= {LOWER_KEPT:g}, then a rise of >= {RISE:g} above its minimum by the end, after a "
        f"plateau at least as long as the fall; control: the tanh net's top layer keeps a mean slope E[f'] / max f' >= "
        f"{SLOPE_KEPT:g} over that early window, where the sigmoid's falls under it. Tanh (Fig. 3 top: the first hidden "
        f"layer saturates first, then the second, etc.): a layer saturates when the 98th percentile of |a| reaches "
        f"{NEAR_ONE:g}; layer 1 strictly first in a majority of seeds, >= 2 layers saturated and Kendall's tau between "
        f"layer and saturation time >= {TAU:g} (median seed); control (Fig. 3 bottom: softsign saturates less): no "
        "softsign layer saturates in a majority of seeds. The normalised-init tanh net is reported, not ruled on.",
        numbers, "saturation", why)}


def _band(ax, epochs, values: np.ndarray, color: str, label: str, marker: str = "") -> None:
    """The median over seeds as a line and the 10-90 % band around it."""
    lo, mid, hi = np.nanquantile(values, [0.1, 0.5, 0.9], axis=0)
    ax.plot(epochs, mid, marker or "-", color=color, label=label, ms=3)
    ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, lw=0)


def figures(m: dict) -> dict:
    """The paper's Figures 2 and 3 at this size: the sigmoid net's mean activation per layer with its test error,
    and the 98th percentile of |a| per layer for the tanh, normalised tanh and softsign nets."""
    epochs = m["epochs"]
    fig, axes = plots.subplots(2, 2, figsize=(12, 8), sharex=True)
    mean, _, _, err = _arrays(m["nets"]["sigmoid"])
    ax = axes[0][0]
    for layer in range(mean.shape[2]):
        _band(ax, epochs, mean[:, :, layer], f"C{layer}", f"layer {layer + 1}")
    ax.plot(epochs, np.nanmedian(err, 0), "k--", lw=1, label="test error")
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set(ylabel="mean activation (median, 10-90 % band)", ylim=(0, 1),
           title=f"X2 sigmoid, standard init, rate {m['nets']['sigmoid']['lr']:g} (cf. G&B 2010 Fig. 2)")
    ax.legend(fontsize=8)
    panels = (("tanh", axes[0][1], "tanh, standard init (cf. Fig. 3 top)"),
              ("tanh_normalised", axes[1][1], "tanh, normalised (Xavier) init"),
              ("softsign", axes[1][0], "softsign, standard init (cf. Fig. 3 bottom)"))
    for label, ax, title in panels:
        _, _, p98, _ = _arrays(m["nets"][label])
        times = np.median(saturation_times(m, label), 0)
        for layer in range(p98.shape[2]):
            _band(ax, epochs, p98[:, :, layer], f"C{layer}", f"layer {layer + 1}")
            if math.isfinite(times[layer]):
                ax.axvline(times[layer], color=f"C{layer}", lw=0.8, ls="--")
        ax.axhline(NEAR_ONE, color="0.4", lw=0.8, ls=":")
        ax.set(ylabel="98th percentile of |a| (dashed: saturated)", ylim=(0, 1.02),
               title=f"{title}, rate {m['nets'][label]['lr']:g}")
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[1]:
        ax.set_xlabel("epoch (MNIST-1D, SGD, batches of 10)")
    fig.tight_layout()
    return {"saturation": fig}
