import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gradientflow.cli import main
from gradientflow.store import Run

QUICK = ["--data", "digits", "--n-train", "200", "--n-test", "50", "--width", "16", "--epochs", "2", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_json_summary_and_runs_commands(tmp_path):
    res = invoke("train", *QUICK, "--out", tmp_path / "a", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"test_accuracy", "test_loss", "train_loss", "steps", "run_dir", "status"} <= set(out)
    assert out["steps"] == 4 and out["run_dir"] == str(tmp_path / "a")
    assert invoke("train", *QUICK, "--optimizer", "sgd", "--lr", "0.1", "--out", tmp_path / "b").exit_code == 0
    listed = json.loads(invoke("runs", "list", tmp_path, "--json").output)
    assert [r["run"] for r in listed] == ["a", "b"] and listed[1]["optimizer"] == "sgd lr=0.1"
    shown = json.loads(invoke("runs", "show", tmp_path / "a", "--json").output)
    assert [e["epoch"] for e in shown["epochs"]] == [1, 2] and shown["epochs"][1]["test_accuracy"] == out["test_accuracy"]
    cmp = invoke("runs", "compare", tmp_path / "a", tmp_path / "b", "--plot", tmp_path / "fig", "--json")
    assert cmp.exit_code == 0, cmp.output
    assert len(json.loads(cmp.output)) == 2 and (tmp_path / "fig" / "compare.png").stat().st_size > 10_000
    sql = invoke("runs", "sql", "select run, count(*) as n from metrics group by run order by run", "--root",
                 tmp_path, "--json")
    assert [r["run"] for r in json.loads(sql.output)] == ["a", "b"]


def test_config_files_yaml_and_toml_with_options_winning(tmp_path):
    (tmp_path / "c.yaml").write_text("data: digits\nn-train: 100\nn_test: 50\nwidth: 8\nepochs: 1\noptimizer: rmsprop\n")
    (tmp_path / "c.toml").write_text('data = "digits"\nn_train = 100\nn_test = 50\nwidth = 8\nepochs = 1\n')
    res = invoke("train", "--config", tmp_path / "c.yaml", "--lr", "0.01", "--out", tmp_path / "y", "--quiet")
    assert res.exit_code == 0, res.output
    cfg = Run(tmp_path / "y").config()
    assert (cfg["optimizer"], cfg["lr"], cfg["width"]) == ("rmsprop", 0.01, 8)
    assert invoke("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "t", "--quiet").exit_code == 0


@pytest.mark.parametrize("args, needle", [
    (["--optimizer", "lbfgs"], "invalid optimizer='lbfgs': unknown optimizer; expected one of: sgd, momentum"),
    (["--lr", "nan"], "invalid lr=nan"),
    (["--lr", "-1"], "invalid lr=-1.0"),
    (["--momentum", "0.9", "--optimizer", "sgd"], "momentum applies to"),
    (["--schedule", "cyclic"], "invalid schedule='cyclic'"),
    (["--data", "mnist"], "unknown data 'mnist'"),
    (["--data", "npz:/nonexistent.npz"], "no such file"),
    (["--epochs", "0"], "invalid epochs=0"),
    (["--batch-size", "abc"], "'abc' is not a valid integer"),
    (["--device", "tpu"], "unknown device"),
    (["--normalize", "whiten"], "unknown normalization"),
    (["--bias-correction", "first"], "bias_correction='first': expected one of both, second, none"),
    (["--bias-correction", "none", "--optimizer", "sgd"], "bias_correction applies to adam"),
])
def test_bad_train_input_is_one_line_and_exit_2(tmp_path, args, needle):
    res = invoke("train", *QUICK, "--out", tmp_path / "r", *args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1 and needle in res.output, res.output
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize("text, needle", [
    ("lr: [1, 2", "does not parse"), ("- a\n- b\n", "must hold a mapping"), ("colour: red\n", "unknown field 'colour'"),
    ("activation: swishy\n", "invalid activation='swishy'"),
])
def test_bad_config_files(tmp_path, text, needle):
    (tmp_path / "c.yaml").write_text(text)
    res = invoke("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "r")
    assert res.exit_code == 2 and needle in res.output and res.output.count("\n") == 1, res.output
    (tmp_path / "c.json").write_text("{}")
    assert "expected a .yaml, .yml or .toml" in invoke("train", "--config", tmp_path / "c.json").output


def test_an_existing_run_is_never_overwritten(tmp_path):
    assert invoke("train", *QUICK, "--out", tmp_path / "r").exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    res = invoke("train", *QUICK, "--out", tmp_path / "r")
    assert res.exit_code == 2 and "already exists and is not empty" in res.output
    res = invoke("train", "--out", tmp_path / "r", "--resume", "--lr", "0.5")
    assert res.exit_code == 2 and "stored lr=0.001, given lr=0.5" in res.output and res.output.count("\n") == 1
    assert before == {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}


def test_resume_accepts_the_same_command_line_and_config_file_and_refuses_a_changed_value(tmp_path):
    (tmp_path / "c.yaml").write_text("activation: tanh\nlr: 0.01\nwidth: 16\n")
    first = [*QUICK, "--activation", "tanh", "--lr", "0.01", "--out", tmp_path / "r"]
    assert invoke("train", *first).exit_code == 0
    res = invoke("train", *first, "--resume", "--epochs", "3", "--json")  # what a job scheduler re-runs
    assert res.exit_code == 0 and json.loads(res.output)["steps"] == 3 * 2, res.output  # 200 samples, batch 128
    res = invoke("train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "r", "--resume")
    assert res.exit_code == 0, res.output
    res = invoke("train", *first, "--activation", "relu", "--resume")
    assert res.exit_code == 2 and "stored activation='tanh', given activation='relu'" in res.output, res.output
    (tmp_path / "d.toml").write_text('lr = 0.02\n')
    res = invoke("train", "--config", tmp_path / "d.toml", "--out", tmp_path / "r", "--resume")
    assert res.exit_code == 2 and "stored lr=0.01, given lr=0.02" in res.output


def test_diverged_run_exits_1_with_the_step_and_layer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the second run goes to the default runs/ folder
    res = invoke("train", *QUICK, "--optimizer", "sgd", "--lr", "1000", "--normalize", "none", "--depth", "10",
                 "--init", "normal", "--std", "3", "--out", tmp_path / "r")
    assert res.exit_code == 1 and "diverged: non-finite values at step 2: forward output of layer" in res.output
    assert Run(tmp_path / "r").status()["status"] == "diverged"
    res = invoke("train", *QUICK, "--optimizer", "sgd", "--normalize", "none", "--depth", "20",
                 "--init", "normal", "--std", "10")
    assert res.exit_code == 1 and "the total gradient norm overflows" in res.output, res.output
    assert len(list((tmp_path / "runs").iterdir())) == 1
    assert invoke("train", "--resume").output == "error: --resume needs --out RUN, the run folder to continue\n"


def _cli(*args):
    return [sys.executable, "-c", "from gradientflow.cli import run; run()", *map(str, args)]


# One intra-op thread: since issue 18, about one resume in ten on two threads drifts from the second
# step after the resume (measured: 12 of 110 against 0 of 40 before the issue; cause not found yet,
# see BENCHMARKS.md). Bit-identity is asserted where it holds.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_sigkill_leaves_a_readable_store_and_resume_is_bit_identical(tmp_path):
    args = ["train", "--data", "digits", "--n-train", "640", "--width", "64", "--epochs", "60", "--batch-size", "32",
            "--checkpoint-every", "25", "--quiet"]
    subprocess.run(_cli(*args, "--out", tmp_path / "whole"), check=True, capture_output=True, env=ONE_THREAD)
    proc = subprocess.Popen(_cli(*args, "--out", tmp_path / "cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ONE_THREAD)
    deadline = time.time() + 60
    ckpts = tmp_path / "cut" / "checkpoints"
    while time.time() < deadline and not (ckpts.exists() and len(list(ckpts.glob("step-*.pt"))) >= 2):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = subprocess.run(_cli("runs", "list", tmp_path, "--json"), capture_output=True, text=True, check=True)
    status = {r["run"]: r["status"] for r in json.loads(listed.stdout)}
    assert status == {"cut": "running", "whole": "finished"}  # killed mid-run, yet it lists and reads
    assert Run(tmp_path / "cut").metrics().num_rows > 0
    res = subprocess.run(_cli("train", "--resume", "--out", tmp_path / "cut", "--json"), capture_output=True, text=True,
                         env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    w = torch.load(Run(tmp_path / "whole").latest_checkpoint()[1], weights_only=False)["model"]
    c = torch.load(Run(tmp_path / "cut").latest_checkpoint()[1], weights_only=False)["model"]
    assert all(torch.equal(w[k], c[k]) for k in w)
    assert Run(tmp_path / "cut").metrics().num_rows == Run(tmp_path / "whole").metrics().num_rows


def test_train_with_probes_stores_them_and_inspect_reports(tmp_path):
    res = invoke("train", "--data", "mnist1d", "--n-train", "500", "--n-test", "100", "--depth", "6", "--width", "64",
                 "--optimizer", "sgd", "--lr", "1", "--epochs", "3", "--probe", "--quiet", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    run = Run(tmp_path / "r")
    assert set(run.table("probes")["step"].to_pylist()) == {4, 8, 12}  # one window per epoch
    assert run.table("histograms").num_rows == 3 * 7 * 50
    out = invoke("inspect", tmp_path / "r", "--json", "--plot", tmp_path / "fig")
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert [x["layer"] for x in report["layers"]] == ["0", "2", "4", "6", "8", "10", "12"]
    assert "dead" in {f["kind"] for f in report["findings"]}  # lr 1 kills ReLUs
    assert len(report["figures"]) == 4 and all(Path(f).stat().st_size > 5000 for f in report["figures"])
    text = invoke("inspect", tmp_path / "r").output
    assert "dead units since step" in text and "try:" in text
    assert invoke("inspect", tmp_path / "nope").exit_code == 2
    invoke("train", *QUICK, "--out", tmp_path / "plain")
    assert "train it with --probe" in invoke("inspect", tmp_path / "plain").output


def test_probes_do_not_change_training(tmp_path):
    base = ["train", *QUICK, "--json"]
    a = json.loads(invoke(*base, "--out", tmp_path / "a").output)
    b = json.loads(invoke(*base, "--probe", "--probe-every", "2", "--out", tmp_path / "b").output)
    assert (a["test_loss"], a["train_loss"]) == (b["test_loss"], b["train_loss"])


def test_a_second_writer_is_refused_while_the_first_lives_and_kill_9_frees_the_run(tmp_path):
    args = ["train", "--data", "digits", "--n-train", "640", "--width", "64", "--epochs", "500", "--batch-size", "32",
            "--checkpoint-every", "20", "--quiet", "--out", tmp_path / "r"]  # a checkpoint per epoch
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((tmp_path / "r" / "checkpoints").glob("step-*.pt")):
            time.sleep(0.02)
        before = sorted(p.name for p in (tmp_path / "r" / "metrics").glob("part-*.parquet"))  # whole parts, not .tmp
        res = invoke("train", "--resume", "--out", tmp_path / "r")
        assert res.exit_code == 2, res.output
        assert f"is being written by another process (pid {proc.pid})" in res.output
        assert Run(tmp_path / "r").status()["status"] == "running"  # the refused resume rewound nothing
        assert set(before) <= {p.name for p in (tmp_path / "r" / "metrics").iterdir()}
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Run(tmp_path / "r").writing():  # the kernel dropped the dead writer's lock
        pass


def test_a_full_disk_stops_with_one_line_and_the_last_checkpoint_stays_good(tmp_path):
    import resource

    first = ["train", "--data", "digits", "--n-train", "640", "--width", "64", "--batch-size", "32", "--quiet",
             "--checkpoint-every", "20", "--out", tmp_path / "r"]  # a checkpoint per epoch
    assert invoke(*first, "--epochs", "1").exit_code == 0
    ckpt = Run(tmp_path / "r").latest_checkpoint()[1]
    limit = ckpt.stat().st_size // 2  # metric parts fit, a checkpoint does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(_cli("train", "--resume", "--epochs", "3", "--out", tmp_path / "r", "--quiet"),
                         capture_output=True, text=True, preexec_fn=small_files)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == f"error: cannot write '{tmp_path / 'r' / 'checkpoints' / 'step-000000040.pt'}': File too large\n"
    run = Run(tmp_path / "r")
    assert run.last_good_checkpoint()[0] == 20 and not run.damage() and not list(run.path.rglob("*.tmp"))
    assert invoke("runs", "show", tmp_path / "r").exit_code == 0
    res = invoke("train", "--resume", "--epochs", "3", "--out", tmp_path / "r", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["steps"] == 60, res.output


def test_names_from_the_user_are_text_in_figures_and_the_report(tmp_path):
    from gradientflow import report

    names = ["$\\frac{<script>alert(1)$", "a$b$c"]  # mathtext would refuse the first and restyle the second
    for name in names:
        assert invoke("train", *QUICK, "--out", tmp_path / name).exit_code == 0
    res = invoke("runs", "compare", *(tmp_path / n for n in names), "--plot", tmp_path / "fig")
    assert res.exit_code == 0, res.output
    claim = {"id": "C1", "verdict": "pass", "claim": "<script>alert(1)</script>", "source": "000",
             "experiment": "<b>x</b>", "why": "<img src=x onerror=alert(1)>", "threshold": "a < b & c",
             "numbers": {"<i>k</i>": "<v>"}, "figure": None, "command": "gradientflow <x>",
             "config": {"run": "<script>"}}
    html = report.render(tmp_path, [claim], seed=0, quick=True)
    assert "<script>" not in html and "<img src=x" not in html and "<i>k</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a &lt; b &amp; c" in html
