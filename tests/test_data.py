import gzip
import struct

import numpy as np
import pytest
import torch

from gradientflow import data
from gradientflow.data import DataError


@pytest.mark.parametrize("name", data.TOY + ("mixture",))
def test_generated_sets_have_the_asked_sizes_and_are_seeded(name):
    a = data.load(name, n_train=300, n_test=100, seed=3)
    b = data.load(name, n_train=300, n_test=100, seed=3)
    c = data.load(name, n_train=300, n_test=100, seed=4)
    assert a.x_train.shape[0] == 300 and a.x_test.shape[0] == 100
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    counts = torch.bincount(a.y_train)
    assert len(counts) == a.classes and counts.min() > 300 / a.classes / 2  # no class starved


def test_toy_labels_follow_their_rule_without_noise():
    xor = data.load("xor", noise=0.0)
    assert torch.equal(xor.y_train, (xor.x_train[:, 0] * xor.x_train[:, 1] > 0).long())
    circle = data.load("circle", noise=0.0)
    r = circle.x_train.norm(dim=1)
    assert (r[circle.y_train == 1] <= 2.5).all() and (r[circle.y_train == 0] >= 3.5).all()


def test_digits_and_mnist1d():
    d = data.load("digits")
    assert (d.features, d.classes, len(d.y_train) + len(d.y_test)) == (64, 10, 1797)
    state = np.random.get_state()[1].copy()
    m = data.load("mnist1d", n_train=400, n_test=100)
    assert (m.features, m.classes, len(m.y_train), len(m.y_test)) == (40, 10, 400, 100)
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global generator untouched
    with pytest.raises(DataError, match="multiple of 10"):
        data.load("mnist1d", n_train=401, n_test=100)


def test_normalisation_is_fitted_on_the_training_split_only():
    d = data.load("digits")
    s = data.normalize(d, "standardize")
    assert s.x_train.mean(0).abs().max() < 1e-5
    spread = s.x_train.std(0, correction=0)
    assert ((spread - 1).abs() < 1e-4).logical_or(spread == 0).all()  # constant pixels stay 0
    # the test split is transformed with the training statistics, not its own
    mean, std = d.x_train.double().mean(0), d.x_train.double().std(0, correction=0)
    expect = (d.x_test.double() - mean) / torch.where(std > 1e-12, std, 1)
    assert torch.allclose(s.x_test.double(), expect, atol=1e-5)
    c = data.normalize(d, "center")
    assert torch.allclose(c.x_train.std(0), d.x_train.std(0), atol=1e-4)
    shifted = data.normalize(d, "shift")
    assert shifted.x_train.min() == 0 and torch.allclose(shifted.x_train.std(0), s.x_train.std(0), atol=1e-4)
    assert shifted.x_train.mean() > 0.5  # far from centred: the C4 setting
    assert data.normalize(d, "none") is d
    with pytest.raises(DataError, match="unknown normalization"):
        data.normalize(d, "whiten")


def _idx(array: np.ndarray) -> bytes:
    codes = {np.dtype("uint8"): 0x08, np.dtype(">f4"): 0x0D}
    head = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def _write_mnist(folder, gz=False, n=(12, 5), labels=None):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n[0], 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n[0]) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n[1], 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (labels if labels is not None else rng.integers(0, 10, n[1])).astype(np.uint8),
    }
    for name, a in files.items():
        raw = _idx(a)
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    files = _write_mnist(tmp_path, gz)
    d = data.load(f"idx:{tmp_path}")
    assert d.x_train.shape == (12, 12) and d.x_test.shape == (5, 12)
    assert torch.allclose(d.x_train, torch.tensor(files["train-images-idx3-ubyte"].reshape(12, -1) / 255.0).float())
    assert torch.equal(d.y_test, torch.tensor(files["t10k-labels-idx1-ubyte"]).long())
    assert data.load(f"idx:{tmp_path}", n_train=7).x_train.shape == (7, 12)


