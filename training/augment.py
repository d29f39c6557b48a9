"""Training-time augmentation of float NCHW batches, as the official data loaders do it.

CIFAR-10: random crop (zero padding 4) + horizontal flip; CIFAR-100 adds a
random rotation of up to 15 degrees (train-wa's loader); SVHN: none. CutMix is
gowal21uncovering/utils/cutmix.py applied to four copies of the batch. Every
function draws from the generator it is given, so a batch's augmentation is a
pure function of (seed, epoch, step) and a resumed run repeats it exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F



def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and random horizontal flip (p = 0.5), per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out.contiguous()


def rotate(x: torch.Tensor, generator: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    """Rotate each image by an angle drawn from U(-degrees, degrees) about its centre (nearest, zero fill),
    as torchvision's ``RandomRotation(degrees)`` does to one image."""
    n = len(x)
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * degrees * math.pi / 180
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the named augmentation (``none``, ``crop-flip`` or ``crop-flip-rotate``) to a batch."""
    if name == "none":
        return x
    x = crop_flip(x, generator)
    return rotate(x, generator) if name == "crop-flip-rotate" else x


def _cutmix_once(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    lam = rng.beta(1.0, 1.0)
    cut_h, cut_w = int(h * math.sqrt(1.0 - lam)), int(w * math.sqrt(1.0 - lam))
    i, j = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, x0 = int(np.clip(i - cut_h // 2, 0, h)), int(np.clip(j - cut_w // 2, 0, w))
    bh, bw = int(np.clip(i + cut_h // 2, 0, h)) - y0, int(np.clip(j + cut_w // 2, 0, w)) - x0
    lam = 1.0 - bh * bw / (h * w)
    idx = torch.from_numpy(rng.permutation(n)).to(x.device)
    mixed = x.clone()
    mixed[:, :, y0:y0 + bh, x0:x0 + bw] = x[idx, :, y0:y0 + bh, x0:x0 + bw]
    return mixed, lam * y + (1.0 - lam) * y[idx]


def cutmix_x4(x: torch.Tensor, y: torch.Tensor, num_classes: int,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """train-wa's ``--CutMix``: four CutMix copies of the batch (each its own Beta(1, 1) ratio, box and
    pairing), concatenated; labels become probability vectors of shape (4N, K)."""
    onehot = F.one_hot(y, num_classes).float()
    parts = [_cutmix_once(x, onehot, rng) for _ in range(4)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
