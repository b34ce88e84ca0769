"""Running training statistics and the metrics.jsonl log (sample quality: gan_tui.quality)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
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

    def write(self, record: dict[str, Any]) -> OSError | None:
        """Append a record; a failed write (disk full) is returned, not raised: a lost log
        line must not stop training. Lines still buffered go out with a later flush."""
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as exc:
            return exc
        return None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            return  # the same full disk: the engine reported it when writing


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite metrics.jsonl without the records past `step`; return how many lines went.

    On resume from a checkpoint at `step`, records written after it (an epoch whose save a
    kill -9 cut short, or the later epochs of a run resumed from an older checkpoint) are
    about to be written again: dropping them first keeps the log one run. A torn last line
    (the kill came mid-write) goes too, unless it is a whole record of a kept step. Lines
    that are not records with a step are kept as they are. The rewrite is atomic (a temp
    file in the same folder, then os.replace); a missing file, or one with nothing to
    drop, is left alone.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0
    *lines, tail = raw.split(b"\n")  # tail: what follows the last newline (b"" if none)
    kept = [line for line in lines if not _past(line, step)]
    dropped = len(lines) - len(kept)
    if tail:
        if _step_of(tail) is not None and not _past(tail, step):
            kept.append(tail)  # a whole record that only lacks its newline
        else:
            dropped += 1
    elif not dropped:
        return 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(line + b"\n" for line in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dropped


def _step_of(line: bytes) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:  # includes a torn line's JSONDecodeError and bad UTF-8
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _past(line: bytes, step: int) -> bool:
    found = _step_of(line)
    return found is not None and found > step


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (for tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
