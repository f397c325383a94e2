"""Sweeps: specs validated whole before anything is written, the pool giving the numbers a single
process gives, failures recorded, and a killed sweep continued to the uninterrupted sweep's numbers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from gradientflow.cli import main
from gradientflow.sweep import SweepSpec, read_results

BASE = {"data": "xor", "n_train": 256, "n_test": 128, "epochs": 2, "batch_size": 64, "activation": "tanh",
        "init": "meanfield", "sigma_b2": 0.05, "optimizer": "sgd", "lr": 0.1}


def _spec(tmp_path, spec, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def _numbers(folder):
    rows = read_results(folder)
    return {r["cell"]: (r["status"], r["steps"], r["train_loss"], r["test_loss"], r["test_accuracy"]) for r in rows}


@pytest.mark.parametrize("spec, line", [
    ({"base": BASE, "gird": {"lr": [0.1]}}, "unknown spec key 'gird'; allowed: base, grid, random"),
    ({"base": BASE, "grid": {"lrr": [0.1]}}, "unknown field 'lrr' in grid"),
    ({"base": BASE, "grid": {"lr": []}}, "grid field 'lr' has no values"),
    ({"base": BASE, "grid": {"lr": 0.1}}, "grid field 'lr' must be a list of values"),
    ({"base": BASE, "grid": {}}, "the sweep has nothing to vary"),
    ({"base": BASE, "grid": {"lr": [0.1, "fast"]}}, "cell lr='fast': invalid lr='fast'"),
    ({"base": BASE, "grid": {"sigma_w2": [1.0, -1.0]}}, "cell sigma_w2=-1.0: invalid sigma_w2=-1.0"),
    ({"base": BASE, "random": {"n": 2, "fields": {"lr": {"loguniform": [0, 1]}}}}, "loguniform needs lo > 0"),
    ({"base": BASE, "random": {"n": 0, "fields": {"lr": {"uniform": [0.1, 1]}}}}, "random n=0 must be an integer"),
    ({"base": {**BASE, "init": "he"}, "grid": {"sigma_w2": [1.0]}}, "read only by init='meanfield'"),
])
def test_a_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, spec, line):
    r = _invoke("sweep", "run", _spec(tmp_path, spec), "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and r.output.count("\n") == 1 and line in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_random_draws_are_seeded_and_crossed_with_the_grid():
    spec = SweepSpec.parse({"base": BASE, "grid": {"depth": [1, 2]},
                            "random": {"n": 3, "seed": 7, "fields": {"lr": {"loguniform": [1e-3, 1e-1]},
                                                                      "width": {"choice": [8, 16]}}}})
    cells = spec.cells()
    assert len(cells) == 6 and [c.name for c in cells] == [c.name for c in spec.cells()]
    assert all(1e-3 <= c.config.lr <= 1e-1 and c.config.width in (8, 16) for c in cells)


def test_the_pool_gives_the_numbers_of_one_process_and_a_failing_cell_is_recorded(tmp_path):
    spec = {"base": BASE, "grid": {"sigma_w2": [1.0, 4.0], "depth": [2, 4]}}
    results = {}
    for workers in (1, 2):
        r = _invoke("sweep", "run", _spec(tmp_path, spec), "--out", str(tmp_path / f"w{workers}"),
                    "--workers", str(workers), "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output) == {"cells": 4, "finished": 4, "diverged": 0, "failed": 0,
                                        "results": str(tmp_path / f"w{workers}" / "results.parquet")}
        results[workers] = _numbers(tmp_path / f"w{workers}")
    assert results[1] == results[2]
    r = _invoke("runs", "list", str(tmp_path / "w2" / "runs"), "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)) == 4

    failing = {"base": BASE, "grid": {"data": ["xor", f"npz:{tmp_path / 'missing.npz'}"]}}
    r = _invoke("sweep", "run", _spec(tmp_path, failing, "failing.yaml"), "--out", str(tmp_path / "f"), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["failed"] == 1 and json.loads(r.output)["finished"] == 1
    rows = read_results(tmp_path / "f")
    assert "missing.npz" in next(x["message"] for x in rows if x["status"] == "failed")
    shown = _invoke("sweep", "show", str(tmp_path / "f"))
    assert shown.exit_code == 0 and "failed" in shown.output and "finished" in shown.output


def test_a_killed_sweep_continues_to_the_uninterrupted_sweeps_numbers(tmp_path):
    spec = _spec(tmp_path, {"base": {**BASE, "epochs": 6, "n_train": 1024, "checkpoint_every": 8},
                            "grid": {"depth": [2, 3, 4], "seed": [0, 1]}})
    cmd = [sys.executable, "-m", "gradientflow.cli", "sweep", "run", spec, "--quiet", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    results = tmp_path / "killed" / "results.parquet"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once some cells have ended and others have not
        if results.exists() and 1 <= [r["status"] for r in read_results(results.parent)].count("finished") < 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [r["status"] for r in read_results(results.parent)]
    assert left.count("finished") < 6, "the sweep ended before the kill: nothing was tested"
    done = subprocess.run([*cmd, "--out", str(tmp_path / "killed")], env=env, check=True, capture_output=True, text=True)
    assert json.loads(done.stdout)["finished"] == 6
    whole, killed = _numbers(tmp_path / "whole"), _numbers(tmp_path / "killed")
    assert killed == whole  # every cell's status, steps, losses and accuracy, bit for bit


def test_plot_averages_the_seeds_per_cell_and_draws_the_theorys_trainable_depth(tmp_path):
    from gradientflow import theory

    spec = {"base": {**BASE, "epochs": 1}, "grid": {"sigma_w2": [1.0, 2.0], "depth": [1, 3], "seed": [0, 1]}}
    assert _invoke("sweep", "run", _spec(tmp_path, spec), "--out", str(tmp_path / "s"), "--quiet").exit_code == 0
    r = _invoke("sweep", "plot", str(tmp_path / "s"), "--x", "sigma_w2", "--y", "depth", "--plot",
                str(tmp_path / "fig"), "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    rows = read_results(tmp_path / "s")
    for i, depth in enumerate(got["y"]):
        for j, w in enumerate(got["x"]):
            values = [x["test_accuracy"] for x in rows if x["depth"] == depth and x["sigma_w2"] == w]
            assert got["value"][i][j] == pytest.approx(sum(values) / len(values)) and got["cells"][i][j] == 2
    w, depth = got["theory"]["sigma_w2"], got["theory"]["depth"]
    for k in (0, 77, 199):
        assert depth[k] == pytest.approx(theory.analyse("tanh", w[k], 0.05).max_trainable_depth)
    assert all((tmp_path / "fig" / f"sweep_test_accuracy_sigma_w2_depth.{ext}").exists() for ext in ("png", "svg"))
    bad = _invoke("sweep", "plot", str(tmp_path / "s"), "--x", "width", "--y", "depth", "--plot", str(tmp_path / "f2"))
    assert bad.exit_code == 2 and "--x 'width' is not a field this sweep varies; it varies: depth, seed, sigma_w2" in bad.output  # the spec file lists keys sorted
    assert _invoke("sweep", "show", str(tmp_path / "nothing")).exit_code == 2


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_gives_the_local_pools_numbers_started_here_and_on_a_running_cluster(tmp_path):
    """A real Ray: one that the sweep starts (two CPUs) and one started beforehand by ``ray start``."""
    spec = _spec(tmp_path, {"base": BASE, "grid": {"sigma_w2": [1.0, 4.0], "depth": [2, 4]}})
    cli = [sys.executable, "-m", "gradientflow.cli", "sweep", "run", spec, "--quiet", "--json"]
    ray = str(os.path.join(os.path.dirname(sys.executable), "ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([*cli, "--out", str(tmp_path / "local"), "--workers", "2"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "--out", str(tmp_path / "started"), "--engine", "ray", "--workers", "2"], env=env,
                   check=True, capture_output=True)
    port = _free_port()
    subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "false"],
                   env=env, check=True, capture_output=True)
    try:
        joined = subprocess.run([*cli, "--out", str(tmp_path / "joined"), "--engine", "ray", "--address",
                                 f"127.0.0.1:{port}"], env=env, capture_output=True, text=True)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert json.loads(joined.stdout)["finished"] == 4
    local = _numbers(tmp_path / "local")
    assert _numbers(tmp_path / "started") == local and _numbers(tmp_path / "joined") == local  # bit for bit


def test_a_ray_address_that_does_not_answer_is_one_line_and_writes_nothing(tmp_path):
    spec = _spec(tmp_path, {"base": BASE, "grid": {"depth": [1, 2]}})
    out = tmp_path / "out"
    for args, line in ((["--engine", "ray", "--address", f"127.0.0.1:{_free_port()}"], "does not answer"),
                       (["--engine", "ray", "--address", "nowhere"], "expected HOST:PORT, ray://HOST:PORT or auto"),
                       (["--address", "127.0.0.1:6379"], "is read only by --engine ray")):
        r = _invoke("sweep", "run", spec, "--out", str(out), *args)
        assert r.exit_code == 2 and r.output.count("\n") == 1 and line in r.output, r.output
        assert not out.exists()


def test_the_batched_trainer_gives_each_nets_one_by_one_numbers(tmp_path):
    """Eight nets differing in seed, rate, momentum, weight decay and initialiser, trained together,
    against ``job.run`` of each: every epoch's losses and accuracies, and every step's stored loss."""
    from gradientflow import job
    from gradientflow.config import TrainConfig
    from gradientflow.store import Run
    from gradientflow.sweep import batched

    base = {**BASE, "data": "mnist1d", "n_train": 512, "depth": 3, "width": 32, "epochs": 3, "grad_norm_every": 3}
    variants = [{"optimizer": "sgd", "lr": 0.05, "sigma_w2": 1.5, "seed": 0},
                {"optimizer": "sgd", "lr": 0.2, "sigma_w2": 3.0, "seed": 1, "weight_decay": 1e-3},
                {"optimizer": "sgd", "lr": 0.1, "init": "xavier", "sigma_b2": None, "seed": 2},
                {"optimizer": "sgd", "lr": 0.1, "init": "normal", "std": 0.3, "sigma_b2": None, "seed": 3}]
    for group in ({}, {"optimizer": "momentum", "momentum": 0.8}, {"optimizer": "nesterov"}):
        cfgs = [TrainConfig(**{**base, **v, **group}) for v in variants]
        runs = [Run.create(tmp_path / f"{group.get('optimizer', 'sgd')}-{i}", c.model_dump()) for i, c in enumerate(cfgs)]
        together = batched.train(cfgs, runs=runs)
        for cfg, got, run in zip(cfgs, together, runs):
            alone = job.run(cfg, tmp_path / f"alone-{run.name}")
            assert got.status == alone.status == "finished" and got.steps == alone.steps == 24
            for a, b in zip(got.history, alone.history):
                assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a)
            def rows(r):
                return sorted(r.metrics().to_pylist(), key=lambda x: (x["step"], x["split"], x["name"]))

            mine, theirs = rows(run), rows(Run(alone.run_dir))
            assert [(r["step"], r["split"], r["name"]) for r in mine] == [(r["step"], r["split"], r["name"]) for r in theirs]
            assert [r["value"] for r in mine] == pytest.approx([r["value"] for r in theirs], rel=1e-5, abs=1e-6)
            assert Run(run.path).status()["status"] == "finished"


def test_the_batched_trainer_follows_each_nets_own_schedule(tmp_path):
    """Nets with different schedules and warm-ups in one batch: each net's stored rates and losses equal
    its one-by-one run's (the rates read from the same torch scheduler)."""
    from gradientflow import job
    from gradientflow.config import TrainConfig
    from gradientflow.store import Run
    from gradientflow.sweep import batched

    base = {**BASE, "data": "mnist1d", "n_train": 272, "depth": 2, "width": 16, "epochs": 3, "optimizer": "momentum",
            "lr": 0.1}
    variants = [{}, {"schedule": "cosine"}, {"schedule": "warmup", "warmup_steps": 6},
                {"schedule": "cosine", "warmup_steps": 4, "lr": 0.2}, {"schedule": "step", "step_size": 5, "gamma": 0.5}]
    cfgs = [TrainConfig(**{**base, **v, "seed": i}) for i, v in enumerate(variants)]
    runs = [Run.create(tmp_path / f"b{i}", c.model_dump()) for i, c in enumerate(cfgs)]
    for cfg, got, run in zip(cfgs, batched.train(cfgs, runs=runs), runs):
        alone = job.run(cfg, tmp_path / f"alone-{run.name}")
        for name in ("lr", "loss"):
            mine, theirs = run.series(name, "train")[1], Run(alone.run_dir).series(name, "train")[1]
            assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-7), (cfg.schedule, name)
        assert got.test_loss == pytest.approx(alone.test_loss, rel=1e-5)
    steps, rates = runs[3].series("lr", "train")
    assert rates[0] == pytest.approx(0.05) and max(rates) == pytest.approx(0.2) and rates[-1] < 0.01  # warm-up, then cosine


