"""What the engine says (events) and what it obeys (commands).

Each is a small frozen dataclass. A sink is any callable taking an Event; the TUI
and the headless runner are two sinks over the same engine. Sinks are called on
the training thread, so they must be quick and must not touch the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    """Training is about to take its first step (fresh or resumed)."""

    run_dir: str
    run_name: str
    preset: str
    device: str
    dataset: str
    num_images: int
    steps_per_epoch: int
    epochs: int
    start_epoch: int  # 0-based epoch the next step belongs to
    global_step: int
    resumed_from: str | None
    config: dict[str, Any]
    history: tuple[dict[str, Any], ...] = ()  # epoch records so far (on resume)


@dataclass(frozen=True)
class StepStats:
    """Means over the steps since the previous StepStats (at most every N ms)."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch, 1-based after the step
    steps_per_epoch: int
    global_step: int
    g_loss: float
    d_loss: float
    d_real: float  # mean D(x)
    d_fake: float  # mean D(G(z)) as seen by the D step
    img_per_s: float
    elapsed_s: float  # wall time of training so far in this process


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0-based, as the seed prints it
    epochs: int
    global_step: int
    g_loss: float
    d_loss: float
    d_real: float
    d_fake: float
    img_per_s: float
    seconds: float

    def seed_line(self) -> str:
        """The seed tutorial's per-epoch line, plus throughput."""
        return (
            f"Epoch: [{self.epoch}/{self.epochs}] | G_loss: {self.g_loss:.3f} | "
            f"D_loss: {self.d_loss:.3f} | {self.img_per_s:,.0f} img/s"
        )


@dataclass(frozen=True, eq=False)
class Samples:
    """Generated digits: float32 array N x 28 x 28 in [-1, 1]."""

    epoch: int
    global_step: int
    images: np.ndarray
    fixed: bool  # True: the run's fixed noise batch; False: fresh noise on request
    labels: tuple[int, ...] | None = None  # class per image for conditional presets


@dataclass(frozen=True)
class Quality:
    """Sample quality at an epoch end, scored by the MNIST classifier (gan_tui.metrics).

    Emitted after that epoch's Samples when config.quality_samples > 0.
    """

    epoch: int  # 0-based, as EpochEnd
    global_step: int
    fid: float  # digit FID to real digits: lower is better (see `floor`)
    score: float  # classifier score (IS analogue), 1..10: higher is better
    coverage: float  # predicted-class entropy / log 10, 0..1: 1 = every digit equally often
    confidence: float  # mean top-class probability, 0..1
    histogram: tuple[int, ...]  # predicted-class counts for digits 0..9
    samples: int  # digits scored
    seconds: float  # time the scoring took
    # The FID real digits get at the same count (gan_tui.quality): what `fid` can reach.
    floor: float = 0.0  # 0: not known (a run scored before gan-tui reported it)

    def line(self) -> str:
        return (f"quality: FID {self.fid:.2f}{floor_note(self.floor)} | IS {self.score:.2f} | "
                f"coverage {self.coverage:.3f} | conf {self.confidence:.3f}")


def floor_note(floor: float) -> str:
    """' (real vs real 3.21)', or nothing where the floor is not known."""
    return f" (real vs real {floor:.2f})" if floor > 0 else ""


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    epoch: int
    global_step: int
    reason: str  # "epoch", "periodic", "request", "stop", "interrupt"


@dataclass(frozen=True)
class Paused:
    global_step: int


@dataclass(frozen=True)
class Resumed:
    global_step: int


@dataclass(frozen=True)
class Finished:
    reason: str  # "completed", "stopped" or "diverged"
    epoch: int  # epochs completed
    global_step: int
    checkpoint: str | None  # the run's newest good checkpoint; None: nothing saved
    run_dir: str
    # The step that checkpoint holds: below global_step when the last save failed (disk
    # full) or the run diverged, so the newest steps are not in it.
    checkpoint_step: int | None = None


@dataclass(frozen=True)
class Error:
    """Something went wrong. fatal=False: training carries on (e.g. a save failed)."""

    message: str
    fatal: bool = True


@dataclass(frozen=True)
class Diverged:
    """A loss or D's output is no longer a number (NaN or inf).

    Nothing is saved over the last good checkpoint. With Trainer(on_divergence="stop")
    a Finished(reason="diverged") follows; with "pause" a Paused follows, Resume is
    refused (an Error, fatal=False) while the weights are not finite, and Stop ends
    the run with Finished(reason="diverged") without saving.
    """

    epoch: int  # 0-based
    global_step: int
    message: str  # one line for the user, naming the last good checkpoint
    checkpoint: str | None = None  # that checkpoint; None: the run has none yet


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is neither progress nor a problem (e.g. the
    thread count a run chose)."""

    message: str

    def line(self) -> str:
        return self.message


@dataclass(frozen=True)
class HandedOver:
    """The dashboard saved the run at its last step and a background process carries
    it on (after a hang-up, or `d`): not the engine's word, its runner's."""

    pid: int
    run_dir: str
    global_step: int


Event = (Started | StepStats | EpochEnd | Samples | Quality | CheckpointSaved | Paused | Resumed
         | Finished | Error | Diverged | Notice | HandedOver)
Sink = Callable[[Event], None]

# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Save:
    reason: str = "request"


@dataclass(frozen=True)
class Sample:
    """Generate fresh digits now (count defaults to the config's sample_count).

    digit: for a conditional preset, all of that class (0-9); None cycles 0-9. Ignored
    (plain samples, labels None) by unconditional presets.
    """

    count: int | None = None
    digit: int | None = None


@dataclass(frozen=True)
class Stop:
    """Finish the current step, save last.pt, emit Finished."""

    reason: str = "stop"


Command = Pause | Resume | Save | Sample | Stop