def test_idx_float_arrays_are_read_big_endian(tmp_path):
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    (tmp_path / "f.idx").write_bytes(_idx(a))
    assert np.array_equal(data.read_idx(tmp_path / "f.idx"), a)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-3], "truncated or padded"),
    (lambda raw: raw[:6], "truncated inside its header"),
    (lambda raw: b"\x08\x03" + raw[2:], "not an IDX file"),
    (lambda raw: b"", "not an IDX file"),
    (lambda raw: gzip.compress(raw)[:-10], "damaged gzip"),
])
def test_damaged_idx_files_are_refused(tmp_path, damage, message):
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message):
        data.load(f"idx:{tmp_path}")


def test_idx_missing_file_and_labels_out_of_range(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        data.load(f"idx:{tmp_path / 'nope'}")
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels"):
        data.load(f"idx:{tmp_path}")
    _write_mnist(tmp_path, labels=np.array([0, 1, 2, 3, 200]))
    with pytest.raises(DataError, match="y_test has label 200, out of range"):
        data.load(f"idx:{tmp_path}")


def _npz(path, **arrays):
    base = dict(x_train=np.ones((6, 3)), y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=np.ones((2, 3)),
                y_test=np.array([1, 2]))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_round_trip(tmp_path):
    path = _npz(tmp_path / "d.npz", x_train=np.arange(18.0).reshape(6, 3))
    d = data.load(f"npz:{path}")
    assert d.classes == 3 and d.x_train[5, 2] == 17


@pytest.mark.parametrize("arrays, message", [
    (dict(y_test=None), "missing array.*y_test"),
    (dict(x_train=np.array([[1.0, np.nan, 0]] * 6)), "NaN/Inf"),
    (dict(x_test=np.array([[np.inf, 0, 0]] * 2)), "x_test has 2 NaN/Inf"),
    (dict(y_train=np.array([0, 1, 2, 0, 1, -1])), "labels must be >= 0"),
    (dict(y_train=np.array([0, 1, 0.5, 0, 1, 1])), "non-integer labels"),
    (dict(y_test=np.array([1, 3])), "out of range"),
    (dict(y_train=np.zeros(6, dtype=int)), "single class"),
    (dict(y_train=np.array([0, 1, 2])), "one label per row"),
    (dict(x_test=np.ones((2, 4))), "features"),
    (dict(x_train=np.ones((0, 3)), y_train=np.array([], dtype=int)), "none empty"),
    (dict(x_train=np.array([["a"] * 3] * 6)), "expected numbers"),
])
def test_bad_npz_contents_are_refused_before_training(tmp_path, arrays, message):
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load(f"npz:{path}")


def test_a_file_that_is_not_npz(tmp_path):
    (tmp_path / "fake.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load(f"npz:{tmp_path / 'fake.npz'}")
    with pytest.raises(DataError, match="no such file"):
        data.load(f"npz:{tmp_path / 'absent.npz'}")


@pytest.mark.parametrize("spec", ["mnist", "idx:", "csv:x.csv", ""])
def test_unknown_specs(spec):
    with pytest.raises(DataError, match="unknown data"):
        data.load(spec)


def test_bad_sizes_and_noise():
    with pytest.raises(DataError, match="n_train=0"):
        data.load("xor", n_train=0)
    with pytest.raises(DataError, match="noise=nan"):
        data.load("xor", noise=float("nan"))
    with pytest.raises(DataError, match="digits has 1797 samples"):
        data.load("digits", n_train=1700, n_test=200)


def test_regressions_found_by_fuzzing(tmp_path):
    with pytest.raises(DataError, match="y_train has label 2147483647; labels must be below 100,000"):
        data.load(f"npz:{_npz(tmp_path / 'a.npz', y_train=np.array([0, 1, 2, 0, 1, 2**31 - 1]))}")
    _write_mnist(tmp_path, n=(0, 5))
    with pytest.raises(DataError, match=r"x_train has shape \(0, 4, 3\); expected \(samples, rows, ...\), none empty"):
        data.load(f"idx:{tmp_path}")
