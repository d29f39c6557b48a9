"""Test and train splits of CIFAR-10, CIFAR-100 and SVHN from local files.

``data_dir`` may hold any of:
- torchvision's official layouts: ``cifar-10-batches-py/``, ``cifar-100-python/``,
  SVHN ``train_32x32.mat`` / ``test_32x32.mat``;
- .npz files ``{dataset}_{split}.npz`` with ``x`` uint8 (N,32,32,3) and ``y``, or
  ``{dataset}_{split}_jpeg.npz`` with ``jpeg`` bytes, ``offsets`` (N+1,) and ``y``.
``data_dir`` may also be one .npz file. With ``data_dir=None`` the bundled
CIFAR-10 test subset (the first images of the test file; not the official
split) is used, with a warning.
"""

from __future__ import annotations

import io
import numbers
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from zoo.datasets_meta import NUM_CLASSES, check_dataset
from zoo.errors import DataError

BUNDLED_SUBSET = Path(__file__).parent / "bundled" / "cifar10_test_first1000.npz"
SPLITS = ("train", "test")


class BundledSubsetWarning(UserWarning):
    """Results on the bundled subset are not leaderboard-eligible."""


def load_arrays(dataset: str, split: str = "test", data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: uint8 images (N,32,32,3) HWC RGB and int64 labels."""
    dataset = check_dataset(dataset)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use train or test")
    if data_dir is None:
        if (dataset, split) != ("cifar10", "test"):
            raise DataError(f"no bundled {dataset} {split} data; pass --data-dir with the official files ({_expected(dataset, split)})")
        warnings.warn(f"using the bundled CIFAR-10 test subset ({BUNDLED_SUBSET.name}); only the full "
                      "official test split is leaderboard-eligible", BundledSubsetWarning, stacklevel=2)
        x, y = _read_npz(BUNDLED_SUBSET)
    else:
        x, y = _read_any(dataset, split, Path(data_dir))
    _check(x, y, dataset, str(data_dir or BUNDLED_SUBSET))
    return x, y


def load_tensors(dataset: str, split: str = "test", data_dir: str | os.PathLike | None = None,
                 n_examples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the first ``n_examples`` as float (N,3,32,32) in [0,1] and int64 labels."""
    if n_examples is not None and (isinstance(n_examples, bool) or not isinstance(n_examples, numbers.Integral)):
        raise DataError(f"n_examples must be a whole number of images (or None for all), got {n_examples!r}")
    x, y = load_arrays(dataset, split, data_dir)
    if n_examples is not None:
        if n_examples < 1 or n_examples > len(x):
            raise DataError(f"n_examples={n_examples} is out of range: the {dataset} {split} data here has {len(x)} images")
        x, y = x[:int(n_examples)], y[:int(n_examples)]
    return to_float_tensor(x), torch.from_numpy(np.ascontiguousarray(y)).long()


def to_float_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,C) -> contiguous float32 (N,C,H,W) in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255).contiguous()


def _expected(dataset: str, split: str) -> str:
    official = {
        "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch)",
        "cifar100": "cifar-100-python/ (train, test)",
        "svhn": f"{split}_32x32.mat",
    }[dataset]
    return f"{official}, or {dataset}_{split}.npz / {dataset}_{split}_jpeg.npz"


def locate(dataset: str, split: str, data_dir: str | os.PathLike) -> tuple[Path, bool]:
    """The file or folder ``data_dir`` provides for ``dataset``/``split``, and whether it is the official files.

    The official files are torchvision's layouts (``cifar-10-batches-py/``,
    ``cifar-100-python/``, ``{split}_32x32.mat``); an .npz is a copy, whatever
    its name.
    """
    data_dir = Path(data_dir)
    if data_dir.is_file():
        return data_dir, False
    if not data_dir.is_dir():
        raise DataError(f"data dir {data_dir} does not exist; put {_expected(dataset, split)} in it")
    for name in (f"{dataset}_{split}.npz", f"{dataset}_{split}_jpeg.npz"):
        if (data_dir / name).is_file():
            return data_dir / name, False
    official = {"cifar10": data_dir / "cifar-10-batches-py", "cifar100": data_dir / "cifar-100-python",
                "svhn": data_dir / f"{split}_32x32.mat"}[dataset]
    if official.exists():
        return official, True
    raise DataError(f"no {dataset} {split} data in {data_dir}; put {_expected(dataset, split)} there")


def _read_any(dataset: str, split: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path, official = locate(dataset, split, data_dir)
    if not official:
        return _read_npz(path)
    if dataset == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return _read_cifar_pickles([path / n for n in names], b"labels")
    if dataset == "cifar100":
        return _read_cifar_pickles([path / split], b"fine_labels")
    return _read_svhn(path)


def _read_cifar_pickles(paths: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        if not path.is_file():
            raise DataError(f"missing {path}; the official archive extracts it there")
        try:
            with open(path, "rb") as f:
                batch = _SafeUnpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[label_key], dtype=np.int64)
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise DataError(f"{path} is not a valid CIFAR batch file ({type(e).__name__}: {e}); re-extract the official archive") from None
    return np.concatenate(xs), np.concatenate(ys)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler for data files: only numpy arrays and builtins, never code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        x = np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2)
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise DataError(f"{path} is not a valid SVHN .mat file ({e}); re-download it") from None
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return np.ascontiguousarray(x), y


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            files = set(f.files)
            if {"x", "y"} <= files:
                return f["x"], f["y"].astype(np.int64)
            if {"image", "label"} <= files:
                return f["image"], f["label"].astype(np.int64)
            if {"jpeg", "offsets", "y"} <= files:
                return _decode_jpegs(f["jpeg"], f["offsets"], path), f["y"].astype(np.int64)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from None
    raise DataError(f"{path} has arrays {sorted(files)}; expected x and y, image and label, or jpeg, offsets and y")


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, path: Path) -> np.ndarray:
    from PIL import Image

    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) <= 0):
        raise DataError(f"{path}: 'offsets' do not index the 'jpeg' bytes (need 0 = o[0] < ... < o[-1] = {len(blob)})")
    out = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)
    data = blob.tobytes()
    for i in range(len(out)):
        try:
            img = Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]])).convert("RGB")
            out[i] = np.asarray(img)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: image {i} is not a valid 32x32 JPEG ({e})") from None
    return out


def _check(x: np.ndarray, y: np.ndarray, dataset: str, origin: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"{origin}: images must be uint8 (N,32,32,3), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{origin}: {len(x)} images but labels of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES[dataset]):
        raise DataError(f"{origin}: labels must lie in 0..{NUM_CLASSES[dataset] - 1}, found {y.min()}..{y.max()}")
