"""The headless sink: the seed's epoch lines, a rich progress bar on a TTY, and the
seed's "Training Losses" chart at the end, drawn with plotext."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gan_tui import checkpoint as ckpt
from gan_tui.config import TrainConfig, resume_flags
from gan_tui.errors import CheckpointError, one_line
from gan_tui.events import (
    CheckpointSaved,
    Diverged,
    EpochEnd,
    Error,
    Event,
    Finished,
    Notice,
    Paused,
    Quality,
    Resumed,
    Started,
    StepStats,
)
from gan_tui.process import freeze_startup_objects
from gan_tui.quality import histogram_bars
from gan_tui.serve.hosting import hosted
from gan_tui.train import Trainer
from gan_tui.train.dist import ranks_from_env

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
QUIET_SAVE_REASONS = ("epoch",)  # saved every epoch: not worth a line each time
EXIT_DIVERGED = 3  # the losses became NaN/inf; 1: an error, 2: bad usage, 128+N: signal N


class HeadlessSink:
    """Turns engine events into lines (and a live bar when the console is a terminal)."""

    def __init__(self, console: Console, show_progress: bool | None = None,
                 err_console: Console | None = None) -> None:
        self.console = console
        # Errors (a divergence, a full disk) go to stderr; the epoch lines stay on stdout.
        self.err_console = err_console or Console(stderr=True)
        self.show_progress = console.is_terminal if show_progress is None else show_progress
        self.progress: Progress | None = None
        self._epoch_task: Any = None
        self._batch_task: Any = None
        self.history: list[dict[str, float]] = []
        self.console_lost = False
        self.last_quality: Quality | None = None

    def __call__(self, event: Event) -> None:
        if self.console_lost:
            return
        try:
            self._handle(event)
        except OSError:  # the terminal went away (SSH dropped): keep training, stop printing
            self.console_lost = True

    def _handle(self, event: Event) -> None:
        if isinstance(event, StepStats):
            self._advance(event)
        elif isinstance(event, EpochEnd):
            self.history.append({"g_loss": event.g_loss, "d_loss": event.d_loss})
            self._print(event.seed_line())
        elif isinstance(event, Quality):
            self.last_quality = event
            self._print(event.line())
        elif isinstance(event, Started):
            self._start(event)
        elif isinstance(event, CheckpointSaved) and event.reason not in QUIET_SAVE_REASONS:
            self._print(f"checkpoint saved: {event.path}")
        elif isinstance(event, Notice):
            self._print(event.message)
        elif isinstance(event, Paused):
            self._print(f"paused at step {event.global_step}")
        elif isinstance(event, Resumed):
            self._print(f"resumed at step {event.global_step}")
        elif isinstance(event, (Error, Diverged)):  # messages hold paths: no markup in them
            self._print(f"[bold red]error:[/] {escape(one_line(event.message))}", markup=True,
                        console=self.err_console)
        elif isinstance(event, Finished):
            self._close_progress()

    def _start(self, event: Started) -> None:
        self.history = [{"g_loss": r["g_loss"], "d_loss": r["d_loss"]} for r in event.history]
        verb = f"Resuming {event.resumed_from} at" if event.resumed_from else "Training from"
        self._print(f"{verb} epoch {event.start_epoch}/{event.epochs}: preset {event.preset}, "
                    f"{event.num_images:,} images of {event.dataset}, {event.steps_per_epoch} "
                    f"steps/epoch, on {event.device}; run dir {event.run_dir}")
        if self.show_progress:
            self._open_progress(event)

    def _open_progress(self, event: Started) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True)
        self._epoch_task = self.progress.add_task("epoch", total=event.epochs,
                                                  completed=event.start_epoch, rate="")
        self._batch_task = self.progress.add_task("batch", total=event.steps_per_epoch, rate="")
        self.progress.start()

    def _advance(self, event: StepStats) -> None:
        if self.progress is None:
            return
        # The epoch bar counts partial epochs, so its ETA is live from the first second.
        self.progress.update(self._epoch_task, completed=event.epoch +
                             event.batch / event.steps_per_epoch)
        self.progress.update(self._batch_task, completed=event.batch,
                             rate=f"{event.img_per_s:,.0f} img/s")

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _print(self, text: str, markup: bool = False, console: Console | None = None) -> None:
        (console or self.console).print(text, markup=markup, highlight=False, soft_wrap=True)


def loss_chart(history: list[dict[str, float]], width: int = 80, height: int = 20,
               color: bool = True) -> str:
    """The seed's final plot: G_loss (red) and D_loss (blue) per epoch."""
    import plotext as plt

    epochs = list(range(1, len(history) + 1))
    plt.clear_figure()
    # Without colour the two lines need different markers to stay apart.
    g_marker, d_marker = ("hd", "hd") if color else ("*", "o")
    plt.plot(epochs, [h["g_loss"] for h in history], color="red", label="G_loss", marker=g_marker)
    plt.plot(epochs, [h["d_loss"] for h in history], color="blue", label="D_loss",
             marker=d_marker)
    plt.title("Training Losses")
    plt.xlabel("epoch")
    plt.ylabel("loss")
    plt.plotsize(width, height)
    chart = plt.build()
    plt.clear_figure()
    return chart if color else plt.uncolorize(chart)


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[list[int]]:
    """Ctrl-C, SIGTERM and SIGHUP ask the trainer to save and stop; a second one forces.

    A signal this process was started ignoring stays ignored: under `nohup` a dropped
    SSH link (SIGHUP) does not stop the run.
    """
    received: list[int] = []

    def handle(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        trainer.request_stop("interrupt")

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_headless(config: TrainConfig, resume: str | Path | None = None, force: bool = False,
                 console: Console | None = None) -> int:
    """Train with line output; return the process exit code.

    Under torchrun only rank 0 prints and serves the control socket and status.json;
    the other ranks train silently (a signal to any of them still saves and stops all).
    """
    console = console or Console()
    sink = HeadlessSink(console)
    zero = ranks_from_env().is_zero
    # on_divergence "stop": nobody is there to resume a paused run
    trainer = Trainer(config, sink if zero else _silent, resume=resume, force=force,
                      on_divergence="stop")
    freeze_startup_objects()
    with stop_on_signals(trainer) as received, hosted(trainer) if zero else nullcontext():
        try:
            finished = trainer.run()
        except Exception:
            if not trainer.dist.distributed:
                raise  # one process: a bug's traceback is worth having
            # Under torchrun this is mostly another rank's death, seen as a failed
            # collective: rank 0 has printed the error line; the launcher names the rank.
            return 1
    if not zero:
        return exit_code(finished, received)
    if sink.console_lost:
        return 128 + received[0] if received else 1
    _print_ending(console, sink, finished)
    for line in ending_lines(finished, config):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return exit_code(finished, received)


def _silent(_event: Event) -> None:
    """The sink of torchrun ranks other than 0."""


def exit_code(finished: Finished, signals: list[int]) -> int:
    """128 + the signal that stopped the run; EXIT_DIVERGED; 1 when the last state could
    not be saved (the newest checkpoint is older); else 0."""
    if signals:
        return 128 + signals[0]
    if finished.reason == "diverged":
        return EXIT_DIVERGED
    return 0 if finished.checkpoint_step == finished.global_step else 1


def ending_lines(finished: Finished, config: TrainConfig) -> list[str]:
    """How the run ended and how to go on from it (plain text: paths may hold brackets)."""
    where, step = finished.checkpoint, finished.checkpoint_step
    at = f"epoch {finished.epoch}, step {finished.global_step}"
    diverged = finished.reason == "diverged"
    resume = resume_command(where, config, lower_lr=diverged) if where else ""
    if diverged:  # the Diverged line above said what happened
        if where is None:
            lower = f"--lr-g {config.lr_g / 2:g} --lr-d {config.lr_d / 2:g}"
            return [f"Diverged at {at} with nothing saved; start again with lower learning "
                    f"rates, e.g. {lower}"]
        return [f"Diverged at {at}; {where} still holds step {step}.",
                f"Resume with lower learning rates: {resume}"]
    if step == finished.global_step:
        if finished.reason == "completed":
            return [f"Done: {finished.epoch} epochs, {finished.global_step} steps. "
                    f"Run directory: {finished.run_dir}"]
        return [f"Stopped at {at}; saved {where}", f"Resume with: {resume}"]
    ended = "Done" if finished.reason == "completed" else "Stopped"
    if where is None:
        return [f"{ended} at {at}, but it could not be saved (see the error above) and no "
                "checkpoint of this run exists."]
    return [f"{ended} at {at}, but it could not be saved (see the error above); the newest "
            f"checkpoint is {where} (step {step}).", f"Resume with: {resume}"]


def resume_command(where: str, config: TrainConfig, lower_lr: bool = False) -> str:
    """`gan-tui train --resume WHERE` and every flag that makes it go on as `config` did
    (see config.resume_flags for the rule), judged against the settings saved in WHERE."""
    path = Path(where)
    try:
        saved = ckpt.config_of(ckpt.load_checkpoint(path), path)
    except CheckpointError:
        saved = config  # unreadable now: resuming it fails anyway, and says why
    flags = resume_flags(config, saved, ckpt.run_dir_of(path), lower_lr)
    return shlex.join(["gan-tui", "train", "--resume", where, *flags])


def _print_ending(console: Console, sink: HeadlessSink, finished: Finished) -> None:
    if sink.history:
        width = min(max(console.width, 40), 100)
        chart = loss_chart(sink.history, width=width, color=console.is_terminal)
        console.out(chart, highlight=False)
    if sink.last_quality is not None:
        q = sink.last_quality
        console.print(f"Predicted classes of {q.samples:,} samples after epoch {q.epoch + 1}:\n"
                      + "\n".join(histogram_bars(q.histogram)), highlight=False, soft_wrap=True)
