import math

import pytest
import torch
from torch import nn

import gradientflow as gf
from gradientflow.probes import findings, watch


def _step(net, x, y=None, opt=None):
    net.zero_grad()
    out = net(x)
    loss = nn.functional.cross_entropy(out, y) if y is not None else out.pow(2).mean()
    if opt:
        opt.zero_grad()
    loss.backward()
    if opt:
        opt.step()


def _row(summary, layer):
    return summary.set_index("layer").loc[layer]


def test_planted_dead_units_are_counted_exactly():
    net = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 2))
    with torch.no_grad():
        net[0].weight.normal_(0, 0.1)
        net[0].bias[:4] = -100.0  # never active
        net[0].bias[4:] = 100.0   # always active
    with watch(net) as probe:
        for _ in range(5):
            _step(net, torch.randn(32, 4))
    row = _row(probe.summary(), "0")
    assert row["dead"] == 0.4 and row["zero"] == pytest.approx(0.4)


@pytest.mark.parametrize("exact", [True, False])
def test_moments_histogram_and_zero_match_direct_computation(exact):
    """Exact: the histogram of the documented strided sample and the saturated share of the whole
    batch. Default: both counted on the documented strided rows, the share within Hoeffding's bound
    of the whole batch's; the moments are the whole batch's either way."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 3))
    x = torch.randn(200, 8)
    with watch(net, bins=20, exact=exact) as probe:
        _step(net, x)
    h = torch.tanh(net[0](x)).detach()
    z = net[0](x).detach()
    s = probe.summary()
    row = _row(s, "0")
    assert row["act_mean"] == pytest.approx(h.mean().item(), abs=1e-6)
    assert row["act_std"] == pytest.approx(h.std(correction=0).item(), rel=1e-5)
    assert (row["hist_lo"], row["hist_hi"]) == (-1.0, 1.0)
    counts = torch.tensor(probe.history()["hist"][0])
    rows = slice(None) if exact else slice(None, None, -(-200 // gf.probes.probe.SHARE_ROWS))  # every 7th sample
    sample = h[rows].reshape(-1)[:: -(-h[rows].numel() // 8192)]  # the documented strided sample
    assert torch.equal(counts, torch.histc(sample, 20, -1, 1))
    band = gf.properties.saturated_region(gf.activations.get("tanh"))[1][0]
    assert row["saturated"] == pytest.approx((z[rows].abs() >= band).float().mean().item())
    bound = math.sqrt(math.log(2 / 0.05) / (2 * len(z[rows])))
    assert abs(row["saturated"] - (z.abs() >= band).double().mean().item()) <= (1e-12 if exact else bound)
    assert list(s["layer"]) == ["0", "2"] and s["activation"].isna().tolist() == [False, True]


def test_row_sampled_shares_stay_within_hoeffdings_bound_over_a_window():
    """A relu layer whose units' activity is strongly correlated within a sample (the worst case
    for a bound over samples): over 40 sampled steps of 512-sample batches, the sampled zero share
    is within sqrt(ln(2/delta)/(2 R k)) of the exact one, for 20 seeds at delta = 0.05 (1 miss allowed)."""
    misses = 0
    for seed in range(20):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Linear(50, 1))
        with torch.no_grad():
            net[0].weight.fill_(1.0)  # every unit is on exactly when the sample's x is above -bias
            net[0].bias.uniform_(-0.1, 0.1)
        shares = []
        for exact in (True, False):
            torch.manual_seed(100 + seed)
            with watch(net, exact=exact) as probe:
                for _ in range(40):
                    _step(net, torch.randn(512, 1))
                shares.append(_row(probe.summary(), "0")["zero"])
        bound = math.sqrt(math.log(2 / 0.05) / (2 * gf.probes.probe.SHARE_ROWS * 40))
        misses += abs(shares[0] - shares[1]) > bound
    assert misses <= 1


def test_sign_coherence_is_one_after_sigmoid_at_batch_one_and_lower_after_tanh():
    torch.manual_seed(0)
    results = {}
    for act in (nn.Sigmoid(), nn.Tanh()):
        net = nn.Sequential(nn.Linear(5, 20), act, nn.Linear(20, 3))
        with watch(net) as probe:
            for _ in range(10):
                _step(net, torch.randn(1, 5), torch.randint(0, 3, (1,)))
        results[type(act).__name__] = _row(probe.summary(), "2")["sign_coherence"]
    assert results["Sigmoid"] == 1.0
    assert results["Tanh"] < 0.8


def test_deep_sigmoid_weight_gradients_vanish_towards_the_input():
    net = gf.mlp(100, 100, 10, 10, activation="sigmoid", init_name="xavier", generator=torch.Generator().manual_seed(0))
    with watch(net) as probe:
        _step(net, torch.randn(256, 100), torch.randint(0, 10, (256,)))
    s = probe.summary()
    hidden = s[s["activation"] == "sigmoid"]
    assert hidden["weight_grad_norm"].iloc[0] < 1e-2 * hidden["weight_grad_norm"].iloc[-1]


def test_tiny_tanh_init_vanishes_in_act_gradients_not_in_weight_gradients():
    net = gf.mlp(100, 100, 10, 10, activation="tanh", init_name="normal", scale=gf.Scale(std=0.01),
                 generator=torch.Generator().manual_seed(0))
    with watch(net) as probe:
        _step(net, torch.randn(256, 100), torch.randint(0, 10, (256,)))
    hidden = probe.summary().query("activation == 'tanh'")
    act, weight = hidden["act_grad_norm"].to_numpy(), hidden["weight_grad_norm"].to_numpy()
    assert act[0] < 1e-6 * act[-1]  # dL/dh shrinks by about 0.1 per layer towards the input
    assert weight.max() / weight.min() < 10  # ... while dL/dW = delta h' stays about as tiny everywhere


def test_zero_initialised_layer_has_one_distinct_unit():
    net = gf.mlp(6, 16, 2, 3, activation="tanh", init_name="zeros")
    with watch(net) as probe:
        _step(net, torch.randn(8, 6), torch.randint(0, 3, (8,)))
    s = probe.summary()
    assert list(s["distinct_units"][:2]) == [1, 1]
    fresh = gf.mlp(6, 16, 2, 3, activation="tanh", init_name="xavier")
    with watch(fresh) as probe:
        _step(fresh, torch.randn(8, 6), torch.randint(0, 3, (8,)))
    assert probe.summary()["distinct_units"].iloc[0] == 16


def test_glorot_ratios_match_fan_times_weight_variance():
    torch.manual_seed(0)
    layer = nn.Linear(400, 300, bias=False)
    nn.init.normal_(layer.weight, 0, 0.05)
    net = nn.Sequential(layer)
    x = torch.randn(2000, 400, requires_grad=True)
    with watch(net) as probe:
        (net(x) * torch.randn(2000, 300)).sum().backward()
    row = _row(probe.summary(), "0")
    assert row["glorot_forward"] == pytest.approx(400 * 0.05**2, rel=0.05)  # Glorot & Bengio eq. 10: n_in Var W
    assert row["glorot_backward"] == pytest.approx(300 * 0.05**2, rel=0.05)  # eq. 11: n_out Var W


def test_update_ratio_is_the_relative_weight_change():
    net = nn.Sequential(nn.Linear(3, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with watch(net, update_every=1) as probe:
        _step(net, torch.randn(8, 3), opt=opt)
        before = net[0].weight.detach().clone()
        _step(net, torch.randn(8, 3), opt=opt)
        after = net[0].weight.detach().clone()
        _step(net, torch.randn(8, 3), opt=opt)  # its forward measures the step between
    ratio = _row(probe.summary(), "0")["update_ratio"]
    expected_last = ((after - before).norm() / before.norm()).item()
    assert 0 < ratio and math.isfinite(ratio)
    assert ratio == pytest.approx(expected_last, rel=1.0)  # the mean over the measured steps, same order


def test_sampling_every_k_steps_and_eval_passes_are_not_steps():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with watch(net, every=10) as probe:
        for _ in range(25):
            _step(net, torch.randn(8, 3))
        with torch.no_grad():
            net(torch.randn(8, 3))
    s = probe.summary()
    assert probe.step == 25 and s["sampled_steps"].iloc[0] == 3  # steps 1, 11, 21


def test_windows_close_on_their_own():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with watch(net, window=4) as probe:
        for _ in range(10):
            _step(net, torch.randn(8, 3))
    probe.flush()
    h = probe.history()
    assert sorted(set(h["last_step"])) == [4, 8, 10] and sorted(set(h["first_step"])) == [1, 5, 9]


def test_watch_a_small_cnn_and_a_transformer_layer():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Tanh(), nn.Flatten(), nn.Linear(96, 3))
    with watch(cnn) as probe:
        _step(cnn, torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))
    s = probe.summary()
    assert list(s["type"]) == ["Conv2d", "Conv2d", "Linear"] and list(s["units"]) == [4, 6, 3]
    assert list(s["activation"][:2]) == ["relu", "tanh"] and s["act_grad_norm"].notna().all()
    block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    with watch(block) as probe:
        _step(block, torch.randn(4, 5, 16))
    s = probe.summary()
    assert list(s["layer"]) == ["self_attn:head0", "self_attn:head1", "norm1", "linear1", "linear1:relu", "linear2",
                                "norm2"]  # relu: called as a function
    linear = s[s["type"] == "Linear"]
    assert linear["weight_grad_norm"].notna().all() and s.loc[4, "activation"] == "relu" and s.loc[4, "dead"] == 0.0


def test_filters_by_type_name_and_predicate():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert [l.name for l in watch(net, layers=["2"]).layers] == ["2"]
    assert len(watch(net, layers=(nn.Linear,)).layers) == 3
    assert [l.name for l in watch(net, layers=lambda n, m: n == "4").layers] == ["4"]
    with pytest.raises(ValueError, match="no layers to probe"):
        watch(net, layers=["nope"])
    with pytest.raises(ValueError, match="every=0"):
        watch(net, every=0)


def _hook_count(net):
    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules())
    return n + sum(len(p._post_accumulate_grad_hooks or {}) for p in net.parameters()
                   if getattr(p, "_post_accumulate_grad_hooks", None) is not None)


def test_leaving_watch_removes_every_hook_and_changes_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    plain = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    plain.load_state_dict(net.state_dict())
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    with watch(net) as probe:
        assert _hook_count(net) > 0
        for m, opt in ((net, torch.optim.SGD(net.parameters(), lr=0.1)),):
            for _ in range(3):
                _step(m, x, y, opt)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    for _ in range(3):
        _step(plain, x, y, opt)
    assert _hook_count(net) == 0
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), plain.parameters()))  # probes only observe
    assert len(probe.summary()) == 2


def test_findings_name_dead_units_and_vanishing_gradients():
    rows = [
        {"layer": "0", "last_step": 10, "first_step": 1, "activation": "relu", "act_std": 1.0, "dead": 0.0,
         "act_grad_norm": 1e-7, "units": 8, "distinct_units": 8},
        {"layer": "0", "last_step": 20, "first_step": 11, "activation": "relu", "act_std": 1.0, "dead": 0.43,
         "act_grad_norm": 1e-7, "units": 8, "distinct_units": 8},
        {"layer": "2", "last_step": 20, "first_step": 11, "activation": "relu", "act_std": 1.0, "dead": 0.0,
         "act_grad_norm": 0.1, "units": 8, "distinct_units": 1},
    ]
    found = {f.kind: f for f in findings.analyse(rows)}
    assert found["dead"].message == "layer 0: 43% dead units since step 11"
    assert found["vanishing"].message == "layers 0: gradient 1e-06 of layer 2's (norm of dL/d output)"
    assert "symmetry" in found and "saturated" not in found


def test_stored_probe_tables_read_back_as_the_windows_rows(tmp_path):
    """The writer's melt/explode and findings' pivot are inverses: stored rows read back as the rows."""
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    run = gf.store.Run.create(tmp_path / "r", {})
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    with watch(net, window=2) as probe:
        for _ in range(4):
            _step(net, x, y)
        probe.flush(run)
        rows = probe.history().to_dict("records")
    back = findings.from_long(run.table("probes").to_pylist(), run.table("probe_layers").to_pylist())
    assert [(r["layer"], r["last_step"]) for r in back] == [(r["layer"], r["last_step"]) for r in rows]
    for got, want in zip(back, rows):
        for k, v in want.items():
            if k in ("hist", "hist_lo", "hist_hi"):
                continue
            missing = lambda a: a is None or (isinstance(a, float) and math.isnan(a))  # noqa: E731 (pandas: None -> NaN)
            assert got[k] == v or (missing(v) and missing(got[k])), k
    hists = findings.histograms(run.table("histograms").to_pylist())
    lo, hi, counts = hists[(4, "0")]
    last = next(r for r in rows if r["layer"] == "0" and r["last_step"] == 4)
    assert (lo, hi) == pytest.approx((last["hist_lo"], last["hist_hi"])) and counts == last["hist"]


class _Functional(nn.Module):
    """Activations called as functions and as a Tensor method; a softmax read-out."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 20), nn.Linear(20, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = nn.functional.relu(self.a(x))
        h = torch.tanh(self.b(h))
        return self.c(h.sigmoid()).softmax(-1)