@pytest.mark.parametrize("activation", ["prelu", "maxout"])
def test_nets_with_their_own_parameters_train_batched_to_the_same_numbers(activation):
    """PReLU's slopes leave the fused Linear path (vmap over functional_call); Maxout's pieces stay on it
    (their one Linear as a batched product, then the max over each unit's pieces)."""
    from gradientflow import job
    from gradientflow.config import TrainConfig
    from gradientflow.sweep import batched

    cfgs = [TrainConfig(**{**BASE, "activation": activation, "init": "he", "sigma_b2": None, "depth": 2,
                           "width": 16, "seed": s, "lr": lr}) for s, lr in ((0, 0.05), (1, 0.1))]
    for got, cfg in zip(batched.train(cfgs), cfgs):
        alone = job.run(cfg)
        assert got.steps == alone.steps and got.test_loss == pytest.approx(alone.test_loss, rel=1e-5)
        assert got.train_loss == pytest.approx(alone.train_loss, rel=1e-5)


def test_a_net_that_diverges_in_a_batch_stops_alone_at_its_step(tmp_path):
    from gradientflow import job
    from gradientflow.config import TrainConfig
    from gradientflow.sweep import batched

    base = {**BASE, "activation": "relu", "depth": 4, "width": 64, "sigma_w2": 2.0, "epochs": 3}
    cfgs = [TrainConfig(**{**base, "lr": lr}) for lr in (0.05, 1e3)]
    calm, wild = batched.train(cfgs)
    alone = job.run(cfgs[1])
    assert calm.status == "finished" and calm.test_loss == pytest.approx(job.run(cfgs[0]).test_loss, rel=1e-5)
    assert wild.status == alone.status == "diverged" and "non-finite loss at step" in wild.message
    # one by one, a non-finite gradient stops the run at its step; in a batch it shows in the next loss
    assert alone.steps <= wild.steps <= alone.steps + 1


