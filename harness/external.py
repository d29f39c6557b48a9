"""RobustBench's external submissions: a ``.pt`` tensor of adversarial images, and a check that re-scores one.

RobustBench takes a stronger evaluation of a zoo model (its ``external`` figure)
as "a ``.pt`` tensor of the same size of the corresponding test set" (its
new-evaluation issue template): adversarial images (N, 3, H, W), float in
[0, 1], in test-set order, which the maintainers re-score: every image within
eps of its clean image, and the model's accuracy on them (as
``robustbench.utils.clean_accuracy`` computes it on ``x_adv`` in ``eval.py``).

:func:`export_external` writes that tensor from a result and the adversarial
examples it saved (``--save-adversarial``): the adversarial example where an
attack broke the image, else the clean image. :func:`check_external` loads
such a file and re-scores it against the clean images; anything wrong (not a
tensor, wrong shape, out of range, outside the eps ball) is one clear error.
"""

from __future__ import annotations

import os
import pickle
import warnings

import torch

from zoo.errors import ConfigError
from zoo.fileio import atomic_file

from .engine.checks import adversarial_tolerance
from .threat_models import perturbation_norms


def _clean_images(dataset: str, data_dir, n: int | None):
    from .data import BundledSubsetWarning, load_tensors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BundledSubsetWarning)
        return load_tensors(dataset, "test", data_dir, n)


def export_external(result_path: str | os.PathLike, out: str | os.PathLike, adversarial=None, data_dir=None) -> dict:
    """Write the adversarial images of ``result_path`` as RobustBench's submission tensor; return a summary."""
    from .adversarial import saved_adversarial
    from .evaluation import data_fingerprint
    from zoo.results import EvaluationResult

    ev = EvaluationResult.from_json(result_path).evaluation
    if ev.shard is not None:
        raise ConfigError(f"{result_path} is one shard; RobustBench takes the whole evaluated set: evaluate without "
                          "--shard (or with --save-adversarial on the whole set)")
    adversarial, tensors, about = saved_adversarial(ev, result_path, adversarial)
    if about.get("model") != ev.model.get("spec") or about.get("seed") != ev.seed:
        raise ConfigError(f"{adversarial} holds the adversarial examples of another evaluation "
                          f"(model {about.get('model')}, seed {about.get('seed')}), not of {result_path}")
    if data_dir is None and ev.data.get("source") not in (None, "bundled-subset"):
        data_dir = ev.data["source"]
    x, y = _clean_images(ev.dataset, data_dir, ev.n_examples)
    if data_fingerprint(x, y) != ev.data.get("sha256"):
        raise ConfigError(f"the test images found ({data_dir or 'bundled subset'}) are not those {result_path} "
                          "evaluated; pass the --data-dir it used")
    idx = tensors["indices"]
    if len(idx) and (int(idx.max()) >= len(x) or not torch.equal(tensors["x"], x[idx])):
        raise ConfigError(f"{adversarial} does not match the images {result_path} evaluated")
    x_adv = x.clone()
    x_adv[idx] = tensors["x_adv"].to(x_adv.dtype)
    with atomic_file(out) as f:
        torch.save(x_adv.contiguous(), f)
    return {"path": str(out), "shape": list(x_adv.shape), "adversarial": len(idx), "n_examples": len(x),
            "dataset": ev.dataset, "threat_model": ev.threat_model, "eps": ev.eps_text}


def load_external(path: str | os.PathLike) -> torch.Tensor:
    """The tensor of a submission file; one clear error when it is not one."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"adversarial images file {path} does not exist") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        raise ConfigError(f"{path} is not a .pt file holding a tensor ({type(e).__name__}); "
                          "save the adversarial images with torch.save(x_adv, path)") from None
    if not isinstance(data, torch.Tensor):
        raise ConfigError(f"{path} holds a {type(data).__name__}, not a tensor of adversarial images; "
                          "save the tensor itself with torch.save(x_adv, path)")
    return data


def check_external(model, path: str | os.PathLike, dataset: str | None = None, threat_model: str | None = None,
                   eps=None, data_dir=None, device: str | None = None, batch_size: int = 500) -> dict:
    """Re-score a submission file: shape, range and eps bound against the clean images, then robust accuracy."""
    from zoo import devices
    from zoo.datasets_meta import check_dataset

    from .models import resolve_model
    from .threat_models import check_threat_model, resolve_eps

    x_adv = load_external(path)
    resolved = resolve_model(model, dataset, threat_model)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_value, eps_text = resolve_eps(threat_model, eps)
    if x_adv.ndim != 4 or x_adv.shape[0] == 0:
        raise ConfigError(f"{path} holds a tensor of shape {tuple(x_adv.shape)}; adversarial images are (N, C, H, W)")
    x, y = _clean_images(dataset, data_dir, None)
    if x_adv.shape[0] > len(x) or tuple(x_adv.shape[1:]) != tuple(x.shape[1:]):
        raise ConfigError(f"{path} holds a tensor of shape {tuple(x_adv.shape)}; the {dataset} test images "
                          f"({'--data-dir' if data_dir else 'bundled subset'}) are {tuple(x.shape)}: "
                          "give the first N of them, in test-set order")
    if not x_adv.is_floating_point():
        raise ConfigError(f"{path} holds {x_adv.dtype} values; adversarial images are floats in [0, 1]")
    x, y = x[:len(x_adv)], y[:len(x_adv)]
    x_adv = x_adv.to(x.dtype)
    if not torch.isfinite(x_adv).all():
        raise ConfigError(f"{path} holds NaN or infinite values")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < 0.0 or hi > 1.0:
        raise ConfigError(f"{path} leaves the image range [0, 1] (min {lo:.6g}, max {hi:.6g})")
    norms = perturbation_norms(x_adv - x, threat_model)
    over = norms > eps_value + adversarial_tolerance(eps_value, threat_model)
    if over.any():
        first = int(over.nonzero()[0])
        raise ConfigError(f"{int(over.sum())} image(s) of {path} lie outside the {threat_model} ball of radius "
                          f"{eps_text} around the clean images (first: image {first}, {threat_model} distance "
                          f"{float(norms[first]):.6g}); are they in test-set order?")
    where = devices.placement(device)
    net = resolved.model.eval().to(where.device)
    correct = clean = 0
    with torch.no_grad():
        for lo_i in range(0, len(x), batch_size):
            sl = slice(lo_i, lo_i + batch_size)
            correct += int((net(x_adv[sl].to(where.device)).argmax(1).cpu() == y[sl]).sum())
            clean += int((net(x[sl].to(where.device)).argmax(1).cpu() == y[sl]).sum())
    n = len(x)
    return {"path": str(path), "model": resolved.spec, "dataset": dataset, "threat_model": threat_model,
            "eps": eps_text, "n_examples": n, "clean_accuracy": round(100 * clean / n, 4),
            "robust_accuracy": round(100 * correct / n, 4), "max_perturbation": float(norms.max()),
            "robustbench_acc": f"{100 * correct / n:.2f}"}
