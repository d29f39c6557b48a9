"""Data loading from the official on-disk formats, .npz files and the bundled subset."""

import io
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from harness.data import BUNDLED_SUBSET, BundledSubsetWarning, load_arrays, load_tensors
from zoo.errors import DataError, UnknownNameError

RNG = np.random.default_rng(0)


def _images(n):
    return RNG.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _cifar_batch(path, x, y, label_key):
    data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: list(map(int, y))}, f)


def test_cifar10_official_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    xs = [_images(4) for _ in range(6)]
    ys = [RNG.integers(0, 10, 4) for _ in range(6)]
    for i in range(5):
        _cifar_batch(folder / f"data_batch_{i + 1}", xs[i], ys[i], b"labels")
    _cifar_batch(folder / "test_batch", xs[5], ys[5], b"labels")
    x, y = load_arrays("cifar10", "train", tmp_path)
    assert np.array_equal(x, np.concatenate(xs[:5])) and np.array_equal(y, np.concatenate(ys[:5]))
    x, y = load_arrays("cifar10", "test", tmp_path)
    assert np.array_equal(x, xs[5]) and y.dtype == np.int64


def test_cifar100_official_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x, y = _images(5), np.array([0, 99, 50, 3, 7])
    _cifar_batch(folder / "test", x, y, b"fine_labels")
    got_x, got_y = load_arrays("cifar100", "test", tmp_path)
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)


def test_svhn_mat_maps_label_10_to_0(tmp_path):
    x = _images(3)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": np.array([[10], [1], [9]], dtype=np.uint8)})
    got_x, got_y = load_arrays("svhn", "test", tmp_path)
    assert np.array_equal(got_x, x) and got_y.tolist() == [0, 1, 9]


def test_npz_and_jpeg_npz(tmp_path):
    x, y = _images(3), np.array([1, 2, 3])
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=y)
    assert np.array_equal(load_arrays("cifar10", "test", tmp_path)[0], x)
    flat = np.full((3, 32, 32, 3), 128, dtype=np.uint8)
    blobs = []
    for img in flat:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    np.savez(tmp_path / "cifar10_train_jpeg.npz", jpeg=np.concatenate(blobs), offsets=offsets, y=y)
    got, labels = load_arrays("cifar10", "train", tmp_path)
    assert got.shape == (3, 32, 32, 3) and np.abs(got.astype(int) - 128).max() <= 2
    assert labels.tolist() == [1, 2, 3]


def test_bundled_subset_default_warns_and_is_real_cifar10():
    with pytest.warns(BundledSubsetWarning, match="leaderboard"):
        x, y = load_tensors("cifar10", "test", None, n_examples=100)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0 <= x.min() and x.max() <= 1 and len(set(y.tolist())) == 10
    assert BUNDLED_SUBSET.stat().st_size < 4 * 2**20


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python"):
        load_arrays("cifar100", "test", tmp_path)
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_arrays("svhn", "test", None)
    with pytest.raises(DataError, match="does not exist"):
        load_arrays("cifar10", "test", tmp_path / "nowhere")


def test_corrupt_and_wrong_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="not a valid CIFAR batch"):
        load_arrays("cifar10", "test", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("never",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_arrays("cifar10", "test", tmp_path)
    np.savez(tmp_path / "cifar10_train.npz", x=np.zeros((2, 28, 28), np.uint8), y=np.zeros(2))
    with pytest.raises(DataError, match=r"uint8 \(N,32,32,3\)"):
        load_arrays("cifar10", "train", tmp_path)
    np.savez(tmp_path / "cifar10_train.npz", x=_images(2), y=np.array([3, 12]))
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        load_arrays("cifar10", "train", tmp_path)
    (tmp_path / "cifar10_train.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_arrays("cifar10", "train", tmp_path)


def test_n_examples_out_of_range_and_unknown_dataset():
    with pytest.raises(DataError, match="out of range"), pytest.warns(BundledSubsetWarning):
        load_tensors("cifar10", "test", None, n_examples=5000)
    with pytest.raises(UnknownNameError, match="cifar10"):
        load_arrays("cifar-1000", "test", None)
