"""The integrations: a stored run exported for TensorBoard and read back by TensorBoard's own reader; the
Lightning and Hugging Face callbacks on real trainers (tiny models built from configs, nothing downloaded)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests build their models from configs: nothing to download

import pytest
from click.testing import CliRunner

from gradientflow import job
from gradientflow.cli import main
from gradientflow.config import TrainConfig
from gradientflow.store import Run


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def probed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "run"
    job.run(TrainConfig(data="xor", n_train=256, n_test=64, depth=3, width=16, epochs=3, batch_size=64, probe=True,
                        optimizer="sgd", lr=0.1, grad_norm_every=1), folder)
    return Run(folder)


def test_tensorboard_reads_every_metric_statistic_and_histogram_the_run_stored(probed_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = _invoke("runs", "export", str(probed_run.path), "--tensorboard", str(tmp_path / "tb"), "--json")
    assert r.exit_code == 0, r.output
    counts = json.loads(r.output)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    metrics = probed_run.metrics().to_pylist()
    for split, name in {(m["split"], m["name"]) for m in metrics}:
        want = [(m["step"], m["value"]) for m in metrics if (m["split"], m["name"]) == (split, name)]
        got = [(e.step, e.value) for e in events.Scalars(f"{split}/{name}")]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)  # stored as float32
    probes = probed_run.table("probes").to_pylist()
    row = next(p for p in probes if p["name"] == "act_std")
    got = {e.step: e.value for e in events.Scalars(f"layers/{row['layer']}/act_std")}
    assert got[row["step"]] == pytest.approx(row["value"], rel=1e-6)
    hist = probed_run.table("histograms").to_pandas()
    layers = sorted(set(hist["layer"]))
    assert {f"activations/{layer}" for layer in layers} <= set(tags["histograms"])
    for layer in layers:
        stored = hist[hist["layer"] == layer]
        for event in events.Histograms(f"activations/{layer}"):
            window = stored[stored["step"] == event.step].sort_values("bin")
            assert list(event.histogram_value.bucket) == pytest.approx(window["count"].tolist())
            assert list(event.histogram_value.bucket_limit) == pytest.approx(window["hi"].tolist(), rel=1e-6)
            assert event.histogram_value.num == pytest.approx(window["count"].sum())
    n_scalars = sum(len(events.Scalars(t)) for t in tags["scalars"])
    assert counts["scalars"] == n_scalars and counts["histograms"] == sum(len(events.Histograms(t)) for t in tags["histograms"])


def test_export_refuses_a_folder_with_files_and_a_path_that_is_not_a_run(probed_run, tmp_path):
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "keep.txt").write_text("mine")
    r = _invoke("runs", "export", str(probed_run.path), "--tensorboard", str(tmp_path / "tb"))
    assert r.exit_code == 2 and "is not empty" in r.output and r.output.count("\n") == 1
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["keep.txt"]
    r = _invoke("runs", "export", str(tmp_path / "nothing"), "--tensorboard", str(tmp_path / "tb2"))
    assert r.exit_code == 2 and not (tmp_path / "tb2").exists()


def _lightning_module(depth=6, std=0.01, accumulate=False):
    import lightning.pytorch as pl
    import torch

    class Tiny(pl.LightningModule):
        """A tanh MLP with a tiny init (C2, C15: the gradient vanishes), called as ``self.net``."""

        def __init__(self):
            super().__init__()
            layers = [torch.nn.Linear(8, 32), torch.nn.Tanh()]
            for _ in range(depth - 1):
                layers += [torch.nn.Linear(32, 32), torch.nn.Tanh()]
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(32, 2))
            for m in self.net:
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.normal_(m.weight, std=std)
                    torch.nn.init.zeros_(m.bias)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def _loader(n=256, batch=32):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()), batch_size=batch)


def _trainer(tmp_path, callback, epochs=2, **kw):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[callback], enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, logger=CSVLogger(tmp_path / "logs"),
                      log_every_n_steps=1, **kw)


def test_the_lightning_callback_counts_an_optimiser_step_of_accumulated_batches_as_one_step(tmp_path):
    from gradientflow.integrations.lightning import GradientflowCallback

    callback = GradientflowCallback(every=1)
    trainer = _trainer(tmp_path, callback, accumulate_grad_batches=2)
    trainer.fit(_lightning_module(), _loader())
    assert trainer.global_step == 8 and callback.probe.step == 8  # 16 batches, two per optimiser step
    assert set(callback.probe.history()["sampled_steps"]) == {4}


def test_only_training_batches_enter_the_lightning_windows(tmp_path):
    """Validation batches 70 times the training data's scale, before training and twice an epoch
    between its steps: the first layer's input std stays the training data's (about 1), and the runs
    list names the trainer and the model."""
    from gradientflow.integrations.lightning import GradientflowCallback

    module = _lightning_module(depth=2, std=0.3)
    module.validation_step = lambda batch, *_: module.net(batch[0]).sum()
    callback = GradientflowCallback(out=tmp_path / "gf", every=1)
    big = _loader()
    big.dataset.tensors = (big.dataset.tensors[0] * 70, big.dataset.tensors[1])
    trainer = _trainer(tmp_path, callback, epochs=1, num_sanity_val_steps=2, val_check_interval=0.5)
    trainer.fit(module, _loader(), big)
    history = callback.probe.history()
    first = history[history["layer"] == "net.0"]
    assert len(first) == 1 and first["sampled_steps"].iloc[0] == 8  # the 8 training batches, no others
    assert 0.8 < first["in_std"].iloc[0] < 1.2
    assert "saturated" not in {f.kind for f in callback.findings}
    r = _invoke("runs", "list", str(tmp_path))
    assert r.exit_code == 0 and "Tiny (lightning)" in r.output and "None" not in r.output


def test_the_lightning_callback_stores_a_run_logs_scalars_and_finds_the_vanishing_gradient(tmp_path, caplog):
    import csv
    import logging

    from gradientflow.integrations.lightning import GradientflowCallback

    callback = GradientflowCallback(out=tmp_path / "gf", every=2)
    trainer = _trainer(tmp_path, callback)
    with caplog.at_level(logging.INFO):
        trainer.fit(_lightning_module(), _loader())
    assert trainer.global_step == 16
    assert callback.probe.step == 16  # one step per batch, though the module's own forward is never called
    history = callback.probe.history()
    assert list(history["sampled_steps"].unique()) == [4]  # 8 batches per epoch, every second one measured
    run = Run(tmp_path / "gf")
    assert run.status()["status"] == "finished" and run.status()["steps"] == 16
    r = _invoke("inspect", str(run.path), "--json")
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert any(f["kind"] == "vanishing" for f in found["findings"]), found["findings"]
    assert any(f.kind == "vanishing" for f in callback.findings)
    assert "gradientflow [vanishing]" in caplog.text
    listed = json.loads(_invoke("runs", "list", str(tmp_path), "--json").output)
    assert [x["run"] for x in listed] == ["gf"]
    with open(next((tmp_path / "logs").rglob("metrics.csv"))) as f:
        logged = list(csv.DictReader(f))
    stds = [float(row["gradientflow/net.10/act_std"]) for row in logged if row.get("gradientflow/net.10/act_std")]
    want = history[history["layer"] == "net.10"]["act_std"].tolist()
    assert stds == pytest.approx(want)


def _hf_models():
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    bert = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=32, num_labels=2))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                      activation_function="gelu", bos_token_id=0, eos_token_id=0))
    # the MLP's first layer with the GELU module that consumes its output (GPT-2's is a Conv1D)
    return {"bert": (bert, "bert.encoder.layer.0.attention.self:attention:head0", "bert.encoder.layer.0.intermediate.dense"),
            "gpt2": (gpt2, "transformer.h.0.attn:attention:head0", "transformer.h.0.mlp.c_fc")}


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_the_transformers_callback_watches_attention_and_mlp_per_optimiser_step(name, tmp_path):
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from gradientflow.integrations.transformers import watch_trainer

    model, head, mlp = _hf_models()[name]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 64, (64, 16), generator=g)
    labels = torch.randint(0, 2, (64,), generator=g) if name == "bert" else ids
    data = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]

    class Seen(TrainerCallback):  # a reporter after ours: what the trainer's loggers receive
        logged: list = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logged.append(dict(logs))

    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, num_train_epochs=2,
                             gradient_accumulation_steps=2, logging_steps=2, report_to="none", save_strategy="no",
                             use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Seen()])
    callback = watch_trainer(trainer, out=tmp_path / "gf", every=1)
    trainer.train()
    assert trainer.state.global_step == 8  # 64 samples / (8 x 2 accumulated) x 2 epochs
    assert callback.probe.step == 8  # one probe step per optimiser step, not per micro-batch
    assert any(f"gradientflow/{mlp}/act_std" in logs for logs in Seen.logged)
    run = Run(tmp_path / "gf")
    assert run.status()["status"] == "finished"
    stored = {r["layer"] for r in run.table("probes").to_pylist()}
    assert {head, mlp} <= stored
    assert {r["activation"] for r in run.table("probe_layers").to_pylist() if r["layer"] == mlp} == {"gelu"}
    r = _invoke("inspect", str(run.path), "--json")
    assert r.exit_code == 0 and {head, mlp} <= {x["layer"] for x in json.loads(r.output)["layers"]}


def test_only_training_batches_enter_the_hf_windows_and_log_history_gets_the_scalars(tmp_path):
    """The Trainer evaluates every 2 steps on inputs 70 times the training data's scale, and predicts
    after training: the first layer's input std stays the training data's, and every log entry the
    trainer keeps in ``log_history`` carries the probes' scalars."""
    import torch
    from transformers import Trainer, TrainingArguments

    from gradientflow.integrations.transformers import watch_trainer

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 2, (64,), generator=g)
    train = [{"x": a, "labels": b} for a, b in zip(x, y)]
    big = [{"x": 70 * a, "labels": b} for a, b in zip(x, y)]
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, num_train_epochs=1,
                             logging_steps=2, eval_strategy="steps", eval_steps=2, report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=Net(), args=args, train_dataset=train, eval_dataset=big)
    callback = watch_trainer(trainer, every=1)
    trainer.train()
    trainer.predict(big)
    first = callback.probe.history().query("layer == 'net.0'")
    assert first["sampled_steps"].sum() == 8 and first["in_std"].between(0.7, 1.3).all()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("gradientflow/net.0/act_std" in entry for entry in logged)


