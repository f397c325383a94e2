"""The probes on public architectures built from their own libraries' code (``zoo.py``: Hugging Face
models from small configs, nothing downloaded), trained 30 steps at their usual rates: the healthy
ones draw no finding and leave no layer, norm or activation unprobed; planted faults are found and
named at the layer where they were planted."""

import pytest
import torch

import zoo

pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore")
UNKNOWN = ("a module with weights of a type the probes do not know", "an activation that follows no probed layer")


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_a_healthy_model_draws_no_finding_and_every_layer_is_probed(name):
    probe, found, losses = zoo.train(zoo.ZOO[name], steps=30)
    assert losses[-1] < losses[0]  # it trains
    assert found == [], [(f.kind, f.layers[:3], f.message) for f in found]
    assert not [(n, why) for n, why in probe.skipped if why.endswith(UNKNOWN)]
    last = probe.history()
    assert (last["type"] == "Linear").any() or (last["type"] == "Conv2d").any()


@pytest.mark.parametrize("name", ["llama", "llama_eager"])
def test_attention_collapse_planted_in_one_layer_is_found_there(name):
    torch.manual_seed(0)
    model = zoo.ZOO[name].make()
    attention = model.model.layers[1].self_attn
    with torch.no_grad():  # the query-key logits 3600 times larger in layer 1
        attention.q_proj.weight.mul_(60)
        attention.k_proj.weight.mul_(60)
    _, found, _ = zoo.train(zoo.ZOO[name], steps=10, model=model)
    collapse = [f for f in found if f.kind == "attention_collapse"]
    assert len(collapse) == 1 and collapse[0].layers
    assert all(layer.startswith("model.layers.1.self_attn") for layer in collapse[0].layers)


def test_a_diverging_transformer_is_found_diverged_not_blamed_on_its_scale():
    _, found, losses = zoo.train(zoo.ZOO["gpt2"], steps=30, lr=50.0)
    assert losses[-1] > 100 * losses[0]
    assert [f.kind for f in found] == ["diverged"], found
    assert found[0].layers == ["transformer.h.0.attn.c_attn"]


def test_dead_channels_planted_behind_a_resnet_convolution_are_found_at_it():
    torch.manual_seed(0)
    model = zoo.ZOO["resnet"].make()
    conv = model.resnet.encoder.stages[0].layers[0].layer[0]  # convolution, normalization, activation
    with torch.no_grad():
        conv.normalization.bias[:6] = -30.0  # 6 of 16 channels never pass the ReLU
    conv.normalization.bias.requires_grad_(False)
    _, found, _ = zoo.train(zoo.ZOO["resnet"], steps=10, model=model)
    dead = [f for f in found if f.kind == "dead"]
    assert [f.layers for f in dead] == [["resnet.encoder.stages.0.layers.0.layer.0.convolution"]]
    assert dead[0].numbers["dead"] == pytest.approx(6 / 16)


def test_a_zero_initialised_feed_forward_block_is_found_symmetric():
    torch.manual_seed(0)
    model = zoo.ZOO["bert"].make()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        for dense in (layer.intermediate.dense, layer.output.dense):
            dense.weight.zero_()
            dense.bias.zero_()
    _, found, _ = zoo.train(zoo.ZOO["bert"], steps=10, model=model)
    symmetric = [layer for f in found if f.kind == "symmetry" for layer in f.layers]
    assert "bert.encoder.layer.0.intermediate.dense" in symmetric, found


def test_a_deep_tanh_net_at_a_tiny_scale_is_found_vanishing():
    """The seeds' own case (C2, C15): 12 tanh layers at std 0.02, plain SGD; the control at Xavier's scale is silent."""
    from torch import nn

    from gradientflow.probes import watch

    def run(std):
        torch.manual_seed(0)
        net = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 4))
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        with watch(net) as probe:
            for _ in range(10):
                opt.zero_grad()
                x, y = torch.randn(16, 32, generator=g), torch.randint(0, 4, (16,), generator=g)
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
            return probe.findings()

    vanishing = [f for f in run(0.02) if f.kind == "vanishing"]
    assert vanishing and vanishing[0].layers[0] == "0"
    assert run((1 / 32) ** 0.5) == []
