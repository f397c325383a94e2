"""Golden outputs of the probes: what ``history()``, ``summary()``, ``findings()``, ``skipped`` and the
stored tables give on a fixed set of models and loops (issue 28: the probes' rewrite must give the same
numbers). ``python tests/probe_golden.py`` records them into ``tests/data/golden_probes.json.gz``;
``test_probe_golden.py`` compares the current code against that file.

History of the file: recorded first with the code before issue 28's rewrite, which reproduced it
bit for bit (commit "probes as one mechanism"); re-recorded after issue 29, whose changes to these
scenarios were checked to be the intended ones only: the columns ``nonfinite_step`` and
``nonfinite_grad_step`` added, ``sign_coherence`` NaN for units of fewer than 16 weights, and the
findings' new rules (``off_centre`` named only as a measured zig-zag's cause).

Floats are stored as ``repr`` round-trips them (NaN and infinities as strings), so the file records
the numbers bit for bit; the test compares bit for bit with ``GF_GOLDEN_EXACT=1`` (the same machine
that recorded them) and to 1e-5 relative otherwise (other CPU kernels change float32 sums).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

GOLDEN = Path(__file__).parent / "data" / "golden_probes.json.gz"


class _Run:
    """A stand-in for ``store.Run`` that keeps what the probe writes, in order."""

    def __init__(self):
        self.written: list = []

    def append_table(self, name, step, table):
        self.written.append([name, step, table.to_pylist()])

    def thin_table(self, name, keep):
        self.written.append(["thin", name, keep])


def _batches(n, shape, classes, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g), torch.randint(0, classes, (shape[0],), generator=g)) for _ in range(n)]


def _loop(model, probe, run, data, lr=0.1, loss=F.cross_entropy):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in data:
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
        if run is not None and probe.step % 4 == 0:
            probe.flush(run)


def _watched(net, batches, options=None, **loop):
    """Train ``net`` on ``batches`` under ``watch(net, **options)``, flushing into a stand-in run: (probe, run)."""
    from gradientflow.probes import watch

    run = _Run()
    with watch(net, **(options or {})) as probe:
        _loop(net, probe, run, batches, **loop)
        return probe, run


def _mlp():
    from gradientflow.probes import Statistic, stats, watch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.Sigmoid(),
                        nn.Linear(32, 4))
    kurt = Statistic("act_kurtosis", "activation", lambda h: ((h - h.mean()) ** 4).mean() / h.var() ** 2)
    gmax = Statistic("grad_max", "weight_grad", lambda g: g.abs().max())
    run = _Run()
    with watch(net, window=3, update_every=2, stats=[*stats.GROUPS, kurt, gmax]) as probe:
        _loop(net, probe, run, _batches(9, (16, 8), 4, 1))
        net.eval()
        net(torch.randn(4, 8))  # not a step
        net.train()
        with torch.no_grad():
            net(torch.randn(4, 8))  # not a step either
        return probe, run


def _mlp_sparse():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 24), nn.LeakyReLU(0.1), nn.Linear(24, 24), nn.ELU(), nn.Linear(24, 3))
    return _watched(net, _batches(11, (12, 6), 3, 2),
                    dict(every=2, exact=True, stats=["gradients", "dead", "updates"], window=4))


def _sampled():
    """Batches larger than the probe's sampled rows (``SHARE_ROWS``) and layers wider than its sampled units."""
    torch.manual_seed(10)
    net = nn.Sequential(nn.Linear(20, 96), nn.Tanh(), nn.Linear(96, 96), nn.ReLU(), nn.Conv1d(1, 4, 5), nn.Hardtanh(),
                        nn.Flatten(), nn.Linear(4 * 92, 5))
    net.insert(4, nn.Unflatten(1, (1, 96)))
    return _watched(net, _batches(9, (80, 20), 5, 11), dict(window=4, update_every=3))


def _cnn_bn():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(16, 5))
    return _watched(net, _batches(6, (8, 3, 8, 8), 5, 3), dict(window=3), lr=0.05)


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = torch.tanh(self.fc2(h))
        h = self.fc3(h).sigmoid() + F.gelu(h) + F.leaky_relu(h, 0.2)
        return F.log_softmax(self.fc4(h), -1) + 0 * torch.softmax(h, -1).sum(-1, keepdim=True)


