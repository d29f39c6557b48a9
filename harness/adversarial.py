"""The adversarial examples of an evaluation, saved for reuse (transfer attacks, inspection, ``show``).

``--save-adversarial FILE`` writes one safetensors file, atomically, once the
evaluation has finished: for every example an attack broke, its adversarial
example (the one from the attack and eps that first broke it), the clean image,
its index among the evaluated images, its label, the model's prediction on the
adversarial example, and which attack and eps broke it. The records come from
the chunk tasks (saved in the state dir), so a resumed run writes the same file.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from zoo.errors import ConfigError
from zoo.fileio import atomic_write_bytes, sha256_file

FORMAT = "score-harness-adversarial/1"
METADATA_KEY = "score_harness"


def write_adversarial(path: str | os.PathLike, records: dict, x: torch.Tensor, y: torch.Tensor, settings,
                      model_spec: str) -> dict:
    """Write the broken examples of ``records`` (finished chunk tasks) to ``path``; return its provenance."""
    rows = []
    for task, record in records.items():
        if task.level == 0:
            continue
        broken = ~record["robust"]
        j, attack = settings.level(task.level)
        for k, (i, pred) in enumerate(zip(record["members"][broken].tolist(), record["pred"][broken].tolist())):
            rows.append((i, record["x_adv"][k], pred, settings.stages.index(attack), j))
    rows.sort(key=lambda r: r[0])
    index = torch.tensor([r[0] for r in rows], dtype=torch.long)
    empty = torch.zeros((0, *x.shape[1:]), dtype=x.dtype)
    tensors = {
        "x_adv": torch.stack([r[1] for r in rows]).contiguous() if rows else empty,
        "x": x[index].contiguous() if rows else empty,
        "indices": index,
        "labels": y[index].contiguous(),
        "predictions": torch.tensor([r[2] for r in rows], dtype=torch.long),
        "attack": torch.tensor([r[3] for r in rows], dtype=torch.long),
        "eps_index": torch.tensor([r[4] for r in rows], dtype=torch.long),
    }
    about = {"format": FORMAT, "model": model_spec, "dataset": settings.dataset, "threat_model": settings.threat_model,
             "attacks": list(settings.stages), "eps": [text for _, text in settings.eps], "seed": settings.seed}
    # one metadata key: safetensors writes several in a random order
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(about, sort_keys=True)}))
    return {"path": str(path), "sha256": sha256_file(path), "count": len(rows)}


def read_adversarial(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by ``--save-adversarial``: (tensors, what was evaluated)."""
    from safetensors import safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            about = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
    except FileNotFoundError:
        raise ConfigError(f"adversarial examples file {path} does not exist") from None
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a safetensors file written by --save-adversarial ({e})") from None
    if not isinstance(about, dict) or about.get("format") != FORMAT:
        raise ConfigError(f"{path} was not written by --save-adversarial")
    return tensors, about


def saved_adversarial(evaluation, origin: str | os.PathLike, adversarial: str | os.PathLike | None = None):
    """The adversarial examples a result saved: ``adversarial``, else the file its ``evaluation`` names.

    Returns ``(path, tensors, about)``; a result (``origin``) that saved none is one error line.
    """
    if adversarial is None:
        if not evaluation.adversarial:
            raise ConfigError(f"{origin} records no adversarial examples; evaluate with --save-adversarial FILE "
                              "or pass --adversarial FILE")
        adversarial = evaluation.adversarial["path"]
    return (adversarial, *read_adversarial(adversarial))
