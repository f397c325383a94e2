from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import torch

from gradientflow import store
from gradientflow.sql import query
from gradientflow.store import Run, StoreError


def _rows(steps, name="loss", split="train"):
    return {"step": list(steps), "epoch": [0] * len(steps), "split": [split] * len(steps),
            "name": [name] * len(steps), "value": [float(s) for s in steps]}


def test_create_refuses_a_folder_with_content(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("keep")
    with pytest.raises(StoreError, match="not empty"):
        Run.create(tmp_path / "busy", {})
    assert (tmp_path / "busy" / "precious.txt").read_text() == "keep"
    with pytest.raises(StoreError, match="parent folder"):
        Run.create(tmp_path / "no" / "such", {})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert Run.create(empty, {"a": 1}).config() == {"a": 1}


def test_metrics_parts_checkpoints_and_rewind(tmp_path):
    run = Run.create(tmp_path / "r", {"lr": 0.1})
    run.append_metrics(3, _rows([1, 2, 3]))
    run.save_checkpoint(3, {"x": torch.ones(2)})
    run.append_metrics(6, _rows([4, 5, 6]))  # then "killed" before checkpoint 6 was written
    assert run.metrics()["step"].to_pylist() == [1, 2, 3, 4, 5, 6]
    assert run.latest_checkpoint()[0] == 3
    run.rewind(3)
    assert run.metrics()["step"].to_pylist() == [1, 2, 3]
    assert run.series("loss") == ([1, 2, 3], [1.0, 2.0, 3.0])


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    run = Run.create(tmp_path / "r", {})
    for step in (5, 10, 15, 20):
        run.save_checkpoint(step, {"step": step}, keep=2)
    assert sorted(p.name for p in (run.path / "checkpoints").iterdir()) == ["step-000000015.pt", "step-000000020.pt"]
    step, path = run.latest_checkpoint()
    assert step == 20 and torch.load(path)["step"] == 20


def test_a_half_written_file_is_invisible_and_cleaned_by_rewind(tmp_path):
    run = Run.create(tmp_path / "r", {})
    run.append_metrics(2, _rows([1, 2]))
    leftover = run.path / "metrics" / ".part-000000004.parquet.abc.tmp"
    leftover.write_bytes(b"PAR1 half")  # what a SIGKILL during a write leaves
    assert run.metrics().num_rows == 2
    run.rewind(2)
    assert not leftover.exists()


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    store.write_json(target, {"v": 1})

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.write_atomic(target, fail)
    assert target.read_text().strip().startswith("{") and list(tmp_path.iterdir()) == [target]


def test_tables_and_names(tmp_path):
    run = Run.create(tmp_path / "r", {})
    assert run.table("hist") is None
    run.append_table("hist", 5, pa.table({"step": [5], "layer": [1]}))
    run.append_table("hist", 9, pa.table({"step": [9], "layer": [1]}))
    assert run.table("hist")["step"].to_pylist() == [5, 9]
    with pytest.raises(StoreError, match="table name"):
        run.append_table("../evil", 1, pa.table({"a": [1]}))


def test_list_and_query_across_runs(tmp_path):
    for name, lr in (("a", 0.1), ("b", 0.2)):
        Run.create(tmp_path / name, {"lr": lr}).append_metrics(2, _rows([1, 2]))
    (tmp_path / "not-a-run").mkdir()
    runs = store.list_runs(tmp_path)
    assert [r.name for r in runs] == ["a", "b"]
    rows = query("select run, lr, sum(value) as s from metrics join runs using (run) "
                       "group by run, lr order by run", runs).to_pylist()
    assert rows == [{"run": "a", "lr": 0.1, "s": 3.0}, {"run": "b", "lr": 0.2, "s": 3.0}]
    assert query("select count(*) as n from metrics", []).to_pylist() == [{"n": 0}]
    with pytest.raises(StoreError, match="not a folder"):
        store.list_runs(tmp_path / "absent")
    with pytest.raises(StoreError, match="not a run"):
        Run(tmp_path / "not-a-run")


def test_epochs_pivot_the_long_metrics_and_final_reads_the_status(tmp_path):
    run = Run.create(tmp_path / "r", {"lr": 0.1})
    rows = {"step": [5, 5, 5, 5, 10, 10, 10], "epoch": [0, 0, 0, 0, 1, 1, 1],
            "split": ["train_epoch", "train_epoch", "test", "test", "train_epoch", "test", "train"],
            "name": ["loss", "accuracy", "loss", "accuracy", "loss", "loss", "loss"],
            "value": [1.0, 0.5, 1.2, 0.4, 0.8, 1.1, 9.0]}
    run.append_metrics(10, rows)
    assert run.epochs() == [
        {"epoch": 1, "step": 5, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.2, "test_accuracy": 0.4},
        {"epoch": 2, "step": 10, "train_loss": 0.8, "train_accuracy": None, "test_loss": 1.1, "test_accuracy": None}]
    run.set_status("finished", steps=10, test_loss=1.1)
    assert run.final() == {"run": "r", "status": "finished", "steps": 10, "test_accuracy": None, "test_loss": 1.1,
                           "train_loss": None, "seconds": None}
    assert Run.create(tmp_path / "empty", {}).epochs() == []


def test_query_reads_file_names_that_would_break_quoted_sql(tmp_path):
    run = Run.create(tmp_path / "it's a run", {"lr": 0.1})
    run.append_metrics(1, {"step": [1], "epoch": [0], "split": ["train"], "name": ["loss"], "value": [2.0]})
    got = query("select run, value from metrics", [run]).to_pylist()
    assert got == [{"run": "it's a run", "value": 2.0}]


def test_background_writes_land_in_order_before_the_block_ends(tmp_path):
    run = Run.create(tmp_path / "r", {})
    with run.background():
        for step in (2, 4, 6):
            run.append_metrics(step, _rows([step - 1, step]))
            run.save_checkpoint(step, {"x": torch.full((3,), float(step))})
        run.set_status("running", steps=6)
    assert run.metrics()["step"].to_pylist() == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in run._parts("checkpoints")] == [4, 6]  # the oldest pruned after the newer landed
    assert run.status() == {"status": "running", "steps": 6}
    assert not list(run.path.rglob("*.tmp"))


