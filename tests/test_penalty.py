"""L1 and L2 on the weights: the gradient added equals autograd's of the penalty, and it regularises."""

import pytest
import torch

from gradientflow.penalty import Penalty


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.Tanh(), torch.nn.Linear(5, 2))


@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.0, 0.2), (0.05, 0.7)])
def test_the_gradient_added_is_autograds_of_l1_sum_abs_plus_half_l2_sum_squares(l1, l2):
    x = torch.randn(8, 3)
    net = _net()
    net(x).pow(2).sum().backward()
    Penalty(net, l1, l2).after_backward(1)
    added = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    weights = [p for p in net.parameters() if p.dim() > 1]  # not the biases nor batch norm's scale
    penalty = l1 * sum(w.abs().sum() for w in weights) + l2 / 2 * sum(w.pow(2).sum() for w in weights)
    (net(x).pow(2).sum() + penalty).backward()
    for got, want in zip(added, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(got, want)


def test_biases_and_norm_scales_are_left_alone_and_bad_strengths_are_refused():
    net = _net()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    Penalty(net, 1.0, 1.0).after_backward(1)
    assert all((p.grad == 0).all() for p in net.parameters() if p.dim() == 1)
    assert all((p.grad != 0).any() for p in net.parameters() if p.dim() > 1)
    with pytest.raises(ValueError, match="l1=-1"):
        Penalty(net, -1, 0)
    with pytest.raises(ValueError, match="l2=nan"):
        Penalty(net, 0, float("nan"))


def test_in_training_l1_makes_weights_small_and_l2_shrinks_their_norm_against_no_penalty():
    from gradientflow.data import load
    from gradientflow.model import mlp
    from gradientflow.records import LoopSpec
    from gradientflow.trainer import Trainer

    d = load("gaussians", n_train=256, n_test=64)

    def trained(l1, l2):
        net = mlp(2, 32, 2, 2, activation="tanh", generator=torch.Generator().manual_seed(0))
        observers = (Penalty(net, l1, l2),) if l1 or l2 else ()
        t = Trainer(net, d, loop=LoopSpec(epochs=20, batch_size=32), observers=observers)
        while not t.done:
            assert t.advance() is None
        w = torch.cat([p.detach().flatten() for p in net.parameters() if p.dim() > 1])
        return w

    plain, lasso, ridge = trained(0, 0), trained(0.01, 0), trained(0, 0.05)
    assert ridge.norm() < 0.8 * plain.norm()
    assert (lasso.abs() < 1e-2).float().mean() > 2 * (plain.abs() < 1e-2).float().mean()  # many near zero
