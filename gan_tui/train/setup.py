"""Process-wide set-up a run does once: the device, the optimiser, the epoch's length,
the seed (each torchrun rank's device and process group: train/dist.py)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from gan_tui.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit choice must be available."""
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda was asked for, but this machine has no usable CUDA GPU "
                          "(use --device cpu or auto)")
    if name == "mps" and not mps:
        raise ConfigError("--device mps was asked for, but Apple's MPS is not available here")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def make_adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one, else foreach: same maths."""
    params = list(params)
    for variant in ({"fused": True}, {"foreach": True}):
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, **variant)
        except (RuntimeError, TypeError, ValueError):
            continue
    return torch.optim.Adam(params, lr=lr, betas=betas)


def steps_per_epoch(num_images: int, batch_size: int, processes: int = 1) -> int:
    """Full batches plus the seed's partial last batch, unless it would give a process a
    single image (BatchNorm cannot normalise one sample in training mode): under torchrun
    each of `processes` ranks takes its share of every (global) batch."""
    full, rest = divmod(num_images, batch_size)
    return full + (1 if rest >= 2 * processes else 0)


def fresh_seed() -> int:
    """A seed for a run given none; it is recorded (config, checkpoints), so reproducible."""
    return random.SystemRandom().randrange(2**31)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
