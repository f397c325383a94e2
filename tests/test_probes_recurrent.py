"""Recurrent layers under the probe: the unrolled copy against the module, dL_T/dh_t against torch's
own cells, planted saturated gates and vanishing/exploding gradients through time found (and silent)."""

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow as gf
from gradientflow.probes import findings, recurrent, watch


class _Reader(nn.Module):
    """A recurrent layer and a linear read-out of its last output (many-to-one) or of every output."""

    def __init__(self, rnn: nn.RNNBase, every_step: bool = False):
        super().__init__()
        self.rnn, self.every_step = rnn, every_step
        width = (rnn.proj_size or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
        self.head = nn.Linear(width, 1, bias=False)

    def forward(self, x):
        out, _ = self.rnn(x)
        if self.every_step:
            return self.head(out).sum()
        return self.head(out[:, -1] if self.rnn.batch_first else out[-1]).sum()


def _kinds(found):
    return {f.kind for f in found}


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("make", [
    lambda: nn.LSTM(3, 5), lambda: nn.GRU(3, 5), lambda: nn.RNN(3, 5), lambda: nn.RNN(3, 5, nonlinearity="relu"),
    lambda: nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True),
    lambda: nn.GRU(3, 5, num_layers=2, bidirectional=True), lambda: nn.LSTM(3, 6, proj_size=4)])
def test_the_unrolled_copy_reproduces_the_modules_outputs(make):
    torch.manual_seed(0)
    rnn = make()
    x = torch.randn(4, 7, 3)
    D = 2 if rnn.bidirectional else 1
    h0 = torch.randn(rnn.num_layers * D, 4 if rnn.batch_first else 7, rnn.proj_size or rnn.hidden_size)
    hx = (h0, torch.randn(rnn.num_layers * D, h0.shape[1], rnn.hidden_size)) if isinstance(rnn, nn.LSTM) else h0
    for args in ((x,), (x, hx), (x[0],)):  # no state, a given state, unbatched
        got = recurrent.unroll(rnn, args, {})
        with torch.no_grad():
            want = recurrent.module_outputs(rnn, rnn(*args))
        out = want[0]
        if args[0].dim() == 2:
            out, want = out.unsqueeze(1), [out.unsqueeze(1), *[w.unsqueeze(1) for w in want[1:]]]
        elif rnn.batch_first:
            out = out.transpose(0, 1)
        torch.testing.assert_close(got.outputs[0], out, atol=1e-5, rtol=1e-5)
        for g, w in zip(got.outputs[1:], want[1:]):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("every_step", [False, True])
def test_time_gradients_equal_backprop_through_torchs_own_cells(kind, every_step):
    """||dL_T/dh_t|| from the probe against the same net stepped with nn.LSTMCell / nn.GRUCell and
    h_t.retain_grad(): L_T is the read-out of the last step (the only term with every_step=False)."""
    torch.manual_seed(1)
    rnn = getattr(nn, kind)(3, 6)
    model = _Reader(rnn, every_step)
    x = torch.randn(9, 4, 3)
    with watch(model) as probe:
        model(x).backward()
        row = next(r for r in probe.flush() if r["layer"] == "rnn.l0")
    cell = getattr(nn, kind + "Cell")(3, 6)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, name + "_l0"))
    h = torch.zeros(4, 6)
    state = (h, torch.zeros(4, 6)) if kind == "LSTM" else h
    hs = []
    for t in range(9):
        state = cell(x[t], state)
        h = state[0] if kind == "LSTM" else state
        h.retain_grad()
        hs.append(h)
    model.head(hs[-1]).sum().backward()
    want = [float(h.grad.norm()) for h in hs]
    assert row["time_grad"] == pytest.approx(want, rel=1e-4)
    assert row["time_grad_ratio"] == pytest.approx(want[0] / want[-1], rel=1e-4)


