"""What the dashboard shows, as plain data: no Textual, no torch.

The screen hands each batch of engine events to `ViewState.apply`, which folds them into
the state (phase, progress, history, scores, the last checkpoint...) and returns the
`Effect`s the screen must carry out on its widgets: log lines, notices, new digits,
quality scores. The header and the progress panel are drawn from the state itself after
every batch. Keeping the bookkeeping here makes it testable without a terminal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from gan_tui.config import TrainConfig
from gan_tui.errors import one_line
from gan_tui.events import (
    CheckpointSaved,
    Command,
    Diverged,
    EpochEnd,
    Error,
    Event,
    Finished,
    HandedOver,
    Pause,
    Paused,
    Quality,
    Resume,
    Resumed,
    Samples,
    Started,
    StepStats,
)
from gan_tui.paths import display_path
from gan_tui.tui.state import History, Phase, Progress, RunInfo

Severity = Literal["information", "warning", "error"]

QUALITY_OFF = "quality scores off (--quality-samples 0)"
NO_QUALITY = "no quality scores for this run"
DIGIT_KEYS_NEED_CGAN = "Digit keys need a conditional preset such as --preset cgan."


# ------------------------------------------------------------------ effects


@dataclass(frozen=True)
class LogLine:
    """A line for the log panel."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Notice:
    """A pop-up notification. Messages are shown literally (no markup): a path like
    runs/[b]x[/b] must show as typed."""

    message: str
    title: str = ""
    severity: Severity = "information"
    timeout: float = 5.0


@dataclass(frozen=True)
class ShowSamples:
    """New digits for the digits panel."""

    samples: Samples
    caption: str


@dataclass(frozen=True)
class ShowQuality:
    """The latest scores (or, with `quality` None, why there are none) under the progress
    bars, and their class histogram in the digits panel's border."""

    quality: Quality | None
    note: str = ""


Effect = LogLine | Notice | ShowSamples | ShowQuality

_SAVE_REASONS = {
    "request": "saved on request", "kept": "copy kept", "stop": "saved before stopping",
    "interrupt": "saved on interrupt", "crash": "saved after a crash",
    "detach": "saved to carry on in the background",
}


# -------------------------------------------------------------------- state