def test_with_accumulated_gradients_the_statistics_are_those_of_one_pass_over_the_whole_batch():
    """Four micro-batches of 16 with the loss scaled by 1/4, marked as one step, against one pass
    over the 64: the same moments, activation-gradient and weight-gradient norms, and update ratio."""
    import torch

    from gradientflow.probes import watch

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 4))

    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 8, generator=g), torch.randint(0, 4, (64,), generator=g)) for _ in range(12)]
    rows = {}
    for way in ("one pass", "accumulated", "accumulated, each forward a step"):
        net = make()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        manual = way == "accumulated"
        with watch(net, exact=True, update_every=1, steps="manual" if manual else "forward") as probe:
            for x, y in batches:
                opt.zero_grad()
                if manual:
                    probe.begin_step()
                if way == "one pass":
                    torch.nn.functional.cross_entropy(net(x), y).backward()
                else:
                    for xs, ys in zip(x.split(16), y.split(16)):
                        (torch.nn.functional.cross_entropy(net(xs), ys) / 4).backward()
                if manual:
                    probe.before_optimizer_step()
                opt.step()
                if manual:
                    probe.end_step()
            rows[way] = probe.summary().set_index("layer")
    one, acc, naive = rows["one pass"], rows["accumulated"], rows["accumulated, each forward a step"]
    # unmarked: the four forwards before the first optimiser step count as four steps, then the probe
    # has seen the optimiser step after several forwards and counts optimiser steps (4 + 11)
    assert list(naive["sampled_steps"]) == [15, 15, 15]
    assert list(acc["sampled_steps"]) == list(one["sampled_steps"]) == [12, 12, 12]
    for col in ("act_mean", "act_std", "saturated", "dead", "act_grad_norm", "weight_grad_norm", "update_ratio",
                "sign_coherence", "glorot_forward", "glorot_backward"):
        assert acc[col].tolist() == pytest.approx(one[col].tolist(), rel=1e-4, abs=1e-7, nan_ok=True), col


