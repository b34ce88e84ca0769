"""Running training statistics and the metrics.jsonl log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

STAT_NAMES = ("g_loss", "d_loss", "d_real", "d_fake")
# Rows of RunningStats: the live-event window, the metrics.jsonl step window, the epoch.
WINDOW, LOG, EPOCH = 0, 1, 2
ROWS = 3


class RunningStats:
    """Sums of the four step statistics over two windows and over the epoch.

    They stay on the training device and are added with one in-place op per step,
    so a GPU never waits for the host; values are read only when an event is due.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(ROWS, len(STAT_NAMES), dtype=torch.float64, device=device)
        self.steps = [0] * ROWS
        self.images = [0] * ROWS

    def add(self, values: Tensor, images: int) -> None:
        self.sums.add_(values.to(torch.float64))  # broadcasts the step into every row
        for row in range(ROWS):
            self.steps[row] += 1
            self.images[row] += images

    def means(self, row: int) -> dict[str, float]:
        steps = max(self.steps[row], 1)
        values = (self.sums[row] / steps).tolist()
        return dict(zip(STAT_NAMES, values, strict=True))

    def reset(self, row: int) -> None:
        self.sums[row].zero_()
        self.steps[row] = 0
        self.images[row] = 0

    # The epoch row is saved in mid-epoch checkpoints so a resumed epoch reports
    # the same means as an uninterrupted one.
    def epoch_state(self) -> dict[str, Any]:
        return {"sums": self.sums[EPOCH].cpu(), "steps": self.steps[EPOCH],
                "images": self.images[EPOCH]}

    def load_epoch_state(self, state: dict[str, Any]) -> None:
        self.sums[EPOCH].copy_(state["sums"])
        self.steps[EPOCH] = int(state["steps"])
        self.images[EPOCH] = int(state["images"])


class MetricsLog:
    """Appends one JSON object per line and flushes, so `tail -f` follows a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (for tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
