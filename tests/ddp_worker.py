"""One rank of the DDP test (tests/test_integrations.py), and the single-process reference: the same
net and steps, the global batch of 64 split in two halves over two gloo processes."""

import json
import os

import torch
import torch.nn.functional as F

STEPS, BATCH = 6, 64


def net(which: str = "mlp"):
    torch.manual_seed(0)
    if which == "kinds":
        return EveryKind()
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4))


class EveryKind(torch.nn.Module):
    """A row of every kind: layers, a function call, a norm, attention heads, recurrent gates."""

    def __init__(self):
        super().__init__()
        self.embed, self.norm = torch.nn.Linear(2, 8), torch.nn.LayerNorm(8)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.rnn = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(12, 4)

    def forward(self, x):
        e = self.norm(F.relu(self.embed(x.reshape(x.shape[0], 4, 2))))
        a, _ = self.attn(e, e, e, need_weights=False)
        out, _ = self.rnn(e + a)
        return self.head(out[:, -1])


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 8, generator=g), torch.randint(0, 4, (BATCH,), generator=g)) for _ in range(STEPS)]


def train(model, rows, probe_run=None, rank=0, world=1):
    from gradientflow.probes import watch

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with watch(model, exact=True, update_every=1) as probe:
        for x, y in batches():
            part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
            opt.zero_grad()
            F.cross_entropy(model(x[part]), y[part]).backward()
            opt.step()
        rows.extend(probe.flush(probe_run))
    return rows


def rank_main(rank: int, world: int, folder: str, which: str = "mlp") -> None:
    import torch.distributed as dist

    from gradientflow.store import Run

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["GF_TEST_PORT"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = torch.nn.parallel.DistributedDataParallel(net(which))
        run = Run.create(f"{folder}/run", {"integration": "ddp"}) if rank == 0 else None
        rows = train(model, [], run, rank, world)
        with open(f"{folder}/rank{rank}.json", "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "hist"} | {"hist": r.get("hist")} for r in rows], f)
        # both ranks done before either tears the group down: a rank that destroyed it while its peer
        # was still writing was seen to abort in gloo ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()
