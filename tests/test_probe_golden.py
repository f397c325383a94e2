"""The probes give the numbers recorded in ``tests/data/golden_probes.json.gz`` (``probe_golden.py``): an MLP
with user statistics and windows, a sparse sampling, a CNN with BatchNorm, functional activations, norm
layers, ``nn.MultiheadAttention`` and a Transformer layer, ``scaled_dot_product_attention``, a
bidirectional LSTM, a GRU cell stepped by hand, manual steps with gradient accumulation, two-process DDP."""

import gzip
import json
import math
import os

import pytest

import probe_golden

EXACT = os.environ.get("GF_GOLDEN_EXACT") == "1"  # bit for bit: on the machine that recorded the file



@pytest.fixture(scope="module")
def golden():
    return json.loads(gzip.decompress(probe_golden.GOLDEN.read_bytes()))


def _same(got, want, where):
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (where, list(got), list(want))
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not EXACT:
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-9), (where, got, want)
    else:
        assert got == want and type(got) is type(want), (where, got, want)


@pytest.mark.parametrize("name", [*probe_golden.SCENARIOS, "ddp"])
def test_the_probes_give_the_recorded_outputs(name, golden):
    got = json.loads(json.dumps(probe_golden.record(name), sort_keys=True))
    _same(got, golden[name], name)


def test_the_comparison_fails_on_a_changed_number(golden):
    doctored = json.loads(json.dumps(golden["mlp"]))
    doctored["summary"][0]["act_std"] *= 1.001
    with pytest.raises(AssertionError):
        _same(doctored, golden["mlp"], "mlp")