class FailsToSave:
    """Stands for a write that fails half-way (a full disk): pickling it raises."""

    def __reduce__(self):
        raise OSError(28, "No space left on device (simulated)")


def test_a_failed_background_write_is_raised_in_the_caller_and_stops_later_writes(tmp_path):
    run = Run.create(tmp_path / "r", {})
    with pytest.raises(OSError, match="No space left"), run.background():
        run.save_checkpoint(1, {"f": FailsToSave()})
        run.append_metrics(2, _rows([1, 2]))
    assert run.latest_checkpoint() is None and run.metrics().num_rows == 0  # the part after the failure was skipped
    assert not list(run.path.rglob("*.tmp"))
    with pytest.raises(RuntimeError, match="the block's own"), run.background():
        run.save_checkpoint(1, {"f": FailsToSave()})
        raise RuntimeError("the block's own error is the one reported")


def test_written_files_get_the_mode_the_umask_gives_not_the_temporary_files_0600(tmp_path, monkeypatch):
    monkeypatch.setattr(store.atomic, "_UMASK", 0o022)  # the usual umask, so that 0600 cannot pass
    run = Run.create(tmp_path / "r", {"lr": 0.1})
    run.append_metrics(1, _rows([1]))
    run.save_checkpoint(1, {"x": torch.ones(1)})
    expected = 0o644
    for path in (run.path / "config.json", run.path / "status.json", *run.path.glob("*/*.*")):
        assert path.stat().st_mode & 0o777 == expected, path


def _trained(tmp_path, name="r", **kw):
    from gradientflow import job
    from gradientflow.config import TrainConfig

    cfg = TrainConfig(data="digits", n_train=160, n_test=40, depth=1, width=8, batch_size=32, epochs=3, **kw)
    job.run(cfg, tmp_path / name)
    return Run(tmp_path / name)


