"""status.json from the run's events: what `gan-tui runs` lists without connecting.

A sink: state changes (started, paused, resumed, diverged, finished) are written at
once, progress (step, speed) at most every PROGRESS_EVERY_S seconds, so a run with
nobody watching pays one small atomic write every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from gan_tui.events import (
    Diverged,
    EpochEnd,
    Event,
    Finished,
    Paused,
    Quality,
    Resumed,
    Started,
    StepStats,
)
from gan_tui.serve.registry import write_status

PROGRESS_EVERY_S = 2.0
_ENDINGS = {"completed": "done", "stopped": "stopped", "diverged": "diverged"}


class StatusWriter:
    """Keeps run_dir/status.json current; a failed write never stops training."""

    def __init__(self, run_dir: Path, socket_path: Path | None) -> None:
        self.run_dir = run_dir
        self._last_write = 0.0
        self.status: dict[str, Any] = {
            "state": "starting", "pid": os.getpid(),
            "socket": str(socket_path) if socket_path else None,
            "started_at": _now(), "updated_at": _now(),
        }

    def __call__(self, event: Event) -> None:
        urgent = self._fold(event)
        if urgent is None:  # nothing the status shows (e.g. the run handed over: another
            return  # process writes this file by now, and must not be written over)
        now = time.monotonic()
        if urgent or now - self._last_write >= PROGRESS_EVERY_S:
            self.write()
            self._last_write = now

    def write(self) -> None:
        self.status["updated_at"] = _now()
        # A full disk: metrics and checkpoints report it; this file is a courtesy.
        with contextlib.suppress(OSError):
            write_status(self.run_dir, self.status)

    def _fold(self, event: Event) -> bool | None:
        """Update the status from `event`; True when the state itself changed, False for
        progress, None when the status does not show it."""
        s = self.status
        if isinstance(event, StepStats):
            s.update(epoch=event.epoch, epochs=event.epochs, step=event.global_step,
                     img_per_s=round(event.img_per_s, 1))
            return False
        if isinstance(event, EpochEnd):
            s.update(epoch=event.epoch + 1, step=event.global_step,
                     img_per_s=round(event.img_per_s, 1))
            return True
        if isinstance(event, Quality):
            s.update(fid=event.fid, fid_floor=event.floor)
            return False
        if isinstance(event, Started):
            s.update(state="running", preset=event.preset, epoch=event.start_epoch,
                     epochs=event.epochs, step=event.global_step, device=event.device)
        elif isinstance(event, Paused):  # a diverged run pauses itself: it stays "diverged"
            s.update(state="diverged" if s["state"] == "diverged" else "paused",
                     step=event.global_step)
        elif isinstance(event, Resumed):
            s.update(state="running", step=event.global_step)
        elif isinstance(event, Diverged):
            s.update(state="diverged", step=event.global_step)
        elif isinstance(event, Finished):
            s.update(state=_ENDINGS.get(event.reason, event.reason), epoch=event.epoch,
                     step=event.global_step, checkpoint=event.checkpoint, socket=None)
        else:
            return None
        return True


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
