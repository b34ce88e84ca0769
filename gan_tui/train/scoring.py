"""The quality score at each epoch's end: optional, so a failure turns it off and
never stops training."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gan_tui.config import TrainConfig
from gan_tui.errors import GanTuiError
from gan_tui.events import Error, Quality, Sink
from gan_tui.quality import prepare_scoring, score_digits

# The quality classifier knows MNIST digits only: scores on these datasets mean nothing.
UNSCORED_DATASETS = ("fashion-mnist", "kmnist")
# What can go wrong while scoring (missing classifier weights, a singular covariance...):
# it turns the scores off, never training.
_SCORING_ERRORS = (GanTuiError, RuntimeError, ValueError, np.linalg.LinAlgError)

Generate = Callable[[Tensor, "Tensor | None"], Tensor]


class QualityScorer:
    """Scores `config.quality_samples` digits; emits Quality and logs a record."""

    def __init__(self, config: TrainConfig, device: torch.device,
                 labels_for: Callable[[int], Tensor | None], emit: Sink,
                 log: Callable[[dict[str, Any]], None]) -> None:
        """`labels_for(count)`: the class labels of `count` scored draws (None for an
        unconditional preset)."""
        # The classifier knows MNIST digits: other data (a folder of your own images,
        # an array file, Fashion-MNIST...) would be scored against digits it is not.
        self.on = (config.quality_samples > 0 and config.dataset not in UNSCORED_DATASETS
                   and not _own_data(config.data_dir))
        self._count = config.quality_samples
        self._latent_dim = config.latent_dim
        self._seed = config.seed
        self._device = device
        self._labels_for = labels_for
        self._emit = emit
        self._log = log

    def prepare(self) -> None:
        """Load the scorer before the first step: loaded at the first epoch's end, it held
        up training and key presses for ~0.4 s."""
        if not self.on:
            return
        try:
            prepare_scoring(self._device, self._count)
        except Exception as exc:  # e.g. an unreadable weights file: scores are optional
            self._off(exc)

    def score(self, generate: Generate, epoch: int, global_step: int) -> None:
        """Score digits from `generate`; the same noise every epoch, so epochs compare."""
        began = time.monotonic()
        count = self._count
        # Own generator, seeded per run: scoring never touches the training RNG.
        rng = torch.Generator().manual_seed(self._seed + 3)
        noise = torch.randn(count, self._latent_dim, generator=rng)
        labels = self._labels_for(count)
        try:
            scores = score_digits(generate(noise, labels), self._device)
        except _SCORING_ERRORS as exc:
            self._off(exc)
            return
        seconds = time.monotonic() - began
        self._log({"event": "quality", "epoch": epoch + 1, "step": global_step,
                   "fid": scores.fid, "fid_floor": scores.floor, "score": scores.score,
                   "coverage": scores.coverage,
                   "confidence": scores.confidence, "histogram": list(scores.histogram),
                   "samples": count, "seconds": seconds})
        self._emit(Quality(epoch=epoch, global_step=global_step, fid=scores.fid,
                           score=scores.score, coverage=scores.coverage,
                           confidence=scores.confidence, histogram=scores.histogram,
                           samples=count, seconds=seconds, floor=scores.floor))

    def _off(self, exc: Exception) -> None:
        # e.g. the classifier's weights are missing: a score must never stop training
        self.on = False
        self._emit(Error(f"quality scores off: {exc}", fatal=False))


def _own_data(data_dir: str | None) -> bool:
    """A folder of images or a NumPy file (an IDX folder is taken for MNIST-like digits)."""
    if data_dir is None:
        return False
    from pathlib import Path

    from gan_tui.data.arrays import SUFFIXES
    from gan_tui.data.images import looks_like_image_folder

    path = Path(data_dir)
    return path.suffix in SUFFIXES or (path.is_dir() and looks_like_image_folder(path))
