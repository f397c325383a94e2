import numpy as np
import pytest
import torch

from gradientflow import optim

import reference

H = np.diag([10.0, 1.0, 0.1]) + 0.05  # an ill-conditioned quadratic


def grad(theta: np.ndarray) -> np.ndarray:
    """Gradient of 0.5 theta' H theta + sum(cos theta), by hand (not autograd)."""
    return H @ theta - np.sin(theta)


CASES = [
    ("sgd", dict(lr=0.05), reference.sgd, dict(alpha=0.05)),
    ("momentum", dict(lr=0.05, mu=0.9), reference.momentum, dict(alpha=0.05, mu=0.9)),
    ("momentum", dict(lr=0.05, mu=0.5, weight_decay=0.1), reference.momentum, dict(alpha=0.05, mu=0.5, wd=0.1)),
    ("nesterov", dict(lr=0.05, mu=0.9), reference.nesterov, dict(alpha=0.05, mu=0.9)),
    ("adagrad", dict(lr=0.5), reference.adagrad, dict(alpha=0.5, delta=1e-10)),
    ("adagrad", dict(lr=0.5, delta=1e-5), reference.adagrad, dict(alpha=0.5, delta=1e-5)),
    ("rmsprop", dict(lr=0.01, rho=0.9), reference.rmsprop, dict(alpha=0.01, rho=0.9, delta=1e-8)),
    ("rmsprop", dict(lr=0.01), reference.rmsprop, dict(alpha=0.01, rho=0.99, delta=1e-8)),
    ("adam", dict(lr=0.1), reference.adam, dict(alpha=0.1, mu=0.9, rho=0.999, delta=1e-8)),
    ("adam", dict(lr=0.1, mu=0.8, rho=0.99, delta=1e-6, weight_decay=0.01), reference.adam,
     dict(alpha=0.1, mu=0.8, rho=0.99, delta=1e-6, wd=0.01)),
    ("adamw", dict(lr=0.1, weight_decay=0.1), reference.adam,
     dict(alpha=0.1, mu=0.9, rho=0.999, delta=1e-8, wd=0.1, decoupled=True)),
]


@pytest.mark.parametrize("name, kwargs, ref, ref_kwargs", CASES)
def test_torch_update_equals_the_seed_formula_step_by_step(name, kwargs, ref, ref_kwargs):
    start = np.array([1.5, -2.0, 3.0])
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = optim.make(name, [p], **kwargs)
    theta, state = start.copy(), {}
    for _ in range(30):
        opt.zero_grad()
        p.grad = torch.tensor(grad(p.detach().numpy()))
        opt.step()
        theta = ref(theta, grad(theta), state, **ref_kwargs)
        np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-12, atol=1e-14)
    assert not np.allclose(theta, start)  # the test moved


def test_adam_bias_correction_matters_in_the_first_steps():
    # C13: without correction the first step is (1 - mu) = 10x too short in the mean's scale
    g = np.array([1.0])
    with_c = reference.adam(np.zeros(1), g, {}, alpha=0.1, mu=0.9, rho=0.999, delta=1e-8)
    without = reference.adam(np.zeros(1), g, {}, alpha=0.1, mu=0.9, rho=0.999, delta=1e-8, bias_correction=False)
    assert with_c[0] == pytest.approx(-0.1, rel=1e-6)  # a full alpha step
    assert without[0] == pytest.approx(-0.1 * 0.1 / np.sqrt(0.001), rel=1e-6)


@pytest.mark.parametrize("correction, ref_kwargs", [("none", dict(bias_correction=False)),
                                                     ("second", dict(bias_correction=False, correct_r=True))])
@pytest.mark.parametrize("delta", [1e-8, 1e-2])  # a large delta: its place in the denominator must be right too
def test_adam_with_its_corrections_off_equals_the_seed_formula(correction, ref_kwargs, delta):
    start = np.array([1.5, -2.0, 3.0])
    p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = optim.build(optim.OptimizerSpec(optimizer="adam", lr=0.1, eps=delta, weight_decay=0.01,
                                          bias_correction=correction), [p])
    theta, state = start.copy(), {}
    for _ in range(30):
        p.grad = torch.tensor(grad(p.detach().numpy()))
        opt.step()
        theta = reference.adam(theta, grad(theta), state, alpha=0.1, mu=0.9, rho=0.999, delta=delta, wd=0.01,
                               **ref_kwargs)
        np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-12, atol=1e-14)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["eps"] == delta  # restored after each step


def test_bias_correction_is_refused_for_other_optimisers_and_unknown_values():
    with pytest.raises(ValueError, match="applies to adam"):
        optim.OptimizerSpec(optimizer="adamw", bias_correction="none")
    with pytest.raises(ValueError, match="'first'"):
        optim.OptimizerSpec(optimizer="adam", bias_correction="first")


@pytest.mark.parametrize("name, bad, why", [
    ("sgd", dict(mu=0.9), "momentum"), ("adagrad", dict(rho=0.9), "rho"), ("sgd", dict(delta=1e-8), "delta"),
    ("lbfgs", {}, "unknown optimizer"),
])
def test_arguments_that_do_not_apply_are_refused(name, bad, why):
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=why):
        optim.make(name, [p], lr=0.1, **bad)


def _params_with_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * 10
    return ps


def test_clip_by_norm_returns_the_norm_before_and_scales_to_the_limit():
    ps = _params_with_grads()
    before = torch.cat([p.grad.flatten() for p in ps]).norm()
    total = optim.clip_(ps, norm=1.0)
    assert total.item() == pytest.approx(before.item(), rel=1e-6)
    after = torch.cat([p.grad.flatten() for p in ps]).norm()
    assert after.item() == pytest.approx(1.0, rel=1e-5)


def test_clip_by_value_bounds_every_entry_and_norm_unchanged_below_the_limit():
    ps = _params_with_grads()
    optim.clip_(ps, value=0.5)
    assert max(p.grad.abs().max().item() for p in ps) <= 0.5
    small = _params_with_grads()
    for p in small:
        p.grad /= 1000
    copy = [p.grad.clone() for p in small]
    optim.clip_(small, norm=100.0)
    assert all(torch.equal(a, p.grad) for a, p in zip(copy, small))


def test_clip_reports_infinite_norms():
    ps = _params_with_grads()
    ps[0].grad[0, 0] = float("inf")
    assert not torch.isfinite(optim.clip_(ps))