def test_functional_activations_are_probed_with_planted_pathologies_found_exactly():
    torch.manual_seed(0)
    net = _Functional()
    with torch.no_grad():
        net.a.bias[:5] = -1e3  # 5 of 20 ReLU units never active: dead 0.25
        net.b.weight.mul_(1e-3)
        net.b.bias.zero_()
        net.b.bias[:6] = 50.0  # 6 of 16 tanh units saturated on every sample: saturated 0.375
    with watch(net) as probe:
        for _ in range(3):
            _step(net, torch.randn(32, 8))
    s = probe.summary().set_index("layer")
    # named after the module whose output they take, else after the module running them (the root: "model")
    assert list(s.index) == ["a", "a:relu", "b", "b:tanh", "model:sigmoid", "c", "c:softmax"]
    assert s.loc["a:relu", "dead"] == 0.25 and s.loc["a:relu", "activation"] == "relu"
    assert s.loc["b:tanh", "saturated"] == 0.375 and s.loc["b:tanh", "dead"] == 0.0
    assert s.loc["c:softmax", "activation"] == "softmax" and math.isnan(s.loc["c:softmax", "dead"])
    assert (s.loc[["a:relu", "b:tanh", "model:sigmoid"], "type"] == "function").all()
    assert s.loc[["a:relu", "b:tanh", "model:sigmoid"], "act_grad_norm"].notna().all()
    found = {f.kind: f for f in probe.findings()}
    assert found["dead"].layers == ["a:relu"] and found["saturated"].layers == ["b:tanh"]
    torch.manual_seed(0)
    healthy = _Functional()  # nothing planted: the same rules stay silent
    with watch(healthy) as probe:
        for _ in range(3):
            _step(healthy, torch.randn(32, 8))
    kinds = {f.kind for f in probe.findings()}
    assert "dead" not in kinds and "saturated" not in kinds


