import pytest
import torch
from torch import nn

from gradientflow import Maxout, mlp
from gradientflow.init import Scale


def test_depth_width_and_readout():
    net = mlp(20, 64, 3, 10, activation="relu", init_name="he")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(64, 20), (64, 64), (64, 64), (10, 64)]
    assert sum(isinstance(m, nn.ReLU) for m in net) == 3
    assert net(torch.randn(5, 20)).shape == (5, 10)


def test_depth_zero_is_a_single_linear_map():
    net = mlp(20, 64, 0, 3)
    assert len(net) == 1 and isinstance(net[0], nn.Linear) and net[0].weight.shape == (3, 20)
    with pytest.raises(ValueError, match="depth=0 needs out_features"):
        mlp(20, 64, 0)


def test_bias_off_and_biases_start_at_zero():
    assert all(m.bias is None for m in mlp(8, 16, 2, 2, bias=False) if isinstance(m, nn.Linear))
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in mlp(8, 16, 2, 2) if isinstance(m, nn.Linear))


def test_maxout_hidden_layers_own_pieces_times_the_weights():
    net = mlp(10, 32, 2, 4, activation="maxout", pieces=3)
    maxouts = [m for m in net if isinstance(m, Maxout)]
    assert len(maxouts) == 2 and maxouts[0].linear.weight.shape == (96, 10)
    assert net(torch.randn(7, 10)).shape == (7, 4)


def test_he_init_reads_the_leaky_slope():
    g = torch.Generator().manual_seed(0)
    net = mlp(2000, 2000, 1, activation="prelu", init_name="he", generator=g)
    var = float(net[0].weight.detach().var())
    assert var == pytest.approx(2 / ((1 + 0.25**2) * 2000), rel=0.02)


def test_every_activation_builds_and_runs():
    from gradientflow.activations import NAMES

    for name in NAMES:
        out = mlp(6, 8, 2, 3, activation=name, init_name="xavier")(torch.randn(4, 6))
        assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_zero_init_makes_every_unit_of_a_layer_identical():
    net = mlp(5, 16, 2, 3, activation="tanh", init_name="constant", scale=Scale(value=0.3))
    h = net[:2](torch.randn(9, 5))
    assert torch.equal(h, h[:, :1].expand_as(h))  # C14: the layer is worth one unit


@pytest.mark.parametrize("bad", [dict(width=0), dict(depth=-1), dict(in_features=0), dict(pieces=0)])
def test_bad_sizes_are_refused(bad):
    kwargs = dict(in_features=4, width=8, depth=2, out_features=2) | bad
    with pytest.raises(ValueError, match="must be an integer"):
        mlp(**kwargs)


def test_batch_norm_sits_between_the_map_and_the_activation_and_dropout_after_it():
    net = mlp(4, 8, 2, 3, activation="relu", batch_norm=True, dropout=0.25)
    assert [type(m).__name__ for m in net] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    x = torch.randn(64, 4)
    pre = net[1](net[0](x))
    assert pre.mean(0).abs().max() < 1e-5 and (pre.var(0, unbiased=False) - 1).abs().max() < 1e-3
    net.eval()
    torch.testing.assert_close(net(x), net(x))  # no dropout at evaluation
    net.train()
    dropped = net[3](torch.ones(10_000, 8))
    assert dropped.unique().tolist() == pytest.approx([0.0, 1 / 0.75]) and abs(float((dropped == 0).float().mean()) - 0.25) < 0.02


@pytest.mark.parametrize("kw, message", [({"dropout": 1.0}, "dropout must be a probability"),
                                         ({"dropout": -0.1}, "dropout must be a probability"),
                                         ({"batch_norm": True, "activation": "maxout"}, "batch_norm needs")])
def test_bad_batch_norm_and_dropout_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        mlp(4, 8, 2, 3, **kw)
