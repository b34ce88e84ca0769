"""The run folder: every file a run writes goes through `RunDir`, and nothing else writes.

    <run>/config.json               the settings, once at the start
    <run>/metrics.jsonl             step, epoch and quality records
    <run>/samples/epoch_NNNN.png    the fixed-noise grid at each epoch's end
    <run>/samples/timeline.bin      every epoch's grid in one file (gan_tui.timeline)
    <run>/checkpoints/last.pt       the newest good state (atomic replace)
    <run>/checkpoints/epoch_NNNN.pt, step_NNNNNNN.pt   kept copies

This is the one place for what must hold for the whole folder: under torchrun only
rank 0 writes (the others get `writer=False`: every method below is then a no-op that
reports rank 0's paths, so their loops read the same), and `open` takes the run lock
(one trainer per folder, see gan_tui.serve.registry). A failed write is reported to the sink,
never fatal: training goes on and the next write tries again.
"""

from __future__ import annotations

import errno
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_tui import checkpoint as ckpt
from gan_tui import timeline
from gan_tui.config import TrainConfig
from gan_tui.errors import ConfigError
from gan_tui.events import CheckpointSaved, Error, Sink
from gan_tui.metrics import MetricsLog, drop_records_after
from gan_tui.serve.registry import RunLock

# A write failed for want of space: a full disk, a too large file, a full quota.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def choose_run_dir(config: TrainConfig) -> Path:
    """config.run_dir, else runs_root/<date>-<time>-<preset>; absolute, so the paths in
    messages (and the resume hint) work from anywhere."""
    if config.run_dir:
        return Path(config.run_dir).absolute()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(config.runs_root).absolute() / f"{stamp}-{config.preset}"
    candidate, n = base, 2
    while candidate.exists():  # two runs started in the same second
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


class RunDir:
    """One run's folder and the files in it; see the module docstring."""

    def __init__(self, path: Path, report: Sink, writer: bool = True) -> None:
        self.path = path
        self.writer = writer  # False on torchrun ranks other than 0
        self.checkpoints = path / "checkpoints"
        self.samples = path / "samples"
        self.last = self.checkpoints / "last.pt"
        self.last_good: tuple[Path, int] | None = None  # newest good checkpoint, its step
        self._report = report
        self._metrics: MetricsLog | None = None
        self._lock = RunLock(path)
        self._log_failing = False

    def open(self, config: TrainConfig, resumed_at: int | None = None) -> None:
        """Take the folder's lock, create the folders, write config.json, open
        metrics.jsonl, and remove the temp files a killed run left; a folder that cannot
        be used (another run's, or a finished run's when not resuming) is a ConfigError.
        Not the writer: nothing (rank 0 checks and takes the folder).

        The lock comes first: then no live writer's temp file can be mistaken for stale.
        `resumed_at`: the checkpoint's step when resuming; the log's records past it (a
        run killed after its last save wrote them) are dropped, so it reads as one run.
        """
        if not self.writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use run directory {self.path}: "
                              f"{exc.strerror or exc}") from None
        self._lock.acquire()
        if resumed_at is None and self.last.exists():
            self._lock.release()
            raise ConfigError(f"{self.path} already holds a run (checkpoints/last.pt); "
                              f"continue it with --resume {self.path}, or choose another "
                              "--run-dir")
        try:
            for folder in (self.path, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
            config.save(self.path / "config.json")
            if resumed_at is not None:
                drop_records_after(self.path / "metrics.jsonl", resumed_at)
            self._metrics = MetricsLog(self.path / "metrics.jsonl")
        except OSError as exc:
            raise ConfigError(f"cannot use run directory {self.path}: "
                              f"{exc.strerror or exc}") from None
        ckpt.remove_stale_temps(self.checkpoints)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        if self.writer:
            self._lock.release()

    # ------------------------------------------------------------ metrics

    def log(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl line; a failed write is reported once, training goes on."""
        if not self.writer:
            return
        assert self._metrics is not None, "open() the run folder first"
        error = self._metrics.write(record)
        if error is not None and not self._log_failing:
            self._error(f"could not write {self._metrics.path}: "
                        f"{error.strerror or error}; training goes on")
        self._log_failing = error is not None

    # ------------------------------------------------------------ samples

    def save_sample_grid(self, images: np.ndarray, epoch_number: int) -> None:
        """samples/epoch_NNNN.png: the seed's 4 x 4 grid of `images` in [-1, 1]."""
        if not self.writer:
            return
        from torchvision.utils import save_image

        path = self.samples / f"epoch_{epoch_number:04d}.png"
        try:
            tensor = torch.from_numpy(images).unsqueeze(1)
            save_image(tensor * 0.5 + 0.5, path, nrow=4, padding=2)  # seed: 4 x 4 grid
        except OSError as exc:
            self._error(f"could not write {path}: {exc.strerror or exc}")
        try:  # every epoch's grid in one file too: the dashboard's timeline, timelapses
            timeline.append(self.samples / timeline.FILE_NAME, epoch_number, images)
        except OSError as exc:
            self._error(f"could not write {self.samples / timeline.FILE_NAME}: "
                        f"{exc.strerror or exc}")

    # -------------------------------------------------------- checkpoints

    def save_checkpoint(self, state: dict[str, Any], epoch: int, global_step: int,
                        reason: str) -> Path | None:
        """Atomically replace checkpoints/last.pt; report a failure, return None then.
        Not the writer: rank 0 saves this same state; its path, as if saved here."""
        if not self.writer:
            self.last_good = (self.last, global_step)
            return self.last
        try:
            ckpt.save_atomic(state, self.last)
        except OSError as exc:
            hint = ("; free some space, the next save tries again"
                    if exc.errno in _DISK_FULL else "")
            self._error(f"could not save {self.last}: {exc.strerror or exc}; {self.kept()}"
                        f"{hint}")
            return None
        self.last_good = (self.last, global_step)
        self._report(CheckpointSaved(str(self.last), epoch, global_step, reason))
        return self.last

    def keep_copy(self, source: Path, name: str, epoch: int, global_step: int) -> None:
        """checkpoints/`name`, a copy of `source` that later saves leave alone.

        A hard link costs no space or time, and later replaces of last.pt leave it intact.
        """
        if not self.writer:
            return
        target = self.checkpoints / name
        try:
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        except OSError as exc:
            self._error(f"could not write {target}: {exc.strerror or exc}")
            return
        self._report(CheckpointSaved(str(target), epoch, global_step, "kept"))

    def kept(self) -> str:
        """Where the newest good state is, for messages about a save that did not happen."""
        last = self.last_good
        return (f"the last good checkpoint is {last[0]} (step {last[1]})" if last
                else "no checkpoint of this run is saved yet")

    def _error(self, message: str) -> None:
        self._report(Error(message, fatal=False))
