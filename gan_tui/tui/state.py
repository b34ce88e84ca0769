"""What the dashboard knows about the run: plain Python, no Textual, no torch.

The app folds engine events into a `RunState`; widgets only read it. Keeping the
bookkeeping here makes it testable without a terminal and keeps widgets dumb.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gan_tui.events import Event, StepStats


class Phase(enum.Enum):
    """The state shown in the header badge."""

    STARTING = "STARTING"
    TRAINING = "TRAINING"
    PAUSED = "PAUSED"
    SAVING = "SAVING"
    DONE = "DONE"
    STOPPED = "STOPPED"
    MOVED = "MOVED"  # handed to a background process, which trains on
    DIVERGED = "DIVERGED"
    ERROR = "ERROR"


class EventBuffer:
    """Hands events from the training thread to the UI thread without either waiting.

    `put` is the engine's sink: it only appends under a lock held for microseconds.
    The UI drains the buffer on a timer. If the UI stalls, step statistics are
    coalesced (oldest dropped) so memory stays bounded; rarer events are all kept.
    """

    def __init__(self, max_stats: int = 2_000) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._stats = 0
        self._max_stats = max_stats

    def put(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if isinstance(event, StepStats):
                self._stats += 1
                if self._stats > self._max_stats:
                    self._compact()

    def drain(self) -> list[Event]:
        with self._lock:
            events, self._events, self._stats = self._events, [], 0
        return events

    def _compact(self) -> None:
        # Keep the newest half of the step statistics and every other event, in order.
        keep_from = self._stats - self._max_stats // 2
        seen = 0
        kept: list[Event] = []
        for event in self._events:
            if isinstance(event, StepStats):
                seen += 1
                if seen <= keep_from:
                    continue
            kept.append(event)
        self._events = kept
        self._stats -= keep_from


@dataclass
class History:
    """Per-stats-event series for the plots; `version` bumps on every change."""

    steps: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    d_loss: list[float] = field(default_factory=list)
    d_real: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)
    version: int = 0

    def append(self, step: float, g: float, d: float, real: float, fake: float) -> None:
        self.steps.append(step)
        self.g_loss.append(g)
        self.d_loss.append(d)
        self.d_real.append(real)
        self.d_fake.append(fake)
        self.version += 1

    def add_records(self, records: Sequence[dict[str, Any]]) -> None:
        """Seed the plot from a checkpoint's epoch records (on resume); skip odd ones, and
        those the plot has already (a viewer that followed the run to a new process)."""
        for record in records:
            try:
                step = float(record.get("global_step", record.get("step")))
                values = [float(record[k]) for k in ("g_loss", "d_loss", "d_real", "d_fake")]
            except (KeyError, TypeError, ValueError):
                continue
            if not self.steps or step > self.steps[-1]:
                self.append(step, *values)

    def __len__(self) -> int:
        return len(self.steps)


def thin(xs: Sequence[float], ys: Sequence[float], buckets: int) -> tuple[list[float], list[float]]:
    """Average (x, y) into at most `buckets` equal-count buckets: one point per plot column."""
    n = len(xs)
    if buckets <= 0 or n == 0:
        return [], []
    if n <= buckets:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if hi > lo:
            out_x.append(sum(xs[lo:hi]) / (hi - lo))
            out_y.append(_finite_mean(ys[lo:hi]))
    return out_x, out_y


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def ema(values: Sequence[float], alpha: float) -> list[float]:
    """Exponential moving average that ignores non-finite values."""
    out: list[float] = []
    level: float | None = None
    for v in values:
        if math.isfinite(v):
            level = v if level is None else level + alpha * (v - level)
        out.append(level if level is not None else math.nan)
    return out


@dataclass
class Progress:
    """The latest position and speed, as told by the engine (no wall clock here)."""

    epoch: int = 0  # 0-based epoch in progress
    epochs: int = 0
    batch: int = 0  # batches done in the epoch
    steps_per_epoch: int = 0
    global_step: int = 0
    start_step: int = 0  # global step when this process started (resume)
    img_per_s: float = 0.0
    elapsed_s: float = 0.0
    g_loss: float = math.nan
    d_loss: float = math.nan
    d_real: float = math.nan
    d_fake: float = math.nan

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def epochs_done(self) -> int:
        """Completed epochs, counting the current one once its last batch is done."""
        if self.steps_per_epoch and self.batch >= self.steps_per_epoch:
            return self.epoch + 1
        return self.epoch

    def steps_per_s(self) -> float:
        done = self.global_step - self.start_step
        return done / self.elapsed_s if self.elapsed_s > 0 and done > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds to the end of the run at the speed so far, None if unknown."""
        rate = self.steps_per_s()
        return (self.total_steps - self.global_step) / rate if rate > 0 else None

    def epoch_eta_s(self) -> float | None:
        rate = self.steps_per_s()
        return (self.steps_per_epoch - self.batch) / rate if rate > 0 else None


@dataclass
class RunInfo:
    run_name: str = "—"
    preset: str = "—"
    device: str = "—"
    dataset: str = "—"
    num_images: int = 0
    run_dir: str = ""


def format_duration(seconds: float | None) -> str:
    """H:MM:SS, or --:--:-- when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
