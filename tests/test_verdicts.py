"""Every claim's rule can fail, and can pass: doctored numbers flip each verdict both ways.

The inputs are the measurements of a real quick run (`tests/data/quick/<experiment>.json.gz`, the
`data/` folder that `gradientflow reproduce --quick --seed 0` writes, gzipped; regenerate them when
an experiment's measurements change shape). For every claim, ``mend`` moves the numbers its rule
reads to the passing side and ``spoil`` moves one of them back across the threshold: the rule must
say pass on the first and fail on the second, whatever the run itself measured.
"""

import copy
import gzip
import json
import math
from pathlib import Path

import pytest

from gradientflow import experiments

DATA = Path(__file__).parent / "data" / "quick"


def _measured(experiment: str) -> dict:
    return json.loads(gzip.decompress((DATA / f"{experiment}.json.gz").read_bytes()))


def _set(m: dict, path: str, value) -> dict:
    """``m`` with the value at 'a.b.0.c' replaced (lists indexed by number)."""
    *keys, last = [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]
    node = m
    for k in keys:
        node = node[k]
    node[last] = value
    return m


def _scale_steps(m: dict, name: str, late: float) -> dict:
    """A noisy-ravine run whose effective step ends at ``late`` times its early value (both coordinates)."""
    steps = m["noisy"][name]["effective_step"]
    for t in range(len(steps)):
        steps[t] = [1.0 if t < len(steps) // 2 else late] * len(steps[t])
    return m


def _costs(m: dict, names: tuple[str, ...], ratio: float) -> dict:
    """Every thread setting's forward time of ``names`` at ``ratio`` times ReLU's."""
    for table in m["cost_by_threads"].values():
        for r in table:
            if r["name"] in names:
                r["forward_vs_relu"] = ratio
    return m


def _runs(m: dict, where: str, losses: list[float]) -> dict:
    """C3: the runs at ``where`` ("value", "norm" or "unclipped.<rate>") finish with ``losses`` (inf: diverged)."""
    node = m
    for key in where.split(".", 1):
        node = node[key]
    node[:] = [{"status": "finished" if v < math.inf else "diverged", "train_loss": v} for v in losses]
    return m


def _clipping_rescues(m: dict) -> dict:
    """Most unclipped seeds diverge at the high rate; every clipped seed finishes, no worse than the best rate."""
    high = str(m["rates"][-1])
    _runs(m, f"unclipped.{high}", [math.inf, math.inf, 1.5])
    return _runs(_runs(m, "norm", [1.6, 1.6, 1.6]), "value", [1.4, 1.4, 1.4])


def _cells(m: dict, loss) -> dict:
    """Every C21 net at every rate, seed and epoch set to the training loss ``loss(depth, activation, column)``
    and a validation accuracy that falls with it."""
    for key, cell in m["cells"].items():
        depth, act, label = key.split("|")
        v = loss(int(depth), act, label)
        cell["train_loss"] = [[[v] * len(run) for run in per_seed] for per_seed in cell["train_loss"]]
        cell["validation_accuracy"] = [[[1 - v / 3] * len(run) for run in per_seed]
                                       for per_seed in cell["validation_accuracy"]]
    return m


def _recommended_best(m: dict) -> dict:
    from gradientflow.experiments import recommendation as r

    return _cells(m, lambda depth, act, label: 1.0 if label in (r.RECOMMENDED[act], r.AGAIN) else 2.0)


def _gain_wins_tanh(m: dict) -> dict:
    """The variance-preserving gain beats Xavier for tanh at the first depth, on every seed and rate, by half."""
    cell = m["cells"][f"{m['depths'][0]}|tanh|gain"]
    cell["train_loss"] = [[[0.5] * len(run) for run in per_seed] for per_seed in cell["train_loss"]]
    return m


def _glorot_exact(m: dict) -> dict:
    for r in m["inits"].values():
        r["forward"], r["backward"] = list(r["forward_expected"]), list(r["backward_expected"])
    return m


def _theory_matches(m: dict) -> dict:
    for r in m["nets"].values():
        r["theory_std"] = list(r["act_std"])
    return m


def _stds(m: dict, net: str, change) -> dict:
    """C15-C17: ``net``'s per-layer std changed by ``change`` in its median and in every weight draw."""
    r = m["nets"][net]
    r["act_std"] = change(r["act_std"])
    r["act_std_draws"] = [change(d) for d in r["act_std_draws"]]
    return m


def _finals(m: dict, cell: str, loss: float) -> dict:
    """C19: every seed at every rate of ``cell`` (activation_normalisation) ends at ``loss``."""
    for c in m["data"][cell]["cells"]:
        c["final"] = [loss] * len(c["final"])
    return m


def _dead(m: dict, unit: str, rate: str, share: float) -> dict:
    """C7: the (unit, rate) cell's median dead share set to ``share``."""
    m["units"][unit]["cells"][rate]["dead"]["median"] = share
    return m


def _many_die_at(m: dict, rate: str) -> dict:
    """C7 mended: a large share of ReLU's units dies at ``rate`` (above its judged rates), none at the others."""
    for key in m["units"]["relu"]["cells"]:
        _dead(m, "relu", key, 0.0)
    return _dead(m, "relu", rate, 0.2)


def _tanh_steps(m: dict, steps: float) -> dict:
    for cell in m["units"]["tanh"]["cells"].values():
        cell["steps_to_loss"] = steps
    return m


def _stable_up_to(m: dict, schedule: str, rate: float) -> dict:
    """C20: ``schedule``'s cells stable at every budget up to ``rate``, unstable above."""
    for key, cell in m["cells"].items():
        budget, rest = key.split(":")
        name, lr = rest.split("@")
        if name == schedule:
            cell["stable"] = float(lr) <= rate
    return m


def _kept(m: dict, unit: str, ratio: float) -> dict:
    """C8, C9: every switched-off unit of ``unit`` keeps ``ratio`` of its gradient."""
    kept = m["units"][unit]["mechanisms"]["gradient_kept"]
    kept[:] = [ratio] * len(kept)
    return m


def _boundary_everywhere(m: dict, depth: int) -> dict:
    """X1: every sigma_w^2 trains below ``depth`` and at none from it: a boundary that ignores xi_c."""
    m["train_loss"] = [[[1.9 if d < depth else 2.3] * len(m["seeds"]) for d in m["depths"]] for _ in m["sigma_w2"]]
    return m


CASES = {
    # claim: (experiment, mend, spoil)
    "C1": ("activation_shapes", lambda m: _set(_set(m, "sigmoid_peak", 0.25), "sigmoid_derivative_at_10", 4.5e-5),
           lambda m: _set(m, "sigmoid_derivative_at_10", 0.01)),
    "C2": ("vanishing", lambda m: m, lambda m: _set(m, "sigmoid.act_grad_norm.0", m["sigmoid"]["act_grad_norm"][-1])),
    "C3": ("clipping", _clipping_rescues, lambda m: _runs(m, "value", [1.0, 1.0, math.inf])),
    "C4": ("centring", lambda m: _set(_set(m, "coherence.sigmoid_batch1", 1.0), "coherence.tanh_batch1", 0.5),
           lambda m: _set(m, "coherence.sigmoid_batch1", 0.6)),
    "C5": ("activation_shapes", lambda m: _set(m, "tanh_mean_at_unit_gaussian", 0.0),
           lambda m: _set(m, "tanh_mean_at_unit_gaussian", 0.2)),
    "C6": ("activation_shapes", lambda m: _costs(m, ("sigmoid", "tanh"), 3.0), lambda m: _costs(m, ("tanh",), 1.0)),
    "C7": ("dead_units", lambda m: _many_die_at(m, "0.8"), lambda m: _tanh_steps(m, 10)),
    "C8": ("dead_units", lambda m: _kept(m, "leaky_relu", 0.02), lambda m: _kept(m, "leaky_relu", 0.5)),
    "C9": ("dead_units", lambda m: _kept(m, "maxout", 1.0), lambda m: _kept(m, "maxout", 0.0)),
    "C10": ("optimisers", lambda m: _set(_set(m, "matched.path_across", 1.0), "tuned.momentum.best.loss", 1e-9),
            lambda m: _set(m, "matched.path_across", 2 * m["tuned"]["sgd"]["best"]["path_across"])),
    "C11": ("optimisers", lambda m: _scale_steps(m, "adagrad", 0.1), lambda m: _scale_steps(m, "adagrad", 1.0)),
    "C12": ("optimisers", lambda m: _scale_steps(_scale_steps(m, "rmsprop", 1.0), "adagrad", 0.1),
            lambda m: _scale_steps(m, "rmsprop", 0.1)),
    "C13": ("optimisers", lambda m: _set(m, "adam_first_steps.uncorrected.0", 0.1),
            lambda m: _set(m, "adam_first_steps.uncorrected.0", 3.16)),
    "C14": ("zero_init", lambda m: m, lambda m: _set(m, "zeros.distinct_units.0", 5)),
    "C15": ("init_depth", lambda m: _set(m, "nets.tanh_large.saturated", [0.95] * len(m["nets"]["tanh_large"]["saturated"])),
            lambda m: _set(m, "nets.tanh_large.saturated", [0.1] * len(m["nets"]["tanh_large"]["saturated"]))),
    "C16": ("init_depth", _theory_matches, lambda m: _stds(m, "relu_xavier", lambda std: [0.5] * len(std))),
    "C17": ("init_depth", _theory_matches, lambda m: _stds(m, "relu_he", lambda std: [*std[:-1], std[0] / 100])),
    "C18": ("glorot", _glorot_exact,
            lambda m: _set(m, "inits.xavier (2/(n_in+n_out)).forward.0", 3 * m["inits"]["xavier (2/(n_in+n_out))"]["forward"][0])),
    "C19": ("centring", lambda m: _finals(m, "relu_shift", 3.0), lambda m: _finals(m, "tanh_shift", 0.1)),
    "C20": ("lr_schedules", lambda m: _stable_up_to(_stable_up_to(m, "constant", 0.2), "warmup", 0.4),
            lambda m: _stable_up_to(m, "warmup", 0.2)),
    "C21": ("recommendation", _recommended_best, _gain_wins_tanh),
    "X1": ("trainability", lambda m: m, lambda m: _boundary_everywhere(m, 30)),
}


def test_every_claim_has_a_flip_case():
    assert set(CASES) | {"X2", "X3"} == set(experiments.claim_ids())  # X2, X3: tests/test_glorot_bengio.py


@pytest.mark.parametrize("claim", sorted(CASES, key=experiments.claim_order))
def test_doctored_numbers_flip_the_verdict_both_ways(claim):
    experiment, mend, spoil = CASES[claim]
    rules = experiments.load(experiment).verdicts
    mended = mend(copy.deepcopy(_measured(experiment)))
    assert rules(mended)[claim].passed, f"{claim}: the mended numbers should pass"
    assert not rules(spoil(copy.deepcopy(mended)))[claim].passed, f"{claim}: the spoiled numbers should fail"


def test_c7_to_c9_rules_read_each_part():
    """C7 fails when units also die at the judged rates (the control) or die only where most runs diverge;
    C8 when ReLU's switched-off units keep a gradient (then the measure is broken) or PReLU's slopes stay
    put; C9 when Maxout loses units at its judged rates."""
    rules = experiments.load("dead_units").verdicts
    good = _many_die_at(_measured("dead_units"), "0.8")
    assert rules(good)["C7"].passed
    assert not rules(_dead(copy.deepcopy(good), "relu", "0.2", 0.03))["C7"].passed  # dying at a judged rate
    diverged = copy.deepcopy(good)
    diverged["units"]["relu"]["cells"]["0.8"]["diverged"] = 3  # of 5 seeds: no longer a rate where most finish
    assert not rules(diverged)["C7"].passed
    assert not rules(_kept(copy.deepcopy(good), "relu", 0.01))["C8"].passed
    slopes = copy.deepcopy(good)
    slopes["units"]["prelu"]["mechanisms"]["prelu_slope_change"] = [0.0] * 5
    assert not rules(slopes)["C8"].passed
    assert not rules(_dead(copy.deepcopy(good), "maxout", "0.1", 0.05))["C9"].passed


def test_c20_fails_when_warm_up_lowers_the_stable_rate_at_one_budget():
    rules = experiments.load("lr_schedules").verdicts
    m = _stable_up_to(_stable_up_to(_measured("lr_schedules"), "constant", 0.2), "warmup", 0.4)
    assert rules(m)["C20"].passed
    def warm_up_to(budget: int, rate: float) -> dict:
        out = copy.deepcopy(m)
        for key, cell in out["cells"].items():
            if key.startswith(f"{budget}:warmup@"):
                cell["stable"] = float(key.split("@")[1]) <= rate
        return out

    short, long = m["budgets"]
    assert not rules(warm_up_to(short, 0.2))["C20"].passed  # no help where the start decides
    assert rules(warm_up_to(long, 0.1415))["C20"].passed  # one grid step under the constant's 0.2: noise
    assert not rules(warm_up_to(long, 0.1))["C20"].passed  # two steps under it: warm-up hurt


def test_x1_fails_when_the_boundary_runs_against_xi_c():
    """The sigma_w^2 rows put in reverse: each boundary now stands at the mirrored sigma_w^2's xi_c."""
    from gradientflow.experiments import trainability

    m = _measured("trainability")
    assert trainability.verdicts(m)["X1"].passed  # the real quick run passes
    m["train_loss"] = m["train_loss"][::-1]
    assert not trainability.verdicts(m)["X1"].passed


def test_x1_boundary_interpolates_in_log_depth_and_marks_the_grids_edges():
    from gradientflow.experiments.trainability import boundary

    assert boundary([10, 20, 40], [1.0, 1.0, 0.0]) == (pytest.approx((20 * 40) ** 0.5), "inside")
    assert boundary([10, 20, 40], [1.0, 0.75, 0.25]) == (pytest.approx((20 * 40) ** 0.5), "inside")
    assert boundary([10, 20, 40], [1.0, 1.0, 0.5]) == (40.0, "beyond")
    assert boundary([10, 20, 40], [0.0, 1.0, 1.0]) == (10.0, "before")


@pytest.mark.parametrize("where, value", [("flips_momentum", 1.0), ("flips_matched", 1.0), ("saddle", None)])
def test_c10_fails_on_each_of_its_other_clauses(where, value):
    """Zig-zag as often as SGD (at the best rate or at the matched step), or never settle on the saddle."""
    from gradientflow.experiments import optimisers

    m = _measured("optimisers")
    assert optimisers.verdicts(m)["C10"].passed  # the real quick run passes
    if where == "flips_momentum":
        m["tuned"]["momentum"]["best"]["flips"] = value
    elif where == "flips_matched":
        m["matched"]["flips"] = value
    else:
        m["saddle"]["momentum"]["best"] = value
    assert not optimisers.verdicts(m)["C10"].passed


def test_c17_is_decided_by_the_median_draw_not_by_one():
    """One draw of five that wanders far (its last layer at 1/100) leaves the median, and the verdict, as they were;
    three of five flip it."""
    from gradientflow.experiments import init_depth

    m = _theory_matches(_measured("init_depth"))
    draws = m["nets"]["relu_he"]["act_std_draws"]
    assert len(draws) >= 5 and init_depth.verdicts(m)["C17"].passed
    draws[0][-1] = draws[0][0] / 100
    assert init_depth.verdicts(m)["C17"].passed
    for d in draws[1:3]:
        d[-1] = d[0] / 100
    assert not init_depth.verdicts(m)["C17"].passed


def test_c18_fails_when_its_equal_width_control_cannot_meet_both_conditions():
    """If a square net could not meet both either, the growing net's failure would not be the widths'."""
    from gradientflow.experiments import glorot

    m = _glorot_exact(_measured("glorot"))
    assert glorot.verdicts(m)["C18"].passed
    m["square"]["backward"][-1] = 1.5
    assert not glorot.verdicts(m)["C18"].passed


def test_c19_needs_a_majority_of_paired_seeds_not_only_the_median():
    """Standardised lower in median (0.2 against 4) but on two seeds of five only: the rule fails."""
    from gradientflow.experiments import centring

    m = _measured("centring")
    assert centring.verdicts(m)["C19"].passed
    for norm, finals in (("standardize", [0.1, 0.1, 5.0, 0.2, 0.2]), ("shift", [0.05, 0.05, 4.0, 9.0, 9.0])):
        cells = m["data"][f"relu_{norm}"]["cells"]
        for c in cells:
            c["final"] = [9.5] * 5
        cells[0]["final"] = finals  # the best rate of each
    r = centring.centring_compared(m)["relu"]
    assert (r["standardize"]["median"], r["shift"]["median"], r["lower_share"]) == (0.2, 4.0, 0.4)
    assert not centring.verdicts(m)["C19"].passed


def test_c12_fails_when_its_control_shows_no_decay_in_the_window():
    """AdaGrad's step kept over the same window: the window could not have shown RMSProp decaying."""
    from gradientflow.experiments import optimisers

    m = _scale_steps(_scale_steps(_measured("optimisers"), "rmsprop", 1.0), "adagrad", 1.0)
    assert not optimisers.verdicts(m)["C12"].passed


def test_c4_also_fails_when_the_centred_net_is_not_lower_on_every_seed():
    from gradientflow.experiments import centring

    m = _measured("centring")
    assert centring.verdicts(m)["C4"].passed  # the real quick run passes
    best = centring.nets_compared(m)["centred_sigmoid"]["rate"]
    cell = m["sigmoid_nets"]["centred_sigmoid"][m["sigmoid_nets"]["rates"].index(best)]
    cell[0]["final"] = 9.0  # one seed of the centred net's best rate now ends far above the sigmoid net
    assert not centring.verdicts(m)["C4"].passed


@pytest.mark.parametrize("experiment", sorted(p.name.split(".")[0] for p in DATA.glob("*.json.gz")))
def test_the_stored_measurements_give_a_verdict_again(experiment):
    """data/<experiment>.json stores a diverged run's infinity as null: the rules read it back as diverged."""
    claims = experiments.load(experiment).verdicts(_measured(experiment))
    assert claims and all(isinstance(v.passed, bool) and v.why for v in claims.values())