def test_a_model_without_functional_calls_pays_for_one_look_only_and_nothing_leaks():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with watch(net) as probe:
        _step(net, torch.randn(16, 4))
        assert probe._looked and not probe._look and not probe._calls.active  # looked once, found nothing
        _step(net, torch.randn(16, 4))
    assert list(probe.summary()["layer"]) == ["0", "2"]
    assert not torch._C._is_torch_function_mode_enabled()
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks

    class Breaks(_Functional):
        def forward(self, x):
            nn.functional.relu(self.a(x))
            raise RuntimeError("broken forward")

    broken = Breaks()
    with watch(broken):
        with pytest.raises(RuntimeError, match="broken forward"):
            broken(torch.randn(2, 8))
        assert not torch._C._is_torch_function_mode_enabled()  # the mode left with the failed forward
    assert _hook_count(broken) == 0 and not nn.modules.module._global_forward_hooks


def test_training_with_functional_probes_stays_bit_identical():
    def train(probed):
        torch.manual_seed(1)
        net = _Functional()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        xs = torch.randn(5, 16, 8, generator=torch.Generator().manual_seed(2))
        with watch(net, every=2) if probed else _nothing():
            for x in xs:
                _step(net, x, opt=opt)
        return [p.detach().clone() for p in net.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(train(False), train(True)))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_skipped_names_every_module_without_a_row_and_why():
    model = nn.ModuleDict({"emb": nn.Embedding(10, 16), "frozen": nn.Embedding(10, 16).requires_grad_(False),
                           "lstm": nn.LSTM(16, 16), "cell": nn.GRUCell(16, 16), "norm": nn.LayerNorm(16),
                           "head": nn.Linear(16, 3), "drop": nn.Dropout(0.1)})
    with watch(model) as probe:
        skipped = dict(probe.skipped)
    assert set(skipped) == {"frozen", "drop"}  # the table, the LayerNorm, the LSTM and the cell have rows
    assert "frozen" in skipped["frozen"] and "no weights" in skipped["drop"]


