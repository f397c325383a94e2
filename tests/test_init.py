import math

import pytest
import torch
from scipy import stats

from gradientflow import init
from gradientflow.init import INITIALIZERS, Scale

SHAPES = [(300, 200), (200, 300)]
SCALES = [Scale(), Scale(gain=1.7, std=0.3, value=0.5, a=0.2), Scale(mode="fan_out", gain=0.5, std=2.0),
          Scale(mode="fan_in", a=0.01)]


@pytest.mark.parametrize("name", list(INITIALIZERS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_empirical_variance_matches_the_formula(name, shape, scale):
    entry = INITIALIZERS[name]
    w = torch.empty(shape, dtype=torch.float64)
    entry.fill_(w, scale, torch.Generator().manual_seed(0))
    fan_out, fan_in = shape
    expected = entry.variance(fan_in, fan_out, scale)
    n = w.numel()
    if expected == 0:
        assert float(w.var()) == 0.0
    else:
        # Var of the sample variance of n iid entries <= 2 sigma^4 / n (normal) .. 1.8 sigma^4/n (uniform); 5 sigma
        assert float((w * w).mean()) == pytest.approx(expected, rel=5 * math.sqrt(2 / n))
        assert abs(float(w.mean())) < 5 * math.sqrt(expected / n)


def test_xavier_modes_are_the_formulas_of_c16_and_c18():
    s = Scale()
    assert INITIALIZERS["xavier"].variance(400, 100, s) == pytest.approx(2 / 500)  # 2/(n_in + n_out)
    assert INITIALIZERS["xavier"].variance(400, 100, Scale(mode="fan_in")) == pytest.approx(1 / 400)
    assert INITIALIZERS["he"].variance(400, 100, s) == pytest.approx(2 / 400)
    assert INITIALIZERS["he"].variance(400, 100, Scale(a=0.25)) == pytest.approx(2 / (1.0625 * 400))


@pytest.mark.parametrize("name,dist", [("xavier", "norm"), ("he", "norm"), ("lecun", "norm"), ("normal", "norm"),
                                       ("xavier_uniform", "uniform"), ("he_uniform", "uniform"),
                                       ("uniform", "uniform")])
def test_distribution_shape_by_kolmogorov_smirnov(name, dist):
    entry, s = INITIALIZERS[name], Scale(std=0.2)
    w = torch.empty(256, 128, dtype=torch.float64)
    entry.fill_(w, s, torch.Generator().manual_seed(1))
    sd = math.sqrt(entry.variance(128, 256, s))
    ref = stats.norm(scale=sd) if dist == "norm" else stats.uniform(loc=-math.sqrt(3) * sd, scale=2 * math.sqrt(3) * sd)
    assert stats.kstest(w.flatten().numpy(), ref.cdf).pvalue > 1e-3


@pytest.mark.parametrize("shape", SHAPES)
def test_orthogonal_is_orthonormal_times_gain(shape):
    w = torch.empty(shape, dtype=torch.float64)
    init.orthogonal_(w, 2.0, generator=torch.Generator().manual_seed(0))
    small = w @ w.T if shape[0] <= shape[1] else w.T @ w
    torch.testing.assert_close(small, 4.0 * torch.eye(min(shape), dtype=torch.float64), atol=1e-10, rtol=0)


def test_the_same_generator_seed_gives_the_same_weights():
    a, b = torch.empty(50, 40), torch.empty(50, 40)
    INITIALIZERS["xavier"].fill_(a, Scale(), torch.Generator().manual_seed(7))
    INITIALIZERS["xavier"].fill_(b, Scale(), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_lsuv_gives_unit_variance_outputs_on_the_batch():
    from gradientflow import model

    g = torch.Generator().manual_seed(0)
    net = model.mlp(30, 100, 6, 5, activation="relu", init_name="normal", scale=Scale(std=3.0), generator=g)
    x = torch.randn(1000, 30, generator=g) * 4 + 2
    init.lsuv_(net, x, generator=g)
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(float(o.var())))
             for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert len(outs) == 7 and all(abs(v - 1) < 0.02 for v in outs)


def test_unknown_initialiser_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown initialiser 'xavir'; expected one of: zeros"):
        init.get("xavir")
    assert init.get("glorot") is INITIALIZERS["xavier"] and init.get("kaiming") is INITIALIZERS["he"]


def test_one_dimensional_tensor_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        init.xavier_normal_(torch.empty(5), mode="fan_in")


@pytest.mark.parametrize("name, scale, expected", [
    ("he", Scale(), (2.0, 0.0)),  # C17: fan_in Var(w) = 2
    ("xavier", Scale(), (1.0, 0.0)),  # square layers: 2 / (n + n) x n = 1 (C16)
    ("lecun", Scale(gain=1.5), (2.25, 0.0)),
    ("normal", Scale(std=0.01), (500 * 1e-4, 0.0)),  # C15: 500 x 0.01^2
    ("orthogonal", Scale(bias_std=0.3), (1.0, 0.09)),
])
def test_meanfield_scales_are_fan_in_times_the_promised_variance(name, scale, expected):
    assert init.meanfield_scales(name, 500, scale=scale) == pytest.approx(expected, rel=1e-12)


def test_meanfield_scales_of_a_rectangular_layer_and_of_inits_the_theory_does_not_describe():
    assert init.meanfield_scales("xavier", 100, 300)[0] == pytest.approx(100 * 2 / 400)
    assert all(init.meanfield_scales(n, 100) is None for n in ("zeros", "constant", "lsuv"))


def test_meanfield_draws_the_asked_variances_and_meanfield_scales_reads_them_back():
    scale = init.meanfield(1.7, 0.04)
    assert init.meanfield_scales("xavier", 400, 250, scale) == pytest.approx((1.7, 0.04), rel=1e-12)
    w = torch.empty(2000, 400)
    init.get("xavier").fill_(w, scale, torch.Generator().manual_seed(0))
    assert float(w.var()) * 400 == pytest.approx(1.7, rel=0.01)


def test_the_meanfield_initialiser_draws_sigma_w2_over_fan_in_and_sigma_b2_from_a_config():
    """init='meanfield' (Poole et al. 2016): W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2), per layer,
    checked on the drawn weights of an mlp built from a TrainConfig; meanfield_scales reads them back."""
    from gradientflow import model
    from gradientflow.config import TrainConfig

    cfg = TrainConfig(init="meanfield", sigma_w2=1.76, sigma_b2=0.05, activation="tanh", depth=3, width=400)
    net = model.mlp(300, cfg.width, cfg.depth, 10, activation=cfg.activation, init_name=cfg.init, scale=cfg.scale(),
                    generator=torch.Generator().manual_seed(0))
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    for layer in linears:
        fan_in = layer.weight.shape[1]
        assert float(layer.weight.detach().var()) * fan_in == pytest.approx(1.76, rel=0.03)
        assert float(layer.bias.detach().var()) == pytest.approx(0.05, rel=0.25)  # 10 to 400 draws
    assert init.meanfield_scales(cfg.init, 400, 400, cfg.scale()) == pytest.approx((1.76, 0.05))
    assert TrainConfig(init="meanfield").scale() == init.meanfield(1.0, 0.0)
