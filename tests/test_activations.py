import math

import pytest
import torch
from torch.nn import functional as F

from gradientflow import activations, properties
from gradientflow.activations import CATALOG, Maxout

NAMES = list(CATALOG)


def _points(act):
    """Large |x|, 0, the kinks and points just beside them, and a dense middle."""
    x = [0.0, -1e3, 1e3, -50.0, 50.0, -25.0, 25.0, -19.9, 20.1, 1e-7, -1e-7]
    for k in act.kinks:
        x += [k, k - 1e-6, k + 1e-6]
    return torch.cat([torch.tensor(x, dtype=torch.float64), torch.linspace(-12, 12, 2401, dtype=torch.float64)])


@pytest.mark.parametrize("name", NAMES)
def test_closed_form_derivative_equals_autograd(name):
    act = CATALOG[name]
    x = _points(act).requires_grad_(True)
    (auto,) = torch.autograd.grad(act.fn(x).sum(), x)
    torch.testing.assert_close(act.derivative(x.detach()), auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_module_computes_the_function(name):
    act = CATALOG[name]
    x = torch.linspace(-5, 5, 101, dtype=torch.float64).reshape(1, -1)
    module = act.module(101).double()
    torch.testing.assert_close(module(x), act.fn(x))


def test_tanh_is_a_rescaled_sigmoid():
    x = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    torch.testing.assert_close(torch.tanh(x), 2 * torch.sigmoid(2 * x) - 1, rtol=0, atol=1e-15)


def test_sigmoid_derivative_peaks_at_a_quarter_at_zero():
    peak, (lo, hi) = properties.max_derivative(CATALOG["sigmoid"])
    assert peak == pytest.approx(0.25, abs=1e-12)
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(0.0, abs=1e-6)


def test_sigmoid_gradient_practically_zero_beyond_ten():
    d = CATALOG["sigmoid"].derivative(torch.tensor([10.0, -10.0], dtype=torch.float64))
    assert torch.all(d < 5e-5)  # C1: 4.5e-5 = 1/5500 of the peak


def test_leaky_relu_with_zero_slope_is_relu():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    leaky0 = activations.leaky_relu(0.0)
    torch.testing.assert_close(leaky0(x), torch.relu(x), rtol=0, atol=0)
    torch.testing.assert_close(leaky0.derivative(x), CATALOG["relu"].derivative(x), rtol=0, atol=0)


def _maxout_with_pieces(w, b, scale):
    """A 1-in, 3-out maxout layer whose second piece is `scale` times the first."""
    layer = Maxout(4, 3, pieces=2).double()
    with torch.no_grad():
        layer.linear.weight[0::2] = w
        layer.linear.bias[0::2] = b
        layer.linear.weight[1::2] = scale * w
        layer.linear.bias[1::2] = scale * b
    return layer


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2])
def test_relu_and_leaky_relu_are_special_cases_of_maxout(alpha):
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    layer = _maxout_with_pieces(w, b, alpha)
    torch.testing.assert_close(layer(x), F.leaky_relu(x @ w.T + b, alpha), rtol=1e-12, atol=1e-12)
    assert sum(p.numel() for p in layer.parameters()) == 2 * (4 * 3 + 3)  # C9: twice the parameters


def test_selu_fixed_point_is_mean_zero_variance_one():
    mean, _, var = properties.gaussian_moments(CATALOG["selu"])
    assert mean == pytest.approx(0.0, abs=1e-9)
    assert var == pytest.approx(1.0, abs=1e-9)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown activation 'rleu'; expected one of: sigmoid, tanh"):
        activations.get("rleu")
    with pytest.raises(ValueError, match="maxout is a layer"):
        activations.get("maxout")


def test_prelu_module_learns_one_slope_per_unit_or_one_shared():
    assert activations.prelu(per_unit=True).module(7).weight.shape == (7,)
    assert activations.prelu(per_unit=False).module(7).weight.shape == (1,)


def test_lecun_tanh_maps_one_to_about_one():
    assert float(CATALOG["lecun_tanh"](torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(1.0, abs=1e-4)
    assert math.isclose(float(CATALOG["lecun_tanh"](torch.tensor(1e6))), 1.7159, rel_tol=1e-6)


@pytest.mark.parametrize("make,dead", [
    (activations.relu6, ((None, 0.0), (6.0, None))),
    (activations.hardsigmoid, ((None, -3.0), (3.0, None))),
    (activations.hardswish, ((None, -3.0),)),
])
def test_the_probes_records_beyond_the_catalog_have_autograds_derivative_and_their_dead_sides(make, dead):
    """ReLU6, hard sigmoid and hard swish (MobileNets): the closed-form derivative is autograd's on a
    grid and at the kinks; f' = 0 exactly on the sides the formulas say."""
    act = make()
    x = torch.cat([torch.linspace(-8, 8, 3201, dtype=torch.float64),
                   torch.tensor(act.kinks, dtype=torch.float64)]).requires_grad_(True)
    act.fn(x).sum().backward()
    torch.testing.assert_close(act.derivative(x.detach()), x.grad, rtol=0, atol=0)
    assert act.dead_region() == dead
    assert act.name not in activations.CATALOG