@dataclass
class ViewState:
    """Everything the dashboard knows about the run, folded from the engine's events."""

    config: TrainConfig
    info: RunInfo
    history: History = field(default_factory=History)
    progress: Progress | None = None
    started: Started | None = None
    finished: Finished | None = None
    quality: Quality | None = None  # the latest scores
    fatal_error: str | None = None
    last_checkpoint: str | None = None
    paused: bool = False  # as the engine last said
    want_pause: bool = False  # as the user last asked
    saving: bool = False  # s was pressed; the save has not been reported yet
    diverged: bool = False
    quitting: bool = False
    epoch_ends: int = 0  # seen by this viewer: tells when no scores will come
    save_notice: str | None = None  # the path to announce at the end of this batch
    handed_over: HandedOver | None = None  # a background process carries the run on
    handing_over: bool = False  # the run saved to carry on elsewhere: its stop is no end
    attached: bool = False  # a viewer of a run in another process: quitting only detaches

    @classmethod
    def for_config(cls, config: TrainConfig) -> ViewState:
        """The state before any event: what the command line said."""
        info = RunInfo(
            run_name=Path(config.run_dir).name if config.run_dir else "new run",
            preset=config.preset, device=config.device, dataset=config.dataset,
        )
        return cls(config=config, info=info)

    @property
    def phase(self) -> Phase:
        if self.fatal_error:
            return Phase.ERROR
        if self.diverged:
            return Phase.DIVERGED
        if self.handed_over is not None:
            return Phase.MOVED
        if self.finished:
            return Phase.DONE if self.finished.reason == "completed" else Phase.STOPPED
        if self.quitting or self.saving:
            return Phase.SAVING
        if self.started is None:
            return Phase.STARTING
        return Phase.PAUSED if self.paused else Phase.TRAINING

    def opening(self) -> list[Effect]:
        """What to show before any event arrives."""
        if self.config.quality_samples == 0:
            return [ShowQuality(None, QUALITY_OFF)]
        return []

    # ------------------------------------------------------ events -> state

    def apply(self, events: Iterable[Event]) -> list[Effect]:
        """Fold one batch of events in; return what the screen must change, in order."""
        effects: list[Effect] = []
        for event in events:
            self._HANDLERS.get(type(event), ViewState._on_other)(self, event, effects)
        if self.save_notice:
            # One notice per batch: it names the kept copy when last.pt came with it.
            effects.append(Notice(self.save_notice, title="Checkpoint saved", timeout=6))
            self.save_notice = None
        return effects

    def _on_started(self, event: Started, out: list[Effect]) -> None:
        if self.handed_over is not None:  # a viewer that followed the run to its new process
            self._carry_on(self.handed_over, out)
        self.started = event
        self.config = TrainConfig.from_dict(event.config)  # what the run really uses
        self.info = RunInfo(event.run_name, event.preset, event.device, event.dataset,
                            event.num_images, event.run_dir)
        self.progress = Progress(
            epoch=event.start_epoch, epochs=event.epochs, steps_per_epoch=event.steps_per_epoch,
            global_step=event.global_step, start_step=event.global_step,
        )
        self.history.add_records(event.history)
        if event.resumed_from:
            out.append(LogLine(f"Resumed from {event.resumed_from} at epoch "
                               f"{event.start_epoch}, step {event.global_step:,}", "bold"))
        out.append(LogLine(f"Training {event.preset} on {event.num_images:,} images "
                           f"({event.dataset}) on {event.device}"))
        out.append(LogLine(f"Run folder: {event.run_dir}", "dim"))

    def _carry_on(self, moved: HandedOver, out: list[Effect]) -> None:
        """The run goes on, in process `moved.pid`: it is no longer stopped or moved."""
        self.finished = self.handed_over = None
        self.handing_over = self.paused = self.want_pause = self.saving = False
        out.append(LogLine(f"Following the run to its background process (pid {moved.pid})",
                           "bold"))

    def _on_step_stats(self, event: StepStats, out: list[Effect]) -> None:
        start = self.progress.start_step if self.progress else 0
        self.progress = Progress(
            epoch=event.epoch, epochs=event.epochs, batch=event.batch,
            steps_per_epoch=event.steps_per_epoch, global_step=event.global_step,
            start_step=start, img_per_s=event.img_per_s, elapsed_s=event.elapsed_s,
            g_loss=event.g_loss, d_loss=event.d_loss, d_real=event.d_real, d_fake=event.d_fake,
        )
        self.history.append(event.global_step, event.g_loss, event.d_loss,
                            event.d_real, event.d_fake)

    def _on_epoch_end(self, event: EpochEnd, out: list[Effect]) -> None:
        out.append(LogLine(event.seed_line()))
        self.epoch_ends += 1
        # An epoch's scores come before the next EpochEnd: none by now means none at all
        # (scores off, or a dataset the digit classifier cannot judge).
        if self.epoch_ends > 1 and self.quality is None:
            out.append(ShowQuality(None, NO_QUALITY))

    def _on_quality(self, event: Quality, out: list[Effect]) -> None:
        self.quality = event
        out.append(LogLine(event.line(), "cyan"))
        out.append(ShowQuality(event))

    def _on_samples(self, event: Samples, out: list[Effect]) -> None:
        out.append(ShowSamples(event, samples_caption(event)))

    def _on_checkpoint(self, event: CheckpointSaved, out: list[Effect]) -> None:
        if event.reason != "kept":
            self.last_checkpoint = event.path
        self.handing_over = self.handing_over or event.reason == "detach"
        if event.reason != "epoch":  # every epoch rewrites last.pt: not news
            how = _SAVE_REASONS.get(event.reason, event.reason)
            out.append(LogLine(f"Checkpoint {self.run_relative(event.path)} ({how})", "green"))
        if self.saving and event.reason in ("request", "kept"):
            # The engine writes last.pt and then a kept copy; the copy is the one to keep.
            self.save_notice = event.path
            self.saving = event.reason == "request"

    def _on_paused(self, event: Paused, out: list[Effect]) -> None:
        self.paused = self.want_pause = True  # the engine may pause itself (divergence)
        out.append(LogLine(f"Paused at step {event.global_step:,}", "yellow"))

    def _on_resumed(self, event: Resumed, out: list[Effect]) -> None:
        self.paused = self.want_pause = False
        self.diverged = False  # the engine resumes a diverged run only if its weights are fine
        out.append(LogLine(f"Resumed at step {event.global_step:,}", "yellow"))

    def _on_diverged(self, event: Diverged, out: list[Effect]) -> None:
        self.diverged = True
        message = one_line(event.message)
        out.append(LogLine(f"Diverged: {message}", "bold red"))
        then = ("resume the last good checkpoint" if event.checkpoint
                else "start again")  # nothing of this run was saved yet
        out.append(LogLine(f"Press q to end the run (nothing more is saved), then {then} "
                           "with lower learning rates.", "red"))
        out.append(Notice(f"{message}. Press q to end the run.", title="Training diverged",
                          severity="error", timeout=20))

    def _on_finished(self, event: Finished, out: list[Effect]) -> None:
        self.finished = event
        self.paused = False
        self.saving = False
        if event.checkpoint:
            self.last_checkpoint = event.checkpoint
        if self.handing_over and event.reason == "stopped":
            # Not "Resume with": a background process is about to (HandedOver, or an
            # Error saying why not, follows; the lines at exit say which).
            out.append(LogLine("Handing the run to a background process…", "bold"))
            return
        # Says what is true: "saved" only when the checkpoint holds the last step.
        out.extend(LogLine(line, "bold") for line in self.ending_lines())

    def _on_error(self, event: Error, out: list[Effect]) -> None:
        message = one_line(event.message)  # paths in it may hold control characters
        if event.fatal:
            self.fatal_error = message
        self.saving = False
        out.append(LogLine(("Error: " if event.fatal else "Warning: ") + message, "bold red"))
        out.append(Notice(message, title="Error" if event.fatal else "Warning",
                          severity="error" if event.fatal else "warning", timeout=10))

    def _on_handed_over(self, event: HandedOver, out: list[Effect]) -> None:
        self.handed_over = event
        out.extend(LogLine(line, "bold") for line in self.ending_lines())

    def _on_other(self, event: Event, out: list[Effect]) -> None:
        """Newer engine events: log their own summary line if they have one."""
        line = getattr(event, "line", None)
        if callable(line):
            out.append(LogLine(str(line()), "cyan"))

    _HANDLERS: ClassVar[dict[type, Callable[[ViewState, Event, list[Effect]], None]]] = {
        Started: _on_started,
        StepStats: _on_step_stats,
        EpochEnd: _on_epoch_end,
        Samples: _on_samples,
        CheckpointSaved: _on_checkpoint,
        Paused: _on_paused,
        Resumed: _on_resumed,
        Finished: _on_finished,
        Error: _on_error,
        Diverged: _on_diverged,
        Quality: _on_quality,
        HandedOver: _on_handed_over,
    }

    # ---------------------------------------------------------- key presses

    def pause_command(self) -> Command:
        """What space / p asks of the engine now."""
        if self.diverged:
            # The engine paused itself; it answers each Resume (an Error notice while
            # the weights are not numbers), so every press asks again.
            return Resume()
        # Toggle what was asked, not what was last seen: two quick presses cancel out.
        self.want_pause = not self.want_pause
        return Pause() if self.want_pause else Resume()

    def not_running_notice(self, starting: bool) -> Notice:
        """Why a key that needs a running engine did nothing."""
        if starting:
            message = "Still loading the data and models; try again in a moment."
        elif self.last_checkpoint:
            message = f"Training has ended; the last checkpoint is {self.last_checkpoint}."
        else:
            message = "Training is not running."
        return Notice(message, severity="warning", timeout=4)

    # ---------------------------------------------------------------- after

    def ending_lines(self) -> list[str]:
        """How the run ended and how to go on from it, in the headless runner's words
        (paths as typed when inside the working directory)."""
        if self.handed_over is not None:
            return handed_over_lines(self.handed_over)
        finished = self.finished
        if self.attached and finished is None and not self.fatal_error:
            run = display_path(Path(self.info.run_dir)) if self.info.run_dir else "latest"
            return [f"Detached; the run trains on. Back with: gan-tui attach {run}"]
        if finished is None:  # it never started, or crashed before it could say
            last = Path(self.info.run_dir) / "checkpoints" / "last.pt"
            if self.info.run_dir and last.exists():
                return [f"Resume with: gan-tui train --resume {display_path(last)}"]
            return []
        from gan_tui.headless import ending_lines  # late import: it loads the engine

        shown = dataclasses.replace(
            finished, run_dir=display_path(Path(finished.run_dir)),
            checkpoint=finished.checkpoint and display_path(Path(finished.checkpoint)))
        return ending_lines(shown, self.config)

    def exit_code(self, signum: int | None = None) -> int:
        """1 after a fatal error, 128 + signal after a signal; else as headless runs end:
        3 when the run diverged, 1 when its last state could not be saved, else 0."""
        if self.fatal_error:
            return 1
        if signum:
            return 128 + signum
        if self.finished is None or self.handed_over is not None:
            return 0
        from gan_tui.headless import exit_code  # late import: it loads the engine

        return exit_code(self.finished, [])

    def run_relative(self, path: str) -> str:
        """Paths inside the run folder are shown relative to it (the log is narrow)."""
        try:
            return str(Path(path).relative_to(self.info.run_dir))
        except ValueError:
            return display_path(Path(path))


def handed_over_lines(event: HandedOver) -> list[str]:
    run = display_path(Path(event.run_dir))
    return [f"Training goes on in the background (pid {event.pid}) from step "
            f"{event.global_step:,}.", f"Watch it with: gan-tui attach {run}",
            f"Stop it with: gan-tui stop {run}"]


def samples_caption(event: Samples) -> str:
    if event.fixed:
        return f"epoch {event.epoch + 1} · fixed noise"
    if event.labels and len(set(event.labels)) == 1:  # a digit key on a conditional preset
        return f"digit {event.labels[0]} · step {event.global_step:,}"
    return f"fresh · step {event.global_step:,}"
