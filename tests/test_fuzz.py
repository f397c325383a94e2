"""Generated inputs (issue 17): arguments for every command, config files, IDX and NPZ files.

Every case must end in success or in one line on stderr naming the problem with exit code 2 (exit 1
only where a command reports a result: a run that diverged), never a traceback and never a
half-written output folder. The number of cases each suite tried is printed at the end of the test
session (``conftest.py``)."""

from __future__ import annotations

import gzip
import io
import json
import math
import struct

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradientflow import experiments
from gradientflow.cli import main
from gradientflow.config import TrainConfig

from conftest import FUZZ_CASES

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SMALL = ["--epochs", "1", "--n-train", "60", "--n-test", "40", "--quiet"]  # appended: the last value wins
NAMES = ["relu", "tanh", "sigmoid", "maxout", "leaky_relu", "he", "xavier", "normal", "critical", "adam", "sgd",
         "momentum", "digits", "mnist1d", "xor", "spiral", "none", "shift", "cosine", "warmup", "C7", "C21", "C99",
         "loss", "train", "cpu", "cuda", "auto", "idx:/nonexistent", "npz:/dev/null", "select 1"]
numbers = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["0", "-1", "2147483648", "1e308", "-1e308"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["nan", "inf", "-inf"]))
texts = st.one_of(st.sampled_from(NAMES), st.text(min_size=0, max_size=12), numbers)


def _leaves(group, prefix=()):
    import click

    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = dict(_leaves(main))


def _value(param, tmp):
    """A strategy for one option's or argument's value: mostly plausible, often wrong."""
    import click

    paths = st.sampled_from([str(tmp / "new"), str(tmp), str(tmp / "file.txt"), str(tmp / "run" / "metrics"), "",
                             "/nonexistent/x", str(tmp / "run")])
    if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
        return numbers
    if param.name in ("out", "root", "plot_dir", "run", "runs", "config_file", "folder", "path"):
        return st.one_of(paths, texts)
    return texts