@pytest.mark.parametrize("name", sorted(gf.activations.CATALOG))
def test_count_in_region_counts_what_numpy_counts_for_every_catalog_region(name):
    import numpy as np

    from gradientflow.probes import stats

    act = gf.activations.CATALOG[name]
    z = torch.randn(4000) * 6
    for region in (act.saturated_region(), act.dead_region()):
        lows = sorted((-math.inf if lo is None else lo, math.inf if hi is None else hi) for lo, hi in region)
        assert all(a[1] < b[0] for a, b in zip(lows, lows[1:])), "catalog regions must be disjoint"
        expected = sum(int(np.count_nonzero((z.numpy() >= lo) & (z.numpy() <= hi))) for lo, hi in lows)
        assert int(stats.count_in_region(z, region)) == expected


def test_report_page_and_notebook_view(tmp_path):
    torch.manual_seed(0)
    net = _Functional()
    with torch.no_grad():
        net.a.bias[:5] = -1e3
    with watch(net, window=2) as probe:
        for _ in range(5):
            _step(net, torch.randn(32, 8))
        view = probe._repr_html_()  # the notebook view closes nothing
        assert probe.step == 5 and probe._window_start == 5
        assert "<table" in view and "a:relu" in view and "1 step(s) in the open window" in view
        path = probe.report(tmp_path / "probe.html")
    html = path.read_text()
    assert html.count('<img src="data:image/png;base64,') == 4
    assert "25% dead units" in html and "a:relu" in html
    assert "No window closed yet" in watch(nn.Sequential(nn.Linear(2, 2)))._repr_html_()

    odd = nn.Sequential()
    odd.add_module("<i>w</i>", nn.Linear(4, 4))  # a module name is text, never markup
    with watch(odd) as probe:
        _step(odd, torch.randn(3, 4))
    html = probe.report(tmp_path / "odd.html").read_text()
    assert "<i>w</i>" not in html and "&lt;i&gt;w&lt;/i&gt;" in html