def test_damaged_files_are_named_and_the_other_runs_still_list(tmp_path):
    from click.testing import CliRunner

    from gradientflow.cli import main

    good, bad = _trained(tmp_path, "good"), _trained(tmp_path, "bad")
    part = bad._parts("metrics")[-1][1]
    part.write_bytes(part.read_bytes()[:40])  # truncated
    with pytest.raises(StoreError, match=f"{part.name}' is damaged"):
        bad.metrics()
    (bad.path / "config.json").write_text('{"depth": 1, ')
    with pytest.raises(StoreError, match="config.json' is damaged"):
        bad.config()
    assert len(bad.damage()) == 2 and good.damage() == []
    res = CliRunner().invoke(main, ["runs", "list", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    import json

    status = {r["run"]: r["status"] for r in json.loads(res.output)}
    assert status == {"bad": "damaged", "good": "finished"}
    res = CliRunner().invoke(main, ["runs", "show", str(bad.path)])
    assert res.exit_code == 2 and "is damaged" in res.output and res.output.count("\n") == 1


def test_resume_falls_back_to_the_last_good_checkpoint(tmp_path):
    from gradientflow import job

    whole = _trained(tmp_path, "whole", checkpoint_every=2)
    cut = _trained(tmp_path, "cut", checkpoint_every=2)
    (newest_step, newest), (older_step, _) = cut._parts("checkpoints")[-1], cut._parts("checkpoints")[-2]
    newest.write_bytes(newest.read_bytes()[:100])
    summary = job.resume(cut.path)
    assert summary.status == "finished" and summary.steps == 15
    assert (newest.parent / (newest.name + ".damaged")).exists()  # kept aside, not deleted
    a = cut.read_checkpoint(cut.latest_checkpoint()[1])["model"]
    b = whole.read_checkpoint(whole.latest_checkpoint()[1])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a) and older_step < newest_step


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    run = _trained(tmp_path)
    step, path = run.latest_checkpoint()
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "batch": 0, "evil": Payload()}, path)
    with pytest.raises(StoreError, match="cannot be read safely"):
        run.read_checkpoint(path)


@pytest.mark.parametrize("sql, refused", [
    ("copy (select * from metrics) to 'OUT/x.csv'", "given COPY"),
    ("attach 'OUT/y.db'", "given ATTACH"),
    ("install httpfs", "given LOAD"),
    ("create table t as select 1", "given CREATE"),
    ("select 1; select 2", r"given SELECT \+ SELECT"),
    ("set enable_external_access = true", "given SET"),
])
def test_sql_runs_one_select_and_nothing_else(tmp_path, sql, refused):
    r = Run.create(tmp_path / "a", {"lr": 0.1})
    r.append_metrics(1, {"step": [1], "epoch": [0], "split": ["train"], "name": ["loss"], "value": [1.0]})
    with pytest.raises(ValueError, match=refused):
        query(sql.replace("OUT", str(tmp_path)), [r])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing written


def test_sql_cannot_read_files_outside_the_store(tmp_path):
    r = Run.create(tmp_path / "a", {"lr": 0.1})
    (tmp_path / "secret.csv").write_text("x\n1\n")
    for sql in (f"select * from read_csv('{tmp_path}/secret.csv')", f"select * from '{tmp_path}/secret.csv'",
                f"select * from read_parquet('{tmp_path}/a/metrics/*.parquet')"):
        with pytest.raises(duckdb.Error, match="disabled by configuration"):
            query(sql, [r])
    assert query("select count(*) as n from runs", [r]).to_pylist() == [{"n": 1}]


def test_create_removes_the_temporary_folder_a_killed_create_of_the_same_run_left(tmp_path):
    import tempfile

    left = Path(tempfile.mkdtemp(dir=tmp_path, prefix=".run.", suffix=".tmp"))  # as a kill -9 mid-create leaves it
    other = Path(tempfile.mkdtemp(dir=tmp_path, prefix=".run.b.", suffix=".tmp"))  # another run's ("run.b")
    Run.create(tmp_path / "run", {"a": 1})
    assert not left.exists() and other.exists() and (tmp_path / "run" / "config.json").exists()
