"""The probes on blocks as published designs write them (faithful small copies), and on the training
set-ups people use (issue 29): pairing by data flow, divergence, frozen layers, checkpointing, nested
probes, modern layers. Each planted fault is found at the right layer; each healthy control is silent."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradientflow.probes import watch
from gradientflow.probes.findings import UPDATE_RANGE


def _train(net, x, y, steps=6, lr=0.05, loss=F.cross_entropy, opt=None, **kw):
    opt = opt or torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=lr)
    with watch(net, **kw) as probe:
        for _ in range(steps):
            opt.zero_grad()
            loss(net(x), y).backward()
            opt.step()
        return probe.summary().set_index("layer"), probe.findings(), probe


class _BasicBlock(nn.Module):
    """A residual block that calls one ReLU module after each of its convolutions (torchvision's
    BasicBlock shape: conv1, bn1, relu, conv2, bn2, the skip, then the same relu)."""

    def __init__(self, c=8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(out + x)


class _ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.block, self.head = nn.Conv2d(3, 8, 3, padding=1), _BasicBlock(), nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.block(F.relu(self.stem(x))).mean((2, 3)))


def test_a_shared_relu_is_seen_after_each_convolution_and_dead_channels_behind_the_second_are_found():
    torch.manual_seed(0)
    net, x, y = _ResNet(), torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    healthy, found, _ = _train(net, x, y, lr=0.01)
    assert healthy.loc["block.conv1", "activation"] == healthy.loc["block.conv2", "activation"] == "relu"
    assert "dead" not in {f.kind for f in found}
    with torch.no_grad():
        net.block.bn2.bias[:3] = -20.0  # 3 of 8 channels behind conv2 never pass the ReLU
        net.block.bn2.bias.requires_grad_(False)
    planted, found, _ = _train(net, x, y, lr=0.01)
    assert planted.loc["block.conv2", "dead"] == pytest.approx(3 / 8)
    assert planted.loc["block.conv1", "dead"] == 0.0
    dead = [f for f in found if f.kind == "dead"]
    assert [f.layers for f in dead] == [["block.conv2"]]
    assert "block:relu" not in planted.index  # the residual sum's ReLU: a row of its own, named after the module
    assert planted.loc["block.relu", "type"] == "ReLU"


class _SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation: fc1, fc2, then the activation and the scale activation registered."""

    def __init__(self, c=8, squeeze=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), nn.Sigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * s


class _FeedForward(nn.Module):
    """A feed-forward block whose activation module is registered after its output projection."""

    def __init__(self, d=8):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.ReLU()

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


def test_activations_registered_out_of_order_are_credited_to_the_layer_whose_output_they_consume():
    torch.manual_seed(1)
    se = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _SqueezeExcitation(), nn.Flatten(), nn.Linear(8 * 36, 4))
    s, _, _ = _train(se, torch.randn(8, 3, 6, 6), torch.randint(0, 4, (8,)))
    assert s.loc["1.fc1", "activation"] == "relu" and s.loc["1.fc2", "activation"] == "sigmoid"
    torch.manual_seed(2)
    ffn = nn.Sequential(_FeedForward(), nn.Linear(8, 3))
    with torch.no_grad():
        ffn[0].fc1.bias[:16] = -50.0  # half of fc1's units dead
    s, found, _ = _train(ffn, torch.randn(32, 8), torch.randint(0, 3, (32,)))
    assert s.loc["0.fc1", "activation"] == "relu" and not isinstance(s.loc["0.fc2", "activation"], str)
    assert s.loc["0.fc1", "dead"] == pytest.approx(0.5)
    assert [f.layers for f in found if f.kind == "dead"] == [["0.fc1"]]


def test_an_identity_is_no_activation():
    """A ViT block's fused qkv followed by an Identity q-norm: qkv has h = z, no activation."""
    class Attention(nn.Module):
        def __init__(self, d=8, heads=2):
            super().__init__()
            self.heads, self.qkv, self.q_norm, self.proj = heads, nn.Linear(d, 3 * d), nn.Identity(), nn.Linear(d, d)

        def forward(self, x):
            N, L, d = x.shape
            q, k, v = self.qkv(x).reshape(N, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            q = self.q_norm(q)
            return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, L, d))

    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 8), Attention(), nn.Flatten(), nn.Linear(8 * 5, 3))
    s, found, _ = _train(net, torch.randn(8, 5, 4), torch.randint(0, 3, (8,)))
    assert not isinstance(s.loc["1.qkv", "activation"], str)
    assert "vanishing" not in {f.kind for f in found}


