"""``runs sql`` has limits: time, memory, rows; no readable temporary folder; configs cannot break or spoof
the ``runs`` table. Each test is an attack that got through before."""

import json
import time

import duckdb
import pytest
from click.testing import CliRunner

from gradientflow.cli import main
from gradientflow.sql import query, truncated
from gradientflow.store import Run

ENDLESS = {  # queries that ran on unbounded before
    "recursive": "with recursive t(n) as (select 1 union all select n + 1 from t) select count(*) from t",
    "range": "select count(*) from range(1000000000000)",
}


def _run(path, config=None):
    r = Run.create(path, config if config is not None else {"lr": 0.1})
    r.append_metrics(1, {"step": [1], "epoch": [0], "split": ["train"], "name": ["loss"], "value": [1.0]})
    return r


def invoke(*args):
    return CliRunner().invoke(main, list(args))


# --- time ---

@pytest.mark.parametrize("sql", ENDLESS.values(), ids=ENDLESS.keys())
def test_an_endless_query_is_stopped_at_the_timeout(tmp_path, sql):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^query stopped after 0.5 s \(--timeout\); narrow it or raise --timeout$"):
        query(sql, [_run(tmp_path / "a")], timeout=0.5)
    assert time.monotonic() - start < 5


def test_cli_timeout_is_one_line_and_exit_2(tmp_path):
    _run(tmp_path / "a")
    res = invoke("runs", "sql", ENDLESS["recursive"], "--root", str(tmp_path), "--timeout", "0.5")
    assert res.exit_code == 2
    assert res.output == "error: query stopped after 0.5 s (--timeout); narrow it or raise --timeout\n"


@pytest.mark.parametrize("value, says", [
    ("0", "--timeout 0.0 is out of range; give seconds from 0.1 to 3600"),
    ("-1", "--timeout -1.0 is out of range"), ("nan", "--timeout nan is out of range"),
    ("inf", "--timeout inf is out of range"), ("3601", "--timeout 3601.0 is out of range"),
    ("soon", "'soon' is not a valid float"),
])
def test_cli_refuses_a_timeout_out_of_range_in_one_line(tmp_path, value, says):
    _run(tmp_path / "a")
    res = invoke("runs", "sql", "select 1", "--root", str(tmp_path), "--timeout", value)
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert says in res.output


@pytest.mark.parametrize("kwargs, refused", [
    ({"timeout": 0}, "--timeout 0 is out of range; give seconds from 0.1 to 3600"),
    ({"timeout": float("nan")}, "--timeout nan is out of range"),
    ({"max_memory": "lots"}, "--max-memory 'lots': expected a size such as 512M"),
    ({"max_memory": "1KB"}, "--max-memory '1KB': at least 16.0 MiB"),
    ({"max_memory": "1000TB"}, "--max-memory '1000TB' is more than this machine's"),
    ({"limit": 0}, "--limit 0 is out of range; give a number of rows from 1 to 1000000"),
])
def test_limits_out_of_range_are_refused_naming_the_value(tmp_path, kwargs, refused):
    with pytest.raises(ValueError, match="^" + refused.replace("(", r"\(").replace(")", r"\)")):
        query("select 1", [_run(tmp_path / "a")], **kwargs)


# --- memory and rows ---

