import math

import pytest
import torch

from gradientflow import schedules


def _rates(name, total=60, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = schedules.make(name, opt, total_steps=total, **kw)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return rates


def test_constant_has_no_scheduler():
    assert _rates("constant") == [2.0] * 60


def test_step_decays_by_gamma_every_step_size():
    rates = _rates("step", step_size=10, gamma=0.5)
    assert rates == pytest.approx([2.0 * 0.5 ** (t // 10) for t in range(60)])
    assert _rates("step", total=30)[:21] == pytest.approx([2.0] * 10 + [0.2] * 10 + [0.02])  # default: thirds, /10


def test_exponential_default_falls_a_hundredfold_over_the_run():
    rates = _rates("exponential", total=100)
    assert rates == pytest.approx([2.0 * 0.01 ** (t / 100) for t in range(100)])


def test_cosine_matches_the_closed_form():
    rates = _rates("cosine", total=50)
    assert rates == pytest.approx([2.0 * (1 + math.cos(math.pi * t / 50)) / 2 for t in range(50)])


def test_warmup_rises_linearly_then_holds():
    rates = _rates("warmup", total=40, warmup_steps=4)
    assert rates[:6] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_warmup_in_front_of_cosine():
    rates = _rates("cosine", total=44, warmup_steps=4)
    assert rates[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert rates[4:] == pytest.approx([2.0 * (1 + math.cos(math.pi * t / 40)) / 2 for t in range(40)])


def test_unknown_schedule():
    with pytest.raises(ValueError, match="expected one of"):
        _rates("cyclic")