def _gate_preactivations(lstm: nn.LSTM, x: torch.Tensor) -> np.ndarray:
    """An independent NumPy reference: a one-layer LSTM's gate pre-activations (T, N, 4H) from its
    weights, with h_{t-1} read from the module's own output."""
    with torch.no_grad():
        out, _ = lstm(x)
    w = {k: v.detach().double().numpy() for k, v in lstm.named_parameters()}
    xs, hs = x.double().numpy(), out.double().numpy()
    prev = np.concatenate([np.zeros_like(hs[:1]), hs[:-1]])
    return xs @ w["weight_ih_l0"].T + w["bias_ih_l0"] + prev @ w["weight_hh_l0"].T + w["bias_hh_l0"]


def test_planted_saturated_forget_gates_are_found_with_the_exact_share():
    torch.manual_seed(2)
    lstm = nn.LSTM(4, 8)
    model = _Reader(lstm)
    x = torch.randn(10, 6, 4)
    with watch(model) as probe:
        model(x).backward()
        silent = probe.findings()
    assert "saturated_gates" not in _kinds(silent)
    with torch.no_grad():
        lstm.bias_ih_l0[8:16] += 8.0  # the forget gate's bias (gates are stacked i, f, g, o)
        lstm.bias_ih_l0[:4] -= 6.0  # half the input gate's units
    pre = _gate_preactivations(lstm, x)
    region = gf.activations.CATALOG["sigmoid"].saturated_region()
    def share(z):
        return float(np.mean([any((lo is None or v >= lo) and (hi is None or v <= hi) for lo, hi in region)
                              for v in z.reshape(-1)]))
    with watch(model) as probe:
        model(x).backward()
        rows = {r["layer"]: r for r in probe.flush()}
        found = {f.kind: f for f in probe.findings()}
    for gate, cols in (("input", slice(0, 8)), ("forget", slice(8, 16)), ("cell", slice(16, 24))):
        assert rows[f"rnn.l0:{gate}"]["saturated"] == pytest.approx(share(pre[..., cols]), abs=1.5 / pre[..., cols].size)
    assert rows["rnn.l0:forget"]["saturated"] > 0.3 and rows["rnn.l0:cell"]["saturated"] < 0.3
    assert "rnn.l0:forget" in found["saturated_gates"].layers and "rnn.l0:cell" not in found["saturated_gates"].layers


def test_vanishing_and_exploding_gradients_through_time_are_found_and_a_carried_gradient_is_silent():
    torch.manual_seed(3)
    x = torch.randn(25, 4, 3)

    def findings_of(rnn):
        model = _Reader(rnn)
        with watch(model) as probe:
            model(x).backward()
            return {f.kind: f for f in probe.findings()}, next(r for r in probe.flush() or probe.history().to_dict("records")
                                                             if r["layer"] == "rnn.l0")

    small = nn.RNN(3, 16)
    with torch.no_grad():
        small.weight_hh_l0.mul_(0.2)
    found, row = findings_of(small)
    assert found["vanishing_through_time"].numbers["ratio"] == pytest.approx(row["time_grad_ratio"])
    assert row["time_grad_ratio"] < findings.VANISHED

    growing = nn.RNN(3, 16, nonlinearity="relu", bias=False)
    with torch.no_grad():
        growing.weight_hh_l0.copy_(1.4 * torch.eye(16))
        growing.weight_ih_l0.abs_()
    found, row = findings_of(growing)
    assert "exploding_through_time" in found and row["time_grad_ratio"] > findings.EXPLODED

    carried = nn.GRU(3, 16)
    with torch.no_grad():
        carried.bias_hh_l0[16:32] = 12.0  # the update gate near 1: h_t is carried unchanged
    found, row = findings_of(carried)
    assert not {"vanishing_through_time", "exploding_through_time"} & set(found)
    assert found["saturated_gates"].numbers == {"rnn.l0:update": 1.0}  # planted through the gate's bias
    assert 0.5 < row["time_grad_ratio"] <= 1.0 + 1e-6


