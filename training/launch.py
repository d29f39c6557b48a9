"""One `score-train` launch: train a run and, once it is finished, register it as a zoo entry.

Under torchrun every process calls :func:`launch`; training and the
registration's AutoAttack evaluation share one process group, and rank 0
alone writes files and gets the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo import devices, distributed

from .config import TrainConfig
from .register import Registration, check_new_name, register_run
from .trainer import train


@dataclass
class Launch:
    """What a launch left: its run directory, whether the run is finished, and the registration (if any)."""

    run_dir: Path
    finished: bool
    registration: Registration | None = None

    @property
    def released(self) -> Path:
        """The released model directory (best held-out epoch); it loads with ``zoo.load_model``."""
        return self.run_dir / "model-best"


def launch(config: TrainConfig | dict, out_dir: str | Path, *, resume: bool = False, device: str | None = None,
           stop_after_steps: int | None = None, progress: bool = True, register_name: str | None = None,
           on_trained: Callable[[Launch], None] | None = None, log_dir: str | Path | None = None,
           wandb_project: str | None = None) -> Launch | None:
    """Train as :func:`training.train` does, then register a finished run as user zoo entry ``register_name``.

    ``device`` and ``register_name`` are checked before training starts;
    ``register_name`` registers with ``register_run``'s default settings, and
    nothing when the launch stopped early (``stop_after_steps``).
    ``on_trained`` is called on rank 0 between training and registration;
    ``log_dir`` and ``wandb_project`` are :func:`training.train`'s.
    Returns None on the processes other than rank 0.
    """
    where = devices.placement(device)  # a wrong device fails here, not after training
    if register_name:
        check_new_name(register_name)
    with distributed.joined(where) as group:  # training and the registration share the torchrun process group
        run_dir = train(config, out_dir, resume=resume, device=device, stop_after_steps=stop_after_steps,
                        progress=progress, log_dir=log_dir, wandb_project=wandb_project)
        result = Launch(run_dir, (run_dir / "model").is_dir())
        if group.is_main and on_trained is not None:
            on_trained(result)
        if register_name and result.finished:
            result.registration = register_run(run_dir, register_name, device=device, progress=progress)
        return result if group.is_main else None
