"""Digits from the generator for people to look at: the fixed grid, requested samples,
and the batches the quality score reads. Never touches the training RNG."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from gan_tui.models import cycle_labels
from gan_tui.train.step import call

GENERATE_BATCH = 1000  # digits per forward pass: bounded memory


@torch.no_grad()
def generate_tensor(model: nn.Module, noise: Tensor, labels: Tensor | None,
                    device: torch.device) -> Tensor:
    """model(noise[, labels]) on `device` in eval mode (BatchNorm running stats),
    GENERATE_BATCH at a time; the model's training mode is put back after."""
    was_training = model.training
    model.eval()
    try:
        parts = []
        for start in range(0, len(noise), GENERATE_BATCH):
            stop = start + GENERATE_BATCH
            chunk_labels = None if labels is None else labels[start:stop].to(device)
            parts.append(call(model, noise[start:stop].to(device), chunk_labels))
        return torch.cat(parts)
    finally:
        model.train(was_training)


def to_images(digits: Tensor) -> np.ndarray:
    """N x 1 x 28 x 28 on any device -> float32 N x 28 x 28 on the host."""
    return digits.squeeze(1).float().cpu().numpy()


def requested_inputs(count: int, digit: int | None, latent_dim: int, rng: torch.Generator,
                     conditional: bool) -> tuple[Tensor, Tensor | None]:
    """Noise from `rng` (its own generator: showing samples must not change training) and,
    for conditional presets, labels: all `digit`, or 0-9 cycled. Unconditional presets
    ignore `digit`."""
    noise = torch.randn(count, latent_dim, generator=rng)
    if not conditional:
        return noise, None
    labels = (cycle_labels(count) if digit is None
              else torch.full((count,), digit, dtype=torch.long))
    return noise, labels


def label_tuple(labels: Tensor | None) -> tuple[int, ...] | None:
    return None if labels is None else tuple(int(v) for v in labels.tolist())
