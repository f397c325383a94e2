"""layers.walk: the one walk over a network's layers, with the nonlinearity each feeds."""

import pytest
import torch
from torch import nn

from gradientflow import layers, mlp


def _names(walked):
    return [(layer.name, layer.nonlinearity) for layer in walked]


def test_a_sequential_mlp_pairs_each_linear_with_its_activation():
    net = mlp(4, 8, 3, 2, activation="tanh", init_name="xavier")
    walked = layers.walk(net)
    assert _names(walked) == [("0", "tanh"), ("2", "tanh"), ("4", "tanh"), ("6", None)]
    assert [layer.name for layer in layers.hidden(net)] == ["0", "2", "4"]
    assert walked[0].activation_module is net[1] and walked[-1].activation_module is None


def test_nested_modules_conv_and_parametrised_activations():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3)
            self.act = nn.LeakyReLU(0.2)

        def forward(self, x):
            return self.act(self.conv(x))

    net = nn.Sequential(Block(), nn.Flatten(), nn.Linear(5 * 6 * 6, 7), nn.ELU(0.5), nn.Linear(7, 2))
    walked = layers.walk(net)
    assert [layer.name for layer in walked] == ["0.conv", "2", "4"]
    conv = walked[0]
    assert conv.activation.name == "leaky_relu(0.2)" and conv.unit_dim == 1 and conv.units == 5
    assert walked[1].activation.name == "elu(0.5)" and walked[1].unit_dim == -1
    assert float(conv.activation.derivative(torch.tensor(-1.0))) == pytest.approx(0.2)


def test_maxout_is_its_own_nonlinearity_and_hides_its_inner_linear():
    net = mlp(4, 6, 2, 3, activation="maxout", init_name="lecun", pieces=3)
    walked = layers.walk(net)
    assert _names(walked) == [("0", "maxout"), ("1", "maxout"), ("2", None)]
    assert walked[0].units == 6 and walked[0].weight is net[0].linear.weight and walked[0].hidden


def test_the_filter_picks_layers_by_type_name_or_predicate():
    net = mlp(4, 8, 2, 2, activation="relu", init_name="he")
    assert [layer.name for layer in layers.walk(net, ["2"])] == ["2"]
    assert len(layers.walk(net, (nn.Linear,))) == 3
    assert [layer.name for layer in layers.walk(net, lambda name, m: isinstance(m, nn.Linear) and m.out_features == 2)] \
        == ["4"]


def test_unknown_activations_are_walked_without_a_record():
    net = nn.Sequential(nn.Linear(3, 3), nn.Hardtanh(-2.0, 2.0), nn.Linear(3, 1))
    first = layers.walk(net)[0]
    assert first.activation is None and first.nonlinearity is None and not first.hidden


class _FeedForward(nn.Module):
    """A feed-forward block whose activation module is registered after its output projection, with a
    norm and dropout between fc1 and the activation."""

    def __init__(self, d=8):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.norm, self.drop, self.act = nn.LayerNorm(4 * d), nn.Dropout(0.1), nn.ReLU()

    def forward(self, x):
        return x + self.fc2(self.act(self.drop(self.norm(self.fc1(x)))))


def test_with_an_example_the_walk_pairs_by_data_flow_and_without_one_by_module_order():
    block = nn.Sequential(_FeedForward(), nn.Linear(8, 3))
    x = torch.randn(4, 8)
    by_flow = {layer.name: layer.activation_module for layer in layers.walk(block, example=x)}
    assert by_flow == {"0.fc1": block[0].act, "0.fc2": None, "1": None}
    by_order = {layer.name: layer.activation_module for layer in layers.walk(block)}
    assert by_order["0.fc2"] is block[0].act  # module order credits the activation to the wrong layer
    assert [layer.name for layer in layers.hidden(block, x)] == ["0.fc1"]
    assert block.training  # the traced forward ran in eval mode and left the mode as it was


def test_a_shared_activation_module_is_paired_with_each_layer_it_consumes():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.relu(self.b(self.relu(self.a(x)))))

    net = Shared()
    walked = {layer.name: layer.activation_module for layer in layers.walk(net, example=torch.randn(2, 4))}
    assert walked == {"a": net.relu, "b": net.relu, "head": None}
    assert {layer.name: layer.activation_module for layer in layers.walk(net)}["a"] is None  # module order misses it


def test_never_active_follows_the_data_flow():
    from gradientflow.experiments.dead_units import never_active

    torch.manual_seed(0)
    net = nn.Sequential(_FeedForward(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        net[0].norm.bias[:8] = -50.0  # 8 of fc1's 32 units never pass the ReLU
    flags = never_active(net, torch.randn(64, 8))
    assert flags.shape == (32,) and int(flags.sum()) == 8