def _functional():
    torch.manual_seed(3)
    net = _Functional()
    return _watched(net, _batches(5, (10, 8), 4, 4), dict(window=2), loss=F.nll_loss)


def _norms():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(8, 24), nn.LayerNorm(24), nn.GELU(), nn.Linear(24, 24), nn.BatchNorm1d(24),
                        nn.SiLU(), nn.Unflatten(1, (6, 4)), nn.GroupNorm(2, 6), nn.InstanceNorm1d(6, affine=True),
                        nn.Flatten(), nn.Linear(24, 3))
    return _watched(net, _batches(6, (12, 8), 3, 5))


class _MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        e = self.embed(x)
        pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        pad[:, -2:] = True
        a, _ = self.attn(e, e, e, key_padding_mask=pad, need_weights=False)
        return self.head(self.layer(e + a).mean(1))


def _mha():
    torch.manual_seed(5)
    net = _MHA()
    return _watched(net, _batches(6, (4, 7, 6), 3, 6), dict(window=3))


class _CausalBlock(nn.Module):
    def __init__(self, d=16, heads=4):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2, self.head = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.Linear(d, 3)

    def forward(self, x):
        N, L, d = x.shape
        q, k, v = (t.reshape(N, L, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(N, L, d)
        x = x + self.proj(a)
        return self.head((x + self.fc2(F.gelu(self.fc1(x)))).mean(1))


def _sdpa():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(5, 16), _CausalBlock())
    return _watched(net, _batches(6, (3, 7, 5), 3, 7), dict(window=3))


class _Reader(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _lstm():
    torch.manual_seed(7)
    net = _Reader()
    return _watched(net, _batches(5, (3, 9, 4), 3, 8), dict(window=2))


class _Stepped(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell, self.head = nn.GRUCell(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 8)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.head(h)


def _gru_cell():
    torch.manual_seed(8)
    net = _Stepped()
    return _watched(net, _batches(5, (4, 6, 4), 3, 9), dict(window=3))


def _manual():
    from gradientflow.probes import watch

    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    run = _Run()
    with watch(net, steps="manual", window=2, update_every=1) as probe:
        for x, y in _batches(5, (16, 8), 4, 10):
            probe.begin_step()
            opt.zero_grad()
            for part in (slice(0, 8), slice(8, 16)):  # two micro-batches, one optimiser step
                (F.cross_entropy(net(x[part]), y[part]) / 2).backward()
            probe.before_optimizer_step()
            opt.step()
            probe.end_step()
        probe.flush(run)
        return probe, run


def _ddp():
    """The two-process DDP test's rank-0 rows (``ddp_worker``), as its own file records them."""
    import torch.multiprocessing as mp

    sys.path.insert(0, str(Path(__file__).parent))
    import ddp_worker

    with tempfile.TemporaryDirectory() as folder:
        os.environ["GF_TEST_PORT"] = str(_free_port())
        mp.spawn(ddp_worker.rank_main, args=(2, folder), nprocs=2, join=True)
        return [json.loads((Path(folder) / f"rank{r}.json").read_text()) for r in (0, 1)]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCENARIOS = {"mlp": _mlp, "mlp_sparse": _mlp_sparse, "sampled": _sampled, "cnn_bn": _cnn_bn, "functional": _functional, "norms": _norms,
             "mha": _mha, "sdpa": _sdpa, "lstm": _lstm, "gru_cell": _gru_cell, "manual": _manual}


def plain(value):
    """JSON-safe and exact: floats as repr round-trips them, NaN and infinities as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def record(name: str) -> dict:
    """One scenario's outputs, in plain values."""
    if name == "ddp":
        return {"ranks": plain(_ddp())}
    torch.set_num_threads(1)
    probe, run = SCENARIOS[name]()
    probe.flush(run)
    return plain({
        "summary": probe.summary().to_dict("records"),
        "history": probe.history().to_dict("records"),
        "findings": [f.to_dict() for f in probe.findings()],
        "skipped": probe.skipped,
        "stored": run.written,
        "step": probe.step,
    })


def record_all() -> dict:
    return {name: record(name) for name in [*SCENARIOS, "ddp"]}


if __name__ == "__main__":
    out = record_all()
    GOLDEN.write_bytes(gzip.compress((json.dumps(out, indent=0, sort_keys=True) + "\n").encode(), mtime=0))
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes, {len(out)} scenarios)")
