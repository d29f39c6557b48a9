"""Training data: real/generated mixing, held-out split, batch plan and augmentation.

Every random choice here is a pure function of (seed, epoch, step), so a run
resumed in the middle of an epoch sees exactly the batches it would have seen,
and with more than one process each rank takes its own slice of every global
batch (a deterministic distributed sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import load_arrays
from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import DataError

HOLDOUT_SEED = 20220210  # fixed: the held-out split does not depend on the run seed


def load_generated(path: str | Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a generated-data .npz (``image`` uint8 N×32×32×3, ``label`` (N,))."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"generated data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not {"image", "label"} <= set(f.files):
                raise DataError(f"{path} has arrays {sorted(f.files)}; generated data needs 'image' and 'label'")
            images, labels = f["image"], f["label"]
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: 'image' must be uint8 of shape (N,32,32,3), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: 'label' must have shape ({len(images)},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'label' must hold integers, got {labels.dtype}")
    k = NUM_CLASSES[dataset]
    if len(labels) == 0:
        raise DataError(f"{path} holds no images")
    if labels.min() < 0 or labels.max() >= k:
        raise DataError(f"{path}: labels must lie in 0..{k - 1} for {dataset}, found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)


@dataclass
class TrainData:
    """Real training images (minus the held-out split) plus optional generated images, as uint8 tensors."""

    real_x: torch.Tensor
    real_y: torch.Tensor
    gen_x: torch.Tensor | None
    gen_y: torch.Tensor | None
    holdout_x: torch.Tensor
    holdout_y: torch.Tensor

    @classmethod
    def load(cls, dataset: str, data_dir: str, train_subset: int = 0, holdout_size: int = 1024,
             generated_data: str = "") -> "TrainData":
        """Load the training split, hold out ``holdout_size`` images (fixed seed), attach generated data."""
        x, y = load_arrays(dataset, "train", data_dir)
        return cls.from_arrays(x, y, dataset, train_subset, holdout_size, generated_data)

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, dataset: str, train_subset: int = 0,
                    holdout_size: int = 1024, generated_data: str = "") -> "TrainData":
        """Like :meth:`load` but from arrays already in memory."""
        if train_subset:
            x, y = x[:train_subset], y[:train_subset]
        if holdout_size >= len(x):
            raise DataError(f"holdout_size={holdout_size} leaves no training images out of {len(x)}")
        order = np.random.default_rng(HOLDOUT_SEED).permutation(len(x))
        held, kept = np.sort(order[:holdout_size]), np.sort(order[holdout_size:])
        gen_x = gen_y = None
        if generated_data:
            gx, gy = load_generated(generated_data, dataset)
            gen_x, gen_y = torch.from_numpy(gx), torch.from_numpy(gy)
        t = torch.from_numpy
        return cls(t(np.ascontiguousarray(x[kept])), t(np.ascontiguousarray(y[kept])), gen_x, gen_y,
                   t(np.ascontiguousarray(x[held])), t(np.ascontiguousarray(y[held])))


class BatchPlan:
    """Which images make up global batch ``step`` of ``epoch``.

    An epoch has ceil(n_real / batch_size) batches; each holds
    round(batch_size * generated_fraction) generated images and real images
    for the rest, real ones drawn from a per-epoch permutation (cycled), and
    generated ones from a per-epoch permutation of the generated set.
    """

    def __init__(self, data: TrainData, batch_size: int, generated_fraction: float, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.n_gen = round(batch_size * generated_fraction) if data.gen_x is not None else 0
        self.n_real = batch_size - self.n_gen
        self.steps_per_epoch = math.ceil(len(data.real_x) / batch_size)
        self._cache: tuple[int, np.ndarray, np.ndarray | None] | None = None

    def _perms(self, epoch: int):
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 1])
            real = rng.permutation(len(self.data.real_x))
            gen = rng.permutation(len(self.data.gen_x)) if self.n_gen else None
            self._cache = (epoch, real, gen)
        return self._cache[1], self._cache[2]

    def indices(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (real indices, generated indices or None) of global batch ``step``."""
        real, gen = self._perms(epoch)
        r = np.arange(step * self.n_real, (step + 1) * self.n_real) % len(real)
        g = np.arange(step * self.n_gen, (step + 1) * self.n_gen) % len(gen) if self.n_gen else None
        return real[r], (gen[g] if g is not None else None)

    def batch(self, epoch: int, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Return this rank's share of global batch ``step``: uint8 NHWC images and labels."""
        real_idx, gen_idx = self.indices(epoch, step)
        xs, ys = [self.data.real_x[real_idx]], [self.data.real_y[real_idx]]
        if gen_idx is not None:
            xs.append(self.data.gen_x[gen_idx])
            ys.append(self.data.gen_y[gen_idx])
        x, y = torch.cat(xs), torch.cat(ys)
        if world_size > 1:
            x, y = x[rank::world_size], y[rank::world_size]
        return x, y


def to_float(x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] on ``device``."""
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255).contiguous()


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and random horizontal flip of a float NCHW batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out.contiguous()
