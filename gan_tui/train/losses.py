"""The adversarial losses a preset trains with, each split the way the step computes it:
D's loss on fakes, D's loss on reals, G's loss, and what D's output means as a
probability (for the D(x) / D(G(z)) curves)."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FiniteBCELoss(nn.BCELoss):
    """The seed's BCELoss, safe when D's output stops being a number.

    BCELoss refuses inputs outside [0, 1], and NaN is outside: a RuntimeError on the CPU,
    a device-side assert that kills the whole CUDA context on a GPU. Here non-finite
    inputs are replaced before the loss and the loss itself becomes NaN, so the step
    completes and the engine reports the divergence from its statistics. For inputs in
    [0, 1] the value and the gradients are exactly BCELoss's.
    """

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        safe = torch.nan_to_num(scores, nan=0.5, posinf=1.0, neginf=0.0)
        # + 0 * sum: exactly +0.0 while all is finite, NaN otherwise; no host sync.
        return super().forward(safe, target) + scores.detach().sum() * 0


class GanLoss(Protocol):
    def d_fake(self, score: Tensor) -> Tensor: ...
    def d_real(self, score: Tensor) -> Tensor: ...
    def g(self, score: Tensor) -> Tensor: ...
    def probability(self, score: Tensor) -> Tensor: ...


class BceLoss:
    """The seed's: binary cross-entropy on D's probabilities (its last layer a Sigmoid);
    G's loss is the non-saturating -log D(G(z))."""

    def __init__(self) -> None:
        self.criterion = FiniteBCELoss()

    def d_fake(self, score: Tensor) -> Tensor:
        return self.criterion(score, torch.zeros_like(score))

    def d_real(self, score: Tensor) -> Tensor:
        return self.criterion(score, torch.ones_like(score))

    def g(self, score: Tensor) -> Tensor:
        return self.criterion(score, torch.ones_like(score))

    def probability(self, score: Tensor) -> Tensor:
        return score


class HingeLoss:
    """Hinge loss on D's raw scores (Miyato et al. 2018, with spectral normalisation):
    D is pushed to score reals above +1 and fakes below -1 and no further; G raises
    D's score of its fakes. A NaN score makes a NaN loss, which the engine reports."""

    def d_fake(self, score: Tensor) -> Tensor:
        return F.relu(1.0 + score).mean()

    def d_real(self, score: Tensor) -> Tensor:
        return F.relu(1.0 - score).mean()

    def g(self, score: Tensor) -> Tensor:
        return -score.mean()

    def probability(self, score: Tensor) -> Tensor:
        return torch.sigmoid(score)  # a reading for the curves, not part of the loss


class LogitBceLoss:
    """The same cross-entropy as BceLoss, on D's raw scores (log-sigmoid, stable)."""

    def d_fake(self, score: Tensor) -> Tensor:
        return F.softplus(score).mean()

    def d_real(self, score: Tensor) -> Tensor:
        return F.softplus(-score).mean()

    def g(self, score: Tensor) -> Tensor:
        return F.softplus(-score).mean()

    def probability(self, score: Tensor) -> Tensor:
        return torch.sigmoid(score)


LOSSES = {"bce": BceLoss, "hinge": HingeLoss, "bce-logits": LogitBceLoss}


def make_loss(name: str) -> GanLoss:
    return LOSSES[name]()