def test_training_with_a_probed_lstm_is_bit_identical_and_leaves_no_hook(tmp_path):
    def train(probed: bool):
        torch.manual_seed(4)
        model = _Reader(nn.LSTM(3, 8, num_layers=2, batch_first=True), every_step=True)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        x = torch.randn(5, 6, 3)
        probe = watch(model, every=2) if probed else None
        for _ in range(5):
            opt.zero_grad()
            model(x).backward()
            opt.step()
        if probe is not None:
            probe.flush(gf.store.Run.create(tmp_path / "r", {}))
            probe.detach()
            assert not model.rnn._forward_hooks and not model._forward_pre_hooks
        return [p.detach().clone() for p in model.parameters()], probe

    bare, _ = train(False)
    probed, probe = train(True)
    assert all(torch.equal(a, b) for a, b in zip(bare, probed))
    run = gf.store.Run(tmp_path / "r")
    stored = run.table("time_gradients").to_pylist()
    assert {r["layer"] for r in stored} == {"rnn.l0", "rnn.l1"} and max(r["t"] for r in stored) == 6
    rows = findings.from_long(run.table("probes").to_pylist(), run.table("probe_layers").to_pylist(), stored)
    l0 = next(r for r in rows if r["layer"] == "rnn.l0")
    assert l0["time_grad"] == pytest.approx(next(r for r in probe.history().to_dict("records")
                                                 if r["layer"] == "rnn.l0")["time_grad"])


class _Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.head = nn.LSTM(3, 4), nn.Linear(4, 1)

    def forward(self, packed):
        return self.head(self.lstm(packed)[1][0][-1]).sum()


def test_packed_sequences_are_listed_as_not_probed():
    model = _Packed()
    with watch(model) as probe:
        assert "lstm" not in dict(probe.skipped)
        model(nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])).backward()
        assert dict(probe.skipped)["lstm"].startswith("LSTM: PackedSequence")


class _Decoder(nn.Module):
    """A cell stepped by the model's own loop, as seq2seq decoders are written."""

    def __init__(self, cell):
        super().__init__()
        self.cell, self.head = cell, nn.Linear(cell.hidden_size, 1)

    def forward(self, x):
        state = None
        for t in range(x.shape[0]):
            state = self.cell(x[t], state)
        return self.head(state[0] if isinstance(state, tuple) else state).sum()


@pytest.mark.parametrize("cell, layer", [(nn.LSTMCell, nn.LSTM), (nn.GRUCell, nn.GRU), (nn.RNNCell, nn.RNN)])
def test_cells_stepped_by_the_models_loop_get_the_same_gate_rows_as_the_layer(cell, layer):
    """The same weights as a cell in a Python loop and as the fused layer: the same gate statistics."""
    torch.manual_seed(8)
    looped, fused = _Decoder(cell(3, 6)), _Reader(layer(3, 6))
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fused.rnn, name + "_l0").copy_(getattr(looped.cell, name))
        if cell is nn.LSTMCell:
            looped.cell.bias_ih[6:12] += 8.0  # a forget gate planted saturated in both
            fused.rnn.bias_ih_l0[6:12] += 8.0
    x = torch.randn(7, 4, 3)
    rows = []
    for model in (looped, fused):
        with watch(model) as probe:
            model(x).backward()
            rows.append({r["layer"].replace("rnn.l0", "cell"): r for r in probe.flush()})
            found = {f.kind for f in probe.findings()}
        assert ("saturated_gates" in found) == (cell is nn.LSTMCell)
    gates = [name for name in rows[1] if name.startswith("cell:")]
    assert gates and all(rows[0][g]["saturated"] == pytest.approx(rows[1][g]["saturated"]) for g in gates)
    assert all(rows[0][g]["act_mean"] == pytest.approx(rows[1][g]["act_mean"], rel=1e-5) for g in gates)