def test_normalisation_rows_show_the_input_they_rescale_and_a_hidden_collapse_is_found():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 8),
                        nn.LayerNorm(8), nn.Linear(8, 3))
    seen = {}
    for i in (1, 5):
        cnn[i].register_forward_hook(lambda m, inp, out, i=i: seen.update({i: (inp[0].detach(), out.detach())}))
    x = torch.randn(16, 1, 8, 8)
    with watch(cnn) as probe:
        _step(cnn, x)
    s = probe.summary().set_index("layer")
    assert list(s.loc[["1", "5"], "type"]) == ["BatchNorm2d", "LayerNorm"]
    for i in (1, 5):
        z, h = seen[i]
        assert s.loc[str(i), "in_std"] == pytest.approx(z.double().std(correction=0).item(), rel=1e-5)
        assert s.loc[str(i), "act_std"] == pytest.approx(h.double().std(correction=0).item(), rel=1e-5)
    assert "hidden_scale" not in {f.kind for f in probe.findings()}  # a healthy net: the rule stays silent
    with torch.no_grad():
        cnn[0].weight.mul_(1e-4)  # the convolution's output collapses; BatchNorm scales it back up
        cnn[0].bias.zero_()
    with watch(cnn) as probe:
        _step(cnn, x)
    found = {f.kind: f for f in probe.findings()}
    assert found["hidden_scale"].layers == ["1"] and "hides a collapsed signal" in found["hidden_scale"].message