def test_a_run_that_goes_non_finite_is_a_diverged_finding_naming_the_step_and_layer():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    x, y = torch.randn(64, 10) * 3, torch.randint(0, 3, (64,))
    _, found, probe = _train(net, x, y, steps=30, lr=50.0)
    kinds = [f.kind for f in found]
    assert kinds == ["diverged"], found
    assert "stopped being finite at step" in found[0].message
    assert 1 <= found[0].numbers["step"] <= 30
    torch.manual_seed(4)
    healthy = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    _, found, _ = _train(healthy, x, y, steps=30, lr=0.01)
    assert "diverged" not in {f.kind for f in found}


def test_frozen_layers_draw_no_update_finding_and_out_of_range_updates_are_one_finding():
    torch.manual_seed(5)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.Tanh())], nn.Linear(16, 3))
    for p in net[:10].parameters():
        p.requires_grad_(False)
    s, found, _ = _train(net, torch.randn(32, 16), torch.randint(0, 3, (32,)), steps=12, lr=1e-9, update_every=2)
    assert s.loc["0", "update_ratio"] != s.loc["0", "update_ratio"]  # NaN: a frozen weight has no update
    updates = [f for f in found if f.kind == "update_ratio"]
    assert len(updates) == 1 and updates[0].layers == ["10", "12"], found  # the trainable ones, grouped


