"""The lab's Playground basics on the server side: the train share, feature crosses, the units' output
maps, batch norm, dropout, L1/L2 and the meanfield init that the phase diagram's drag sets."""

import time

import pytest
import torch

from gradientflow import job
from gradientflow.evaluation import evaluate
from gradientflow.lab import views
from gradientflow.lab.session import LabConfig, Session, _network
from gradientflow.records import LoopSpec
from gradientflow.trainer import Trainer


def _trained(cfg: LabConfig, epochs: int):
    tc = cfg.train_config()
    d = job.dataset(tc)
    net = _network(cfg, tc, d)
    t = Trainer(net, d, tc.parts.optimizer, LoopSpec(epochs=epochs, batch_size=cfg.batch_size, seed=cfg.seed))
    while not t.done:
        assert t.advance() is None
    return net, d


@pytest.mark.parametrize("data, share, sizes", [("spiral", 0.3, (300, 700)), ("digits", 0.5, (898, 899)),
                                                ("mnist1d", 0.95, (4750, 250))])
def test_the_train_share_splits_the_sets_usual_samples(data, share, sizes):
    d = job.dataset(LabConfig(data=data, train_share=share).train_config())
    assert (len(d.y_train), len(d.y_test)) == sizes


def test_the_cross_x1x2_alone_solves_xor_where_the_plain_inputs_do_not_in_the_same_steps():
    """The Playground's lesson: a 1 x 2 net with the feature x1x2 separates XOR within 5 epochs on
    every seed; the same net on (x1, x2) does not (a control, same steps and rates)."""
    def accuracy(features: str, seed: int) -> float:
        net, d = _trained(LabConfig(data="xor", depth=1, width=2, features=features, seed=seed), 5)
        return evaluate(net, d.x_test, d.y_test)[1]

    crossed = [accuracy("x1x2", s) for s in range(3)]
    plain = [accuracy("x1,x2", s) for s in range(3)]
    assert min(crossed) > 0.9 and max(plain) < 0.8, (crossed, plain)


def test_crosses_feed_the_first_layer_and_are_ignored_for_sets_that_are_not_two_dimensional():
    cfg = LabConfig(data="circle", features="x1^2,x2^2,sin(x1)")
    tc = cfg.train_config()
    net = _network(cfg, tc, job.dataset(tc))
    assert type(net[0]).__name__ == "Crosses" and net[1].in_features == 3
    x = torch.tensor([[0.5, -2.0]])
    torch.testing.assert_close(net[0](x), torch.tensor([[0.25, 4.0, float(torch.sin(torch.tensor(0.5)))]]))
    other = LabConfig(data="mnist1d", features="x1^2")
    tc = other.train_config()
    assert _network(other, tc, job.dataset(tc))[0].in_features == 40


@pytest.mark.parametrize("features, line", [("x3", "unknown feature 'x3'"), ("", "choose at least one feature"),
                                            ("x1,x1", "listed twice")])
def test_bad_features_are_one_line(features, line):
    from gradientflow.lab.server import _config

    with pytest.raises(ValueError, match=line):
        _config({"features": features})


def test_each_units_map_is_its_output_over_the_plane_scaled_by_its_columns_peak():
    cfg = LabConfig(data="spiral", depth=3, width=16)
    tc = cfg.train_config()
    d = job.dataset(tc)
    net = _network(cfg, tc, d)
    b = views.boundary(net, d, 16)
    maps = b["neurons"]
    assert len(maps["maps"]) == 4 and [len(c) for c in maps["maps"]] == [2, 12, 12, 12]
    size = maps["size"]
    x1 = torch.tensor(maps["maps"][0][0]).reshape(size, size)  # the first input, x1, grows along each row
    assert (x1.diff(dim=1) > 0).all() and (x1.diff(dim=0) == 0).all()
    lo, hi = b["extent"][0], b["extent"][1]
    assert maps["peaks"][0] == pytest.approx(max(abs(lo), abs(hi), abs(b["extent"][2]), abs(b["extent"][3])), rel=1e-5)
    # a hidden unit's map is its activation on the grid, to the scale's rounding
    g = torch.linspace(lo, hi, size)
    gy = torch.linspace(b["extent"][2], b["extent"][3], size)
    grid = torch.stack(torch.meshgrid(g, gy, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        h = net[1](net[0](grid))
    want = (h[:, :12] / maps["peaks"][1] * 99).round()
    assert (torch.tensor(maps["maps"][1]).T - want).abs().max() <= 1
    deep = LabConfig(data="spiral", depth=views.MAP_LAYERS + 1, width=8)
    tc = deep.train_config()
    assert views.boundary(_network(deep, tc, d), d, 16)["neurons"] is None  # deeper nets: dots


def test_batch_norm_and_dropout_train_are_probed_by_layer_and_say_why_the_theory_is_off():
    session = Session(LabConfig(data="spiral", depth=3, width=16, batch_norm=True, dropout=0.2, l1=1e-4, l2=1e-3))
    try:
        names = [type(m).__name__ for m in session.net]
        assert names.count("BatchNorm1d") == 3 and names.count("Dropout") == 3
        assert session.static["point"] is None and session.static["theory_note"] == "batch norm, dropout"
        assert [type(o).__name__ for o in session.trainer.observers] == ["Penalty"]
        session.play()
        end = time.monotonic() + 30
        while session.step_count < 200 and time.monotonic() < end:
            time.sleep(0.05)
        session.pause()
        assert session.step_count >= 200
        frame = session.frame()
        assert {r["layer"] for r in frame["layers"]} == {"1", "2", "3", "output"}
    finally:
        session.close()


def test_the_meanfield_init_puts_the_net_at_the_dragged_point():
    cfg = LabConfig(data="spiral", depth=2, width=256, activation="tanh", init="meanfield", sigma_w2=2.5, sigma_b2=0.1)
    session = Session(cfg)
    try:
        point = session.static["point"]
        assert (point["sigma_w2"], point["sigma_b2"]) == (2.5, 0.1) and point["phase"] == "chaotic"
        hidden = session.net[2]  # the second hidden layer: fan_in 256
        assert float(hidden.weight.var()) * 256 == pytest.approx(2.5, rel=0.05)
        assert float(hidden.bias.var()) == pytest.approx(0.1, rel=0.3)
    finally:
        session.close()