@pytest.mark.parametrize("masks", ["none", "causal", "padding"])
def test_attention_heads_match_the_modules_own_weights_and_a_planted_collapse_is_found(masks):
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, batch_first=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.out = attn, nn.Linear(16, 3)

        def forward(self, x, **kw):
            return self.out(self.attn(x, x, x, need_weights=False, **kw)[0])

    block, x = Block(), torch.randn(3, 6, 16)
    kw = {"none": {}, "causal": {"attn_mask": nn.Transformer.generate_square_subsequent_mask(6), "is_causal": True},
          "padding": {"key_padding_mask": torch.tensor([[False] * 4 + [True] * 2] * 3)}}[masks]

    def expected():  # the module's own weights, per head
        with torch.no_grad():
            _, w = attn(x, x, x, need_weights=True, average_attn_weights=False, **kw)  # (N, H, L, S)
        entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)
        return entropy.mean((0, 2)).double(), (w.amax(-1) > 0.99).double().mean((0, 2))

    for scale in (1.0, 30.0):  # as initialised; then queries scaled up until the heads collapse
        with torch.no_grad():
            attn.in_proj_weight[:16].mul_(scale)
        with watch(block) as probe:
            block(x, **kw).pow(2).mean().backward()
        s = probe.summary().set_index("layer")
        entropy, collapsed = expected()
        heads = [f"attn:head{h}" for h in range(4)]
        assert list(s.loc[heads, "type"]) == ["attention head"] * 4
        assert s.loc[heads, "attn_entropy"].tolist() == pytest.approx(entropy.tolist(), rel=1e-4, abs=1e-6)
        assert s.loc[heads, "attn_collapsed"].tolist() == pytest.approx(collapsed.tolist())
        kinds = {f.kind for f in probe.findings()}
        assert ("attention_collapse" in kinds) == (scale > 1), (scale, collapsed.tolist())


class _CausalBlock(nn.Module):
    """A GPT-style block written as people write it: fused qkv, F.scaled_dot_product_attention, a GELU MLP."""

    def __init__(self, d=16, heads=4):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, mask=None):
        N, L, d = x.shape
        q, k, v = (t.reshape(N, L, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        kw = {"attn_mask": mask} if mask is not None else {"is_causal": True}
        a = nn.functional.scaled_dot_product_attention(q, k, v, **kw).transpose(1, 2).reshape(N, L, d)
        x = x + self.proj(a)
        return x + self.fc2(nn.functional.gelu(self.fc1(x)))


@pytest.mark.parametrize("masked", ["causal", "boolean"])
def test_scaled_dot_product_attention_calls_get_head_rows_that_match_a_manual_softmax(masked):
    torch.manual_seed(5)
    block, x = _CausalBlock(), torch.randn(2, 7, 16)
    keep = torch.ones(7, 7, dtype=torch.bool).tril() if masked == "causal" else torch.rand(7, 7) > 0.3
    keep |= torch.eye(7, dtype=torch.bool)  # every query sees at least itself
    mask = None if masked == "causal" else keep

    def expected():
        with torch.no_grad():
            q, k, _ = (t.reshape(2, 7, 4, 4).transpose(1, 2) for t in block.qkv(x).chunk(3, -1))
            logits = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~keep, -math.inf)
            w = logits.softmax(-1)
        entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)
        return entropy.mean((0, 2)).double(), (w.amax(-1) > 0.99).double().mean((0, 2))

    for scale in (1.0, 40.0):
        with torch.no_grad():
            block.qkv.weight[:16].mul_(scale)
        with watch(block) as probe:
            block(x, mask).pow(2).mean().backward()
            s = probe.summary().set_index("layer")
            found = {f.kind for f in probe.findings()}
        entropy, collapsed = expected()
        heads = [f"model:attention:head{h}" for h in range(4)]
        assert s.loc[heads, "attn_entropy"].tolist() == pytest.approx(entropy.tolist(), rel=1e-4, abs=1e-6)
        assert s.loc[heads, "attn_collapsed"].tolist() == pytest.approx(collapsed.tolist())
        assert s.loc["fc1:gelu", "activation"] == "gelu" and s.loc["fc1:gelu", "units"] == 64
        assert ("attention_collapse" in found) == (scale > 1)