@pytest.mark.parametrize("sql", [
    "select string_agg(repeat('x', 1000), '') as s from range(1000000)",  # one huge value: 1 GB
    "select range, count(*) as n from range(20000000) group by range",  # a hash table that would spill
])
def test_a_query_past_max_memory_is_one_line_and_spills_nothing(tmp_path, monkeypatch, sql):
    monkeypatch.chdir(tmp_path)
    _run(tmp_path / "a")
    with pytest.raises(ValueError, match=r"^query needs more than 64MB of memory \(--max-memory\); narrow it"):
        query(sql, [Run(tmp_path / "a")], max_memory="64MB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no ./.tmp spill folder


def test_cli_max_memory_is_one_line_and_exit_2(tmp_path):
    _run(tmp_path / "a")
    res = invoke("runs", "sql", "select string_agg(repeat('x', 1000), '') from range(1000000)",
                 "--root", str(tmp_path), "--max-memory", "64MB")
    assert res.exit_code == 2 and res.output.startswith("error: query needs more than 64MB") and \
        res.output.count("\n") == 1, res.output


def test_rows_are_capped_and_a_cut_result_says_so(tmp_path):
    runs = [_run(tmp_path / "a")]
    endless = query("select range as i from range(1000000000000)", runs, limit=3)  # stops at limit + 1 rows
    assert endless.column("i").to_pylist() == [0, 1, 2] and truncated(endless)
    ordered = query("select range as i from range(100000) order by i desc", runs, limit=3)
    assert ordered.column("i").to_pylist() == [99999, 99998, 99997] and truncated(ordered)
    whole = query("select range as i from range(3)", runs, limit=3)
    assert whole.num_rows == 3 and not truncated(whole)
    res = CliRunner().invoke(main, ["runs", "sql", "select range as i from range(5)", "--root", str(tmp_path),
                                    "--limit", "2", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == [{"i": 0}, {"i": 1}]
    assert res.stderr == "note: first 2 rows shown; more matched (--limit)\n"


# --- files ---

@pytest.mark.parametrize("sql", [
    "select content from read_text('.tmp/secret.txt')",
    "select * from read_csv('.tmp/secret.csv')",
    "select * from '.tmp/secret.csv'",
    "select content from read_text('TMP/.tmp/secret.txt')",
])
def test_duckdbs_temporary_folder_cannot_be_read(tmp_path, monkeypatch, sql):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    for name in ("secret.txt", "secret.csv"):
        (tmp_path / ".tmp" / name).write_text("password\n")
    _run(tmp_path / "a")
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        query(sql.replace("TMP", str(tmp_path)), [Run(tmp_path / "a")])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp", "a"]  # and nothing new in the working folder


# --- the runs table ---

def test_config_fields_named_run_or_status_cannot_pose_as_another_run(tmp_path):
    r = _run(tmp_path / "real", {"run": "other", "STATUS": "finished", "config_run": 1, "lr": 0.1})
    r.set_status("diverged")
    row = query("select * from runs", [r]).to_pylist()
    assert row == [{"run": "real", "status": "diverged", "config_config_run": "other", "config_STATUS": "finished",
                    "config_run": 1, "lr": 0.1}]
    metrics = query("select distinct run from metrics join runs using (run)", [r]).to_pylist()
    assert metrics == [{"run": "real"}]


def test_a_field_of_mixed_types_across_runs_becomes_text_and_the_others_stay(tmp_path):
    runs = [_run(tmp_path / "a", {"lr": 0.1, "depth": 3, "opt": {"name": "sgd"}, "flag": True}),
            _run(tmp_path / "b", {"lr": "0.2", "depth": 4, "opt": {"name": "adam", "betas": [0.9, 0.99]}, "flag": 2}),
            _run(tmp_path / "c", {"depth": None, "big": 2**70})]
    rows = query("select run, lr, depth, opt, flag, big from runs order by run", runs).to_pylist()
    assert rows == [
        {"run": "a", "lr": "0.1", "depth": 3, "opt": '{"name": "sgd"}', "flag": "true", "big": None},
        {"run": "b", "lr": "0.2", "depth": 4, "opt": '{"name": "adam", "betas": [0.9, 0.99]}', "flag": "2",
         "big": None},
        {"run": "c", "lr": None, "depth": None, "opt": None, "flag": None, "big": "1180591620717411303424"}]
    assert query("select sum(depth) as d from runs", runs).to_pylist() == [{"d": 7}]  # numbers stay numbers


def test_the_runs_table_has_its_columns_with_no_runs():
    assert query("select run, status from runs", []).num_rows == 0