def test_ddp_over_two_processes_gives_the_statistics_of_the_global_batch_and_rank_0_stores_them(tmp_path):
    """Two gloo ranks, each with half of every batch of 64, against one process with the whole batch:
    the moments, shares, histograms, gradient norms and update ratio of the global batch on both ranks
    (without the reduction across ranks, act_mean is already off by 15 %)."""
    import torch.multiprocessing as mp

    import ddp_worker

    os.environ["GF_TEST_PORT"] = str(_free_port())
    mp.spawn(ddp_worker.rank_main, args=(2, str(tmp_path)), nprocs=2, join=True)
    reference = ddp_worker.train(ddp_worker.net(), [])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    columns = ("sampled_steps", "act_mean", "act_std", "saturated", "zero", "dead", "in_mean", "in_std",
               "act_grad_norm", "weight_grad_norm", "update_ratio", "sign_coherence", "glorot_forward", "glorot_backward")
    for rows in ranks:
        assert [r["layer"] for r in rows] == [f"module.{r['layer']}" for r in reference]
        for got, want in zip(rows, reference):
            for col in columns:
                assert got[col] == pytest.approx(want[col], rel=1e-4, abs=1e-7, nan_ok=True), (got["layer"], col)
            assert got["hist"] == pytest.approx(want["hist"])
    stored = Run(tmp_path / "run").table("probes")
    assert stored is not None and len({r["layer"] for r in stored.to_pylist()}) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]  # rank 1 stored nothing