def test_a_chosen_subset_of_statistics_does_only_that_and_user_statistics_are_columns():
    from gradientflow.probes import Statistic

    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.randn(32, 6)
    peak = Statistic("act_peak", "activation", lambda h: h.abs().amax())
    grad_rms = Statistic("grad_rms", "activation_grad", lambda g: g.pow(2).mean().sqrt())
    wmax = Statistic("wgrad_max", "weight_grad", lambda g: g.abs().amax())
    with watch(net, stats=["dead", peak, grad_rms, wmax]) as probe:
        hs, gs = [], []

        def keep(module, inputs, h):  # what the probe should see: h and, in the backward pass, dL/dh
            hs.append(h.detach())
            if h.requires_grad:
                h.register_hook(gs.append)
        net[1].register_forward_hook(keep)
        for _ in range(3):
            _step(net, x)
        s = probe.summary().set_index("layer")
    assert "hist" not in probe.history() and "saturated" not in s and "act_grad_norm" not in s and "dead" in s
    assert s.loc["0", "act_peak"] == pytest.approx(float(torch.stack([h.abs().amax() for h in hs]).mean()), rel=1e-6)
    assert s.loc["0", "grad_rms"] == pytest.approx(float(torch.stack([g.pow(2).mean().sqrt() for g in gs]).mean()), rel=1e-6)
    assert s.loc["2", "wgrad_max"] == pytest.approx(float(net[2].weight.grad.abs().amax()), rel=1e-6)  # x fixed: same each step
    with torch.no_grad():  # the read-out feeds no activation: its h is its output z (no optimiser: the same each step)
        assert s.loc["2", "act_peak"] == pytest.approx(float(net(x).abs().amax()), rel=1e-6)
    with pytest.raises(ValueError, match="unknown statistic 'histogramm'"):
        watch(net, stats=["histogramm"])
    with pytest.raises(ValueError, match="must be one of input"):
        Statistic("x", "output", abs)
    with pytest.raises(ValueError, match="'rowwise' must return a one-element tensor on the device, got shape"):
        with watch(net, stats=[Statistic("rowwise", "activation", lambda h: h.mean(0))]):
            _step(net, x)
    with pytest.raises(ValueError, match="nothing to probe"):
        watch(nn.Sequential(nn.Tanh()))


