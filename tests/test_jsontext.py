"""Standard JSON everywhere (issue 30): a diverged run's status.json and the ``--json`` output of
``train`` and ``runs list`` hold no bare NaN or Infinity, which strict parsers refuse."""

import json
import math
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from gradientflow import jsontext
from gradientflow.cli import main


def strict(text: str):
    """Parse as JavaScript's JSON.parse would: the tokens NaN, Infinity and -Infinity are errors."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_and_strings():
    obj = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32("nan"), "d": (np.float64(2.0), 3)}
    assert strict(jsontext.dumps(obj)) == {"a": None, "b": ["inf", "-inf", 1.5], "c": None, "d": [2.0, 3]}
    with pytest.raises(ValueError):
        strict(json.dumps(obj["b"]))  # the check itself fails on what Python writes by default


def test_exact_mode_reads_back_bit_for_bit():
    values = [math.nan, math.inf, -math.inf, 5e-324, -0.0, 0.1 + 0.2]
    back = jsontext.loads(jsontext.dumps({"v": values}, exact=True), exact=True)["v"]
    assert strict(jsontext.dumps({"v": values}, exact=True))
    assert [struct.pack("<d", v) for v in back[1:]] == [struct.pack("<d", v) for v in values[1:]]
    assert math.isnan(back[0])
    assert jsontext.loads("[NaN, Infinity]")[1] == math.inf  # files written by older versions still read


def test_a_diverged_run_writes_standard_json_in_files_and_on_stdout(tmp_path):
    res = CliRunner().invoke(main, ["train", "--data", "spiral", "--n-train", "256", "--width", "32", "--epochs", "2",
                                    "--optimizer", "sgd", "--lr", "1000", "--normalize", "none", "--depth", "10",
                                    "--init", "normal", "--std", "3", "--out", str(tmp_path / "run"), "--quiet", "--json"])
    assert res.exit_code == 1, res.output
    summary = strict(res.stdout)  # the one-line reason goes to stderr
    assert summary["status"] == "diverged"
    status = strict((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "diverged" and None in status.values()  # a NaN loss, now null
    listed = CliRunner().invoke(main, ["runs", "list", str(tmp_path), "--json"])
    assert listed.exit_code == 0 and strict(listed.output)[0]["status"] == "diverged"