def test_ddp_reduces_every_kind_of_row_attention_heads_and_recurrent_gates_included(tmp_path):
    """Layers, a function call, a LayerNorm, nn.MultiheadAttention's heads and a bidirectional LSTM's gates
    and gradients through time, over two gloo ranks with half of each batch each: every row on both ranks
    gives the global batch's numbers (before issue 28 the head and recurrent rows were one rank's)."""
    import torch.multiprocessing as mp

    import ddp_worker

    os.environ["GF_TEST_PORT"] = str(_free_port())
    mp.spawn(ddp_worker.rank_main, args=(2, str(tmp_path), "kinds"), nprocs=2, join=True)
    reference = ddp_worker.train(ddp_worker.net("kinds"), [])
    kinds = {r["type"] for r in reference}
    assert {"Linear", "function", "LayerNorm", "attention head", "LSTM", "LSTM gate"} <= kinds
    numbers = ("act_mean", "act_std", "saturated", "zero", "dead", "in_mean", "in_std", "act_grad_norm",
               "weight_grad_norm", "glorot_forward", "glorot_backward", "attn_entropy", "attn_collapsed",
               "attn_logit_std", "time_grad_ratio", "sampled_steps")
    for r in (0, 1):
        rows = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert [row["layer"] for row in rows] == [f"module.{row['layer']}" for row in reference]
        for got, want in zip(rows, reference):
            for col in numbers:
                if col in want and want[col] is None:
                    assert got[col] is None, (got["layer"], col)
                elif col in want:
                    assert got[col] == pytest.approx(want[col], rel=1e-4, abs=1e-7, nan_ok=True), (got["layer"], col)
            if want.get("time_grad") is not None:
                assert got["time_grad"] == pytest.approx(want["time_grad"], rel=1e-4)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_stored_histograms_past_the_cap_are_thinned_in_the_older_half_with_a_warning(tmp_path):
    """40 one-step windows flushed into a run with keep_windows=8: the stored histograms keep the
    newest windows whole and thin the older ones (counted, warned); the per-layer statistics keep all."""
    import torch

    from gradientflow.probes import watch

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    run = Run.create(tmp_path / "run", {"integration": "test"})
    with pytest.warns(UserWarning, match="stored histograms over keep_windows=8"):
        with run.background(), watch(net, keep_windows=8, window=1) as probe:
            for _ in range(40):
                net(torch.randn(16, 4)).sum().backward()
                probe.flush(run)
    steps = sorted(set(run.table("histograms").to_pandas()["step"]))
    assert len(steps) == 40 - probe.thinned_stored <= 12 and probe.thinned_stored > 0
    assert steps[-4:] == [37, 38, 39, 40]  # the newest windows whole
    assert steps[0] == 1  # the span kept, at a coarser grain
    assert sorted(set(run.table("probes").to_pandas()["step"])) == list(range(1, 41))
    assert not run.damage()
