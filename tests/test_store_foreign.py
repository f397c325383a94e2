"""Valid but foreign files in a run (issue 30): Parquet parts that parse but have another schema,
checkpoints that load but do not fit the model or the loop, a config.json that does not validate.
Each is named in one line (exit code 2 from the CLI), the run lists as damaged, and ``--resume``
falls back to the newest checkpoint that fits."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from gradientflow import job
from gradientflow.cli import main
from gradientflow.config import TrainConfig
from gradientflow.store import Run, StoreError

CFG = dict(data="digits", n_train=160, n_test=40, depth=1, width=8, batch_size=32, epochs=3, checkpoint_every=2)


def _trained(tmp_path, name, **kw) -> Run:
    job.run(TrainConfig(**{**CFG, **kw}), tmp_path / name)
    return Run(tmp_path / name)


def _cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output.strip()


def _one_line_refusal(code, out, *names):
    assert code == 2, out
    assert "\n" not in out and "Traceback" not in out
    for name in names:
        assert name in out, out


def test_a_metrics_part_of_another_schema_is_named_and_the_run_listed_damaged(tmp_path):
    run = _trained(tmp_path, "run")
    part = run._parts("metrics")[0][1]
    table = pq.read_table(part)
    pq.write_table(table.set_column(4, "value", table["value"].cast(pa.string())), part)  # parses, wrong type
    with pytest.raises(StoreError, match=f"{part.name}' is damaged: its columns are"):
        run.metrics()
    assert any(part.name in p for p in run.damage())
    code, out = _cli("runs", "list", tmp_path, "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "damaged"
    _one_line_refusal(*_cli("runs", "show", run.path), part.name)
    _one_line_refusal(*_cli("runs", "export", run.path, "--tensorboard", tmp_path / "tb"), part.name)


def test_a_metrics_part_missing_a_column_is_not_read_as_nulls(tmp_path):
    run = _trained(tmp_path, "run")
    part = run._parts("metrics")[-1][1]
    pq.write_table(pq.read_table(part).drop_columns(["epoch"]), part)
    _one_line_refusal(*_cli("runs", "show", run.path), part.name, "its columns are")


def test_a_probes_part_of_another_schema_is_named_by_inspect(tmp_path):
    code, out = _cli("train", "--data", "digits", "--n-train", 160, "--n-test", 40, "--depth", 2, "--width", 8,
                     "--epochs", 2, "--batch-size", 32, "--probe", "--checkpoint-every", 5, "--out", tmp_path / "run",
                     "--quiet")  # a checkpoint (and a probes part) per epoch
    assert code == 0, out
    run = Run(tmp_path / "run")
    parts = run._parts("tables", "probes")
    assert len(parts) >= 2
    part = parts[-1][1]
    pq.write_table(pa.table({"step": [1], "layer": [3.5]}), part)
    _one_line_refusal(*_cli("inspect", run.path), part.name)
    assert any(part.name in p for p in run.damage())


def _edited_newest_checkpoint(run: Run, edit) -> int:
    step, path = run.latest_checkpoint()
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    return step


def _shrink_weight(state):
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name][:, :3].clone()


@pytest.mark.parametrize("edit, why", [
    (_shrink_weight, "is torch.float32"),
    (lambda s: s.update(rng=torch.zeros(5, dtype=torch.uint8)), "random generator"),
    (lambda s: s.update(batch=10**6), "position"),
    (lambda s: s.update(epoch=-5), "position"),
    (lambda s: s.update(history="not a list"), "history"),
    (lambda s: s["optimizer"]["param_groups"].append({"params": [99]}), "parameter groups"),
])
def test_resume_falls_back_from_a_checkpoint_that_does_not_fit(tmp_path, edit, why):
    whole = _trained(tmp_path, "whole")
    run = _trained(tmp_path, "run", epochs=2)  # continued to 3 epochs below, from a foreign newest checkpoint
    step = _edited_newest_checkpoint(run, edit)
    code, out = _cli("train", "--resume", "--out", run.path, "--epochs", 3, "--quiet", "--json")
    assert code == 0, out
    assert json.loads(out)["steps"] == 15
    assert (run.path / "checkpoints" / f"step-{step:09d}.pt.damaged").exists()
    a = run.read_checkpoint(run.latest_checkpoint()[1])["model"]
    b = whole.read_checkpoint(whole.latest_checkpoint()[1])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same as a run never interrupted


def test_no_fitting_checkpoint_is_one_line_naming_each(tmp_path):
    run = _trained(tmp_path, "run", epochs=1, checkpoint_every=None)
    _edited_newest_checkpoint(run, _shrink_weight)
    _one_line_refusal(*_cli("train", "--resume", "--out", run.path, "--epochs", 2, "--quiet"),
                      "does not fit this run", "is torch.float32")


@pytest.mark.parametrize("edit, named", [
    (lambda c: c.update(epochs="many"), "epochs"),
    (lambda c: c.update(depth=-3), "depth"),
    (lambda c: c.update(surprise=1), "surprise"),
])
def test_a_config_that_does_not_validate_is_one_line(tmp_path, edit, named):
    run = _trained(tmp_path, "run", epochs=1)
    config = json.loads((run.path / "config.json").read_text())
    edit(config)
    (run.path / "config.json").write_text(json.dumps(config))
    _one_line_refusal(*_cli("train", "--resume", "--out", run.path, "--quiet"), "config.json", named)


def test_a_config_without_epochs_resumes_with_the_default_not_a_traceback(tmp_path):
    run = _trained(tmp_path, "run", epochs=1)
    config = json.loads((run.path / "config.json").read_text())
    del config["epochs"]
    (run.path / "config.json").write_text(json.dumps(config))
    code, out = _cli("train", "--resume", "--out", run.path, "--quiet", "--json")
    assert code == 0, out
    assert json.loads(out)["steps"] == TrainConfig().epochs * 5


def test_metric_rows_are_written_on_a_clock_within_a_long_epoch(tmp_path, monkeypatch):
    """With batch size 1 an epoch is thousands of steps; its rows must not wait in memory for the
    epoch's checkpoint. Checkpoints by the clock change no number the run computes."""
    from gradientflow import train

    plain = _trained(tmp_path, "plain", epochs=1, batch_size=1, checkpoint_every=None)
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every step
    clocked = _trained(tmp_path, "clocked", epochs=1, batch_size=1, checkpoint_every=None)
    assert len(clocked._parts("metrics")) == 160 and len(plain._parts("metrics")) == 1
    rows = lambda run: sorted(run.metrics().to_pylist(), key=lambda r: (r["step"], r["split"], r["name"]))
    assert rows(clocked) == rows(plain)
    a = clocked.read_checkpoint(clocked.latest_checkpoint()[1])["model"]
    b = plain.read_checkpoint(plain.latest_checkpoint()[1])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