def _check(res, out_paths_before: dict, allow_one: bool = False) -> None:
    """Success, or one line on stderr and exit 2 (exit 1 with allow_one); no traceback; an output
    folder that did not exist before the failed command still does not."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    assert res.exit_code in ((0, 1, 2) if allow_one else (0, 2)), (res.exit_code, res.output)
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        for path, existed in out_paths_before.items():
            assert existed or not path.exists(), f"a failed command left {path}"


def _prepare(tmp):
    (tmp / "file.txt").write_text("not a run\n")
    if not (tmp / "run").exists():
        res = CliRunner().invoke(main, ["train", "--data", "xor", "--width", "4", *SMALL, "--out", str(tmp / "run")])
        assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """The fuzz cases' folder, and their working directory: a generated relative path ("nan",
    "") writes there, never into the checkout; the checkout is checked untouched at the end."""
    import os

    tmp = tmp_path_factory.mktemp("fuzz")
    _prepare(tmp)
    home = os.getcwd()
    before = sorted(os.listdir(home))
    os.chdir(tmp)
    try:
        yield tmp
    finally:
        os.chdir(home)
    assert sorted(os.listdir(home)) == before, "a fuzz case wrote into the working directory"


@pytest.fixture
def no_experiments(monkeypatch):
    """``reproduce`` checks its arguments for real; the experiments themselves are replaced by a stand-in."""
    def stand_in(name, *, quick, seed, out, resume=False):
        mod = experiments.load(name)
        return {"experiment": name, "seconds": 0.0, "records": [
            experiments._record(c, name, mod.QUICK, quick, seed, None, message="not run") for c in mod.CLAIMS]}

    monkeypatch.setattr(experiments, "run_one", stand_in)


SLOW = {("plot", "activations"): 3, ("activations",): 3}  # each success draws or times every activation


def _lab_without_a_server(monkeypatch):
    """``lab`` checks its arguments and its address for real, but does not serve or open a browser,
    and a generated host name resolves only if it is loopback (no DNS queries from the fuzz)."""
    import socket
    import webbrowser

    import uvicorn

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: None)
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: True)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_generated_arguments_for_every_command(path, place, no_experiments, monkeypatch):
    import click

    if path == ("lab",):
        _lab_without_a_server(monkeypatch)

    command = COMMANDS[path]
    params = [p for p in command.params if p.name not in ("help",)]

    @settings(FUZZ, max_examples=SLOW.get(path, FUZZ.max_examples))
    @given(data=st.data())
    def case(data):
        args = list(path)
        for p in data.draw(st.lists(st.sampled_from(params), max_size=5, unique_by=lambda p: p.name) if params
                           else st.just([])):
            if isinstance(p, click.Argument):
                args.append(data.draw(_value(p, place)))
            elif p.is_flag:
                args.append(p.opts[0])
            else:
                args += [p.opts[0], data.draw(_value(p, place))]
        if path == ("train",):
            args += [*SMALL, "--out", str(place / "out-train")]
        if path == ("reproduce",):
            args += ["--jobs", "1", "--json"]
        outs = (place / "new", place / "out-train")  # removed before each case: a failed one must not leave them
        for p in outs:
            _rmtree(p)
        FUZZ_CASES["arguments"] = FUZZ_CASES.get("arguments", 0) + 1
        res = CliRunner().invoke(main, args)
        _check(res, {p: False for p in outs}, allow_one=path in (("train",), ("reproduce",)))
        for p in outs:
            _rmtree(p)

    case()


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


config_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=10), st.sampled_from(NAMES)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=4)
config_keys = st.one_of(st.sampled_from(sorted(TrainConfig.model_fields)), st.text(min_size=1, max_size=10))
plausible = st.fixed_dictionaries({}, optional={
    "activation": st.sampled_from(["relu", "tanh", "sigmoid", "maxout", "elu"]), "depth": st.integers(0, 4),
    "width": st.integers(1, 32), "lr": st.floats(1e-4, 1.0), "optimizer": st.sampled_from(["sgd", "momentum", "adam"]),
    "init": st.sampled_from(["he", "xavier", "normal", "zeros"]), "schedule": st.sampled_from(["constant", "cosine"]),
    "clip_norm": st.floats(0.01, 10), "batch_size": st.integers(1, 80), "probe": st.booleans(),
    "data": st.sampled_from(["xor", "spiral", "mnist1d"])})


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(str(value))


@FUZZ
@given(fields=st.one_of(plausible, st.dictionaries(config_keys, config_values, max_size=6),
                        st.tuples(plausible, st.dictionaries(config_keys, config_values, max_size=2)).map(
                            lambda two: {**two[0], **two[1]})),
       kind=st.sampled_from(["yaml", "yaml", "toml", "toml", "raw"]), raw=st.binary(max_size=40))
def test_generated_config_files(place, fields, kind, raw):
    path = place / f"c.{'toml' if kind == 'toml' else 'yaml'}"
    if kind == "yaml":
        path.write_text(yaml.safe_dump(fields, allow_unicode=True))
    elif kind == "toml":
        path.write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in fields.items() if v is not None))
    else:
        path.write_bytes(raw)
    out = place / "out-config"
    _rmtree(out)
    FUZZ_CASES["config files"] = FUZZ_CASES.get("config files", 0) + 1
    res = CliRunner().invoke(main, ["train", "--config", str(path), *SMALL, "--out", str(out)])
    _check(res, {out: False}, allow_one=True)
    _rmtree(out)


IDX_TYPES = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}  # written independently of data.py


def _idx(array: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.dtype(IDX_TYPES[code])).tobytes()


def _arrays(draw):
    n, nt, f = draw(st.integers(0, 12)), draw(st.integers(0, 6)), draw(st.integers(0, 5))
    classes = draw(st.integers(1, 4))
    x = draw(st.sampled_from(["ok", "nan", "inf", "huge"]))
    xs = [np.random.default_rng(0).random((m, f)) * 255 for m in (n, nt)]
    if x != "ok" and n * f:
        xs[0][0, 0] = {"nan": np.nan, "inf": np.inf, "huge": 1e300}[x]
    labels = draw(st.sampled_from(["ok", "negative", "huge", "out of range", "wrong length", "2-d"]))
    ys = [np.arange(m) % classes for m in (n, nt)]
    if labels == "negative" and n:
        ys[0][0] = -1
    elif labels == "huge" and n:
        ys[0][0] = 2**31 - 1
    elif labels == "out of range" and nt:
        ys[1][0] = classes + 3
    elif labels == "wrong length":
        ys[0] = ys[0][:-1]
    elif labels == "2-d":
        ys[0] = ys[0].reshape(-1, 1)
    return xs[0], ys[0], xs[1], ys[1]


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_generated_idx_and_npz_files(place, data):
    draw = data.draw
    x, y, xt, yt = _arrays(draw)
    kind = draw(st.sampled_from(["idx", "npz"]))
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "magic", "pad", "gzip"]))
    folder = place / "files"
    _rmtree(folder)
    folder.mkdir()
    if kind == "idx":
        code = draw(st.sampled_from([0x08, 0x0B, 0x0D, 0x0E]))
        names = {"train-images-idx3-ubyte": (x, code), "train-labels-idx1-ubyte": (y, 0x0C),
                 "t10k-images-idx3-ubyte": (xt, code), "t10k-labels-idx1-ubyte": (yt, 0x0C)}
        victim = draw(st.sampled_from(sorted(names)))
        for name, (a, c) in names.items():
            with np.errstate(invalid="ignore", over="ignore"):
                raw = _idx(np.nan_to_num(a, nan=0, posinf=255) if c in (0x08, 0x0B, 0x0C) else a, c)
            if name == victim:
                raw = _damage(raw, damage, draw)
            (folder / name).write_bytes(raw)
        spec = f"idx:{folder}"
    else:
        buffer = io.BytesIO()
        np.savez(buffer, x_train=x, y_train=y, x_test=xt, y_test=yt)
        raw = _damage(buffer.getvalue(), damage, draw)
        (folder / "d.npz").write_bytes(raw)
        spec = f"npz:{folder / 'd.npz'}"
    out = place / "out-data"
    _rmtree(out)
    FUZZ_CASES["data files"] = FUZZ_CASES.get("data files", 0) + 1
    res = CliRunner().invoke(main, ["train", "--data", spec, "--width", "4", *SMALL[:2], "--quiet", "--out", str(out)])
    _check(res, {out: False}, allow_one=True)
    _rmtree(out)


def _damage(raw: bytes, how: str, draw) -> bytes:
    if how == "truncate":
        return raw[:draw(st.integers(0, max(len(raw) - 1, 0)))]
    if how == "magic":
        return draw(st.binary(min_size=4, max_size=4)) + raw[4:]
    if how == "pad":
        return raw + draw(st.binary(min_size=1, max_size=8))
    if how == "gzip":
        return gzip.compress(raw)[:draw(st.integers(2, 60))]
    return raw


def _mutated_table(table, how: str, draw):
    """A Parquet table that still parses but is not what the store wrote: a column dropped, renamed,
    cast to another type, or one added."""
    import pyarrow as pa

    column = draw(st.sampled_from(table.column_names))
    if how == "drop":
        return table.drop_columns([column])
    if how == "rename":
        return table.rename_columns([f"{c}_x" if c == column else c for c in table.column_names])
    if how == "cast":
        i = table.column_names.index(column)
        to = pa.binary() if pa.types.is_string(table.schema.field(i).type) else pa.string()  # numbers as text
        return table.set_column(i, column, table[column].cast(to))
    return table.append_column("extra", pa.array([1.0] * table.num_rows))


def _mutated_checkpoint(state: dict, draw) -> dict:
    import torch

    key = draw(st.sampled_from(sorted(state)))
    value = draw(st.sampled_from(["missing", -5, 10**9, 0.5, math.nan, "text", [], {}, "tensor", None]))
    if value == "missing":
        return {k: v for k, v in state.items() if k != key}
    if value == "tensor":
        value = torch.zeros(draw(st.integers(0, 5)), dtype=draw(st.sampled_from([torch.uint8, torch.float32])))
    if key == "model" and draw(st.booleans()):  # a weight of another shape rather than another type
        name = draw(st.sampled_from(sorted(state["model"])))
        return {**state, "model": {**state["model"], name: torch.zeros(3, 1)}}
    return {**state, key: value}


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_generated_damaged_parts_and_checkpoints(place, data):
    """A stored run with one part or checkpoint that parses but is foreign (another schema, a field of
    another type, a weight of another shape) or is cut short: every command reads it, names it or
    falls back from it (issue 30), in one line, never a traceback."""
    import shutil

    import pyarrow.parquet as pq
    import torch

    from gradientflow.store import Run

    draw = data.draw
    run_dir = place / "damaged-run"
    _rmtree(run_dir)
    shutil.copytree(place / "run", run_dir)
    run = Run(run_dir)
    what = draw(st.sampled_from(["metrics", "checkpoint"]))
    how = draw(st.sampled_from(["drop", "rename", "cast", "add", "truncate"]))
    if what == "metrics":
        part = draw(st.sampled_from([p for _, p in run._parts("metrics")]))
        if how == "truncate":
            part.write_bytes(part.read_bytes()[:draw(st.integers(0, part.stat().st_size - 1))])
        else:
            pq.write_table(_mutated_table(pq.read_table(part), how, draw), part)
    else:
        step, path = run.latest_checkpoint()
        if how == "truncate":
            path.write_bytes(path.read_bytes()[:draw(st.integers(0, path.stat().st_size - 1))])
        else:
            torch.save(_mutated_checkpoint(torch.load(path, weights_only=True), draw), path)
    FUZZ_CASES["damaged runs"] = FUZZ_CASES.get("damaged runs", 0) + 1
    listed = CliRunner().invoke(main, ["runs", "list", str(run_dir), "--json"])
    _check(listed, {})
    assert listed.exit_code == 0
    for args in (["runs", "show", str(run_dir)], ["runs", "sql", "select count(*) from metrics", "--root", str(run_dir)],
                 ["train", "--resume", "--out", str(run_dir), "--epochs", "2", "--quiet"]):
        _check(CliRunner().invoke(main, args), {}, allow_one=args[0] == "train")
    _rmtree(run_dir)