def test_a_batched_sweep_matches_the_pool_and_refuses_what_it_cannot_batch(tmp_path):
    spec = {"base": BASE, "grid": {"sigma_w2": [1.0, 4.0], "depth": [2, 4], "seed": [0, 1]}}
    for name, args in (("pool", ["--workers", "2"]), ("batched", ["--batched"])):
        r = _invoke("sweep", "run", _spec(tmp_path, spec), "--out", str(tmp_path / name), "--quiet", "--json", *args)
        assert r.exit_code == 0 and json.loads(r.output)["finished"] == 8, r.output
    pool, together = _numbers(tmp_path / "pool"), _numbers(tmp_path / "batched")
    assert pool.keys() == together.keys()
    for cell, (status, steps, *values) in pool.items():
        assert together[cell][:2] == (status, steps) and together[cell][2:] == pytest.approx(values, rel=1e-5)
    assert len(json.loads(_invoke("runs", "list", str(tmp_path / "batched" / "runs"), "--json").output)) == 8

    adam = {"base": {**BASE, "optimizer": "adam", "lr": 1e-3}, "grid": {"depth": [1, 2]}}
    r = _invoke("sweep", "run", _spec(tmp_path, adam, "adam.yaml"), "--out", str(tmp_path / "adam"), "--batched")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--batched: cell depth=1 has optimizer=adam" in r.output
    assert not (tmp_path / "adam").exists()
