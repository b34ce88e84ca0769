"""--lr-decay: the learning rates as a function of the step alone, so a resume picks
them up exactly where they were."""

from __future__ import annotations

import torch


def lr_scale(step: int, total_steps: int, fraction: float) -> float:
    """The learning rates' factor for step `step` (0-based) of `total_steps`: 1, then
    down linearly over the last `fraction` of the steps, to 1/n (not 0) on the last."""
    decay_steps = round(total_steps * fraction)
    if decay_steps < 1:
        return 1.0
    return min(1.0, max(total_steps - step, 1) / decay_steps)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