def test_a_recomputed_forward_is_not_a_new_call():
    """Activation checkpointing runs the block's forward again in the backward pass."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self, use):
            super().__init__()
            self.use, self.block, self.head = use, nn.Sequential(nn.Linear(8, 16), nn.Tanh()), nn.Linear(16, 3)

        def forward(self, x):
            h = checkpoint(self.block, x, use_reentrant=False) if self.use else self.block(x)
            return self.head(h)

    rows = []
    for use in (False, True):
        torch.manual_seed(6)
        s, _, _ = _train(Checkpointed(use), torch.randn(16, 8), torch.randint(0, 3, (16,)), steps=4)
        rows.append(s)
    plain, checkpointed = rows
    assert checkpointed.loc["block.0", "sampled_steps"] == plain.loc["block.0", "sampled_steps"] == 4
    for col in ("act_std", "act_grad_norm", "weight_grad_norm"):
        assert checkpointed.loc["block.0", col] == pytest.approx(plain.loc["block.0", col], rel=1e-5), col


def test_a_nested_probe_does_not_see_the_other_probes_recomputation():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (2, 4)))
    mha = nn.MultiheadAttention(4, 2, batch_first=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.mha, self.head = net, mha, nn.Linear(8, 2)

        def forward(self, x):
            e = self.net(x)
            return self.head(self.mha(e, e, e, need_weights=False)[0].flatten(1))

    model = Net()
    with watch(model) as outer, watch(model.mha) as inner:
        F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        assert not any(":softmax" in r for r in outer.summary()["layer"])
        assert list(inner.summary()["layer"]) == ["mha:head0", "mha:head1"] or \
            list(inner.summary()["layer"]) == ["MultiheadAttention:head0", "MultiheadAttention:head1"]


def test_rms_norms_transposed_linears_and_gelu_modules_are_known():
    class OwnRMSNorm(nn.Module):  # as Llama writes it
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    class Conv1D(nn.Module):  # GPT-2's: weight (in, out), x W + b
        def __init__(self, nf, nx):
            super().__init__()
            self.nf, self.weight, self.bias = nf, nn.Parameter(torch.randn(nx, nf) * 0.1), nn.Parameter(torch.zeros(nf))

        def forward(self, x):
            return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], self.nf)

    class NewGELUActivation(nn.Module):  # GPT-2's tanh approximation, written out
        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    torch.manual_seed(8)
    net = nn.Sequential(nn.Linear(6, 12), nn.RMSNorm(12), Conv1D(24, 12), NewGELUActivation(), OwnRMSNorm(24),
                        nn.Linear(24, 3))
    s, found, probe = _train(net, torch.randn(16, 6), torch.randint(0, 3, (16,)))
    assert s.loc["1", "type"] == "RMSNorm" and s.loc["4", "type"] == "OwnRMSNorm"
    assert s.loc["2", "type"] == "Conv1D" and s.loc["2", "activation"] == "gelu" and s.loc["2", "units"] == 24
    assert not any("tanh" in name for name in s.index)  # the GELU's inner tanh is no nonlinearity of its own
    assert s.loc["2", "weight_grad_norm"] > 0 and s.loc["2", "distinct_units"] == 24
    assert not [name for name, _ in probe.skipped if name in ("1", "2", "3", "4")]


def test_a_compiled_model_is_probed_as_the_eager_one():
    """``torch.compile`` (the eager backend: Dynamo's graph capture, no code generation): the probe's hooks
    run outside the graph, so the compiled model gives the eager model's rows and numbers."""
    def run(compile_it):
        torch.manual_seed(9)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
        model = torch.compile(net, backend="eager") if compile_it else net
        s, found, _ = _train(model, torch.randn(32, 8), torch.randint(0, 3, (32,)), steps=4)
        return s.rename(index=lambda name: name.removeprefix("_orig_mod.")), found

    (eager, _), (compiled, found) = run(False), run(True)
    assert list(compiled.index) == list(eager.index) == ["0", "2", "4"]
    for col in ("act_std", "dead", "act_grad_norm", "weight_grad_norm", "glorot_forward"):
        assert compiled[col].tolist() == pytest.approx(eager[col].tolist(), rel=1e-5, nan_ok=True), col
    assert found == []


def test_autocast_to_bfloat16_keeps_the_probe_working():
    torch.manual_seed(10)
    net = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s, found, _ = _train(net, torch.randn(32, 8), torch.randint(0, 3, (32,)), steps=4)
    assert s.loc["0", "activation"] == "gelu" and 0 < s.loc["0", "act_std"] < 10
    assert s.loc["0", "act_grad_norm"] > 0 and s.loc["0", "weight_grad_norm"] > 0
    assert found == []


def test_several_forwards_per_optimiser_step_are_one_step_without_being_told():
    """Two micro-batches per optimiser step in a plain loop (no steps="manual"): once the optimiser has
    stepped, a step is an optimiser step, and the weight gradient is the accumulated one it applies."""
    torch.manual_seed(11)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    norms = []
    with watch(net) as probe:
        for k in range(8):
            opt.zero_grad()
            for _ in range(2):
                x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
                (F.cross_entropy(net(x), y) / 2).backward()
            norms.append(float(net[0].weight.grad.norm()))
            opt.step()
            if k == 0:
                probe.flush()  # the first optimiser step: before it, nothing says the two forwards are one step
        rows = probe.summary().set_index("layer")
    assert probe.step == 1 + 1 + 7
    assert rows.loc["0", "sampled_steps"] == 7
    assert rows.loc["0", "weight_grad_norm"] == pytest.approx(math.sqrt(sum(n * n for n in norms[1:]) / 7), rel=1e-5)


class _Bag(nn.Module):
    """A bag of words over a large vocabulary: each batch looks up a few of its 50,000 rows."""

    def __init__(self, sparse=False):
        super().__init__()
        self.emb, self.head = nn.Embedding(50_000, 32, sparse=sparse), nn.Linear(32, 3)

    def forward(self, tokens):
        return self.head(self.emb(tokens).mean(1))


def _table_updates(net, tokens, y, steps, lr):
    """Train ``steps`` SGD steps watched with update_every=1; the summary and, per step, the update
    ratio over the rows the step changed and over the whole table, reckoned from the weights."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    rows, whole = [], []
    with watch(net, update_every=1) as probe:
        for _ in range(steps):
            before = net.emb.weight.detach().clone()
            opt.zero_grad()
            F.cross_entropy(net(tokens), y).backward()
            opt.step()
            change = net.emb.weight.detach() - before
            touched = change.abs().sum(1) > 0
            rows.append(float(change[touched].norm() / before[touched].norm()) if touched.any() else 0.0)
            whole.append(float(change.norm() / before.norm()))
        net(tokens)  # the next step's start measures the last step's update
        return probe.summary().set_index("layer"), probe.findings(), rows, whole


@pytest.mark.parametrize("sparse", [False, True])
def test_an_embedding_table_has_its_update_measured_on_the_rows_a_step_changed(sparse):
    torch.manual_seed(6)
    tokens, y = torch.randint(0, 50_000, (4, 4)), torch.randint(0, 3, (4,))
    s, found, rows, whole = _table_updates(_Bag(sparse), tokens, y, steps=3, lr=0.05)
    assert s.loc["emb", "type"] == "Embedding" and s.loc["emb", "weight_grad_norm"] > 0
    assert s.loc["emb", "update_ratio"] == pytest.approx(sum(rows) / len(rows), rel=1e-4)
    assert max(whole) < UPDATE_RANGE[0] < min(rows)  # over the whole table: a false "stalled" finding
    assert "update_ratio" not in {f.kind for f in found}, found
    torch.manual_seed(6)  # planted: a learning rate too small to move the float32 weights at all
    _, found, rows, _ = _table_updates(_Bag(sparse), tokens, y, steps=3, lr=1e-9)
    stalled = [f for f in found if f.kind == "update_ratio"]
    assert max(rows) < UPDATE_RANGE[0] and stalled and "emb" in stalled[0].layers, found