def test_dead_channels_of_a_cnn_with_batchnorm_and_symmetric_maxout_units_are_found_exactly():
    """Two of four channels planted dead through BatchNorm's shift (ReLU reads BatchNorm's output):
    dead share exactly 0.5 for the convolution's row. A maxout MLP initialised to zeros: every
    unit a copy of one, found as symmetry (C14) with one distinct unit."""
    torch.manual_seed(7)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    x = torch.randn(16, 1, 8, 8)
    with watch(cnn) as probe:
        _step(cnn, x)
        assert _row(probe.summary(), "0")["dead"] == 0.0
    with torch.no_grad():
        cnn[1].bias[:2] = -100.0
    with watch(cnn) as probe:
        _step(cnn, x)
        row = _row(probe.summary(), "0")
        found = {f.kind: f for f in probe.findings()}
    assert row["dead"] == 0.5 and found["dead"].layers == ["0"]

    net = gf.mlp(5, 6, 2, 3, activation="maxout", init_name="zeros")
    with watch(net) as probe:
        _step(net, torch.randn(8, 5))
        s = probe.summary().set_index("layer")
    hidden = [name for name in s.index if s.loc[name, "activation"] == "maxout"]
    assert hidden and all(s.loc[name, "distinct_units"] == 1 for name in hidden)
    assert set(hidden) <= {name for f in probe.findings() if f.kind == "symmetry" for name in f.layers}


def test_layers_chooses_every_kind_of_row_by_name_glob_type_or_predicate():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0), 2,
                                enable_nested_tensor=False)
    x = torch.randn(3, 5, 16)

    def rows(layers):
        with watch(enc, layers=layers) as probe:
            enc(x).pow(2).mean().backward()
            return list(probe.summary()["layer"]), dict(probe.skipped)

    chosen, skipped = rows(["layers.1.*"])
    assert chosen and all(name.startswith("layers.1.") for name in chosen)
    assert {"layers.1.self_attn:head0", "layers.1.norm1", "layers.1.linear1", "layers.1.linear1:relu"} <= set(chosen)
    assert "not chosen by layers=" in skipped["layers.0.linear1"] and "not chosen" in skipped["layers.0.norm2"]
    chosen, _ = rows((nn.LayerNorm,))
    assert set(chosen) == {f"layers.{i}.norm{j}" for i in (0, 1) for j in (1, 2)}
    chosen, _ = rows(lambda name, module: name.endswith("linear1"))
    assert set(chosen) == {"layers.0.linear1", "layers.0.linear1:relu", "layers.1.linear1", "layers.1.linear1:relu"}
    with pytest.raises(ValueError, match="matches no layer"):
        watch(enc, layers=["decoder.*"])


def test_history_past_keep_windows_is_thinned_not_dropped_and_says_so():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    with watch(net, window=1, keep_windows=8) as probe:
        with pytest.warns(UserWarning, match="thinning the older half"):
            for _ in range(40):
                _step(net, x)
            probe.flush()
    ends = sorted(set(probe.history()["last_step"]))
    assert len(ends) <= 8 and ends[0] == 1 and ends[-1] == 40  # the whole span, at a coarser grain
    assert probe.thinned == 40 - len(ends)
    assert probe.history().groupby("last_step").size().eq(2).all()  # a kept window keeps all its rows


def test_two_probes_training_in_two_threads_keep_their_own_rows():
    """The functional-call tracking hooks every module of the process (torch's global module hooks):
    each probe keeps to its own thread, so two nets trained at once (two lab tabs) see their own rows."""
    import threading

    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.b(torch.nn.functional.relu(self.a(x)))

    def train(net, out, steps=60):
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        with gf.watch(net, every=1) as probe:
            for _ in range(steps):
                opt.zero_grad()
                net(torch.randn(32, 8)).sum().backward()
                opt.step()
            out.append(list(probe.summary()["layer"]))

    alone = {}
    for name, make in (("modules", lambda: torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                                                  torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                                                  torch.nn.Linear(16, 2))),
                       ("functional", Functional)):
        rows = []
        train(make(), rows)
        alone[name] = rows[0]
    together = {"modules": [], "functional": []}
    threads = [threading.Thread(target=train, args=(m, together[n]), kwargs={"steps": 300})
               for n, m in (("modules", torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                                            torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                                            torch.nn.Linear(16, 2))),
                            ("functional", Functional()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together["modules"] == [alone["modules"]] and together["functional"] == [alone["functional"]]
    assert alone["modules"] == ["0", "2", "4"] and alone["functional"] == ["a", "a:relu", "b"]
