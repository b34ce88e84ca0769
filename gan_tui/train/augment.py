"""Differentiable augmentation (DiffAugment: Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training") for 28 x 28 digits in [-1, 1].

D sees every image, real or fake, through the same random transforms, and G learns
through them (they are differentiable in the pixels), so D cannot memorise 10,000
digits and G is never taught the transforms. Padding and cut-out fill with the
background (-1), not the paper's 0, which on digits would be a grey smear.
Random draws come from torch's global generator on the images' device: a checkpoint
captures it, so a resumed run draws the same transforms.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

BACKGROUND = -1.0
Augment = Callable[[Tensor], Tensor]


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size, rounded (4 px on 28), in x and y."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).clamp(-1, h)  # -1, h: padding
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1), value=BACKGROUND)  # one ring of background
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows + 1, cols + 1].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Blank one random square of `ratio` of the size (14 px on 28) in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    dy = torch.arange(h, device=x.device).view(1, h, 1) - cy + ch // 2  # 0..ch-1: inside
    dx = torch.arange(w, device=x.device).view(1, 1, w) - cx + cw // 2
    inside = (dy >= 0) & (dy < ch) & (dx >= 0) & (dx < cw)  # squares may run off the edge
    return torch.where(inside.unsqueeze(1), torch.full_like(x, BACKGROUND), x)


POLICIES: dict[str, Augment] = {"translation": translation, "cutout": cutout}


def make_augment(policy: str) -> Augment | None:
    """'translation,cutout' -> one function applying both in that order; '' -> None."""
    names = [name for name in policy.split(",") if name]
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r} (choose from {', '.join(POLICIES)})")
    if not names:
        return None
    steps = [POLICIES[name] for name in names]

    def augment(x: Tensor) -> Tensor:
        for step in steps:
            x = step(x)
        return x

    return augment
