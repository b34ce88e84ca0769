"""The Textual training dashboard: trains in a thread worker and shows it live.

Threads: the engine runs in a Textual thread worker and calls our sink on that
thread. The sink only appends to an `EventBuffer` (a lock held for microseconds),
and the UI drains the buffer four times a second (at once for the events a key press
waits for). So training never waits for the UI, and the UI never waits for training:
commands go the other way through the engine's thread-safe queue.

Ending: q / ctrl+c ask the engine to stop (it saves last.pt) and the app exits when
the worker returns. A signal (SIGHUP when the SSH connection drops, SIGTERM, SIGINT)
or a terminal that hung up does the same without relying on the event loop, and an
exit guard ends the process once the checkpoint is written. A run whose losses stop
being numbers pauses itself (DIVERGED); q then ends it without saving over the last
good checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from gan_tui.config import TrainConfig
from gan_tui.errors import GanTuiError, one_line
from gan_tui.events import (
    CheckpointSaved,
    Command,
    Diverged,
    EpochEnd,
    Error,
    Event,
    Finished,
    Pause,
    Paused,
    Quality,
    Resume,
    Resumed,
    Sample,
    Samples,
    Save,
    Sink,
    Started,
    StepStats,
)
from gan_tui.process import freeze_startup_objects
from gan_tui.tui.screens import HelpScreen
from gan_tui.tui.state import EventBuffer, History, Phase, Progress, RunInfo
from gan_tui.tui.widgets import (
    DigitsColumn,
    DigitsPanel,
    HeaderBar,
    LogPanel,
    LossPlot,
    ProgressPanel,
    TooSmall,
)


class TrainerLike(Protocol):
    """What the app needs from gan_tui.engine.Trainer (tests may pass a stand-in)."""

    run_dir: Path

    def send(self, command: Command) -> None: ...

    def request_stop(self, reason: str = "stop") -> None: ...

    def run(self) -> Finished: ...


TrainerFactory = Callable[[TrainConfig, Sink, "str | None"], TrainerLike]


def make_trainer(config: TrainConfig, sink: Sink, resume: str | None,
                 force: bool = False) -> TrainerLike:
    from gan_tui.train import Trainer  # late import: torch takes a second to load

    # A NaN loss pauses the run instead of ending it: the user sees it and decides.
    return Trainer(config, sink, resume=resume, force=force, on_divergence="pause")


@functools.cache
def is_conditional(preset: str) -> bool:
    """True for presets that draw a chosen digit (cgan); late import: models loads torch."""
    from gan_tui.models import PRESETS

    return preset in PRESETS and PRESETS[preset].conditional


class EventsReady(Message):
    """The engine sent an event the user is waiting to see (not a routine step update)."""


class GanTuiApp(App[int]):
    """Header, progress, loss plot, digits and log around one training run."""

    CSS_PATH = "app.tcss"
    TITLE = "gan-tui"
    ENABLE_COMMAND_PALETTE = False
    # Screen classes for the layout: below 80 x 24 the dashboard gives way to a note.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-narrow"), (80, "-narrow"), (110, "-wide"),
    ]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-short"), (24, "-short"), (30, "-medium"), (38, "-tall"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause/Resume", key_display="space"),
        Binding("p", "toggle_pause", "Pause/Resume", show=False),
        Binding("s", "save", "Save"),
        Binding("g", "sample", "Sample"),
        Binding("r", "cycle_renderer", "Render"),
        Binding("v", "toggle_plot", "Plot"),
        Binding("l", "toggle_log_y", "Log-y"),
        *(Binding(str(d), f"sample_digit({d})", f"Digit {d}", show=False) for d in range(10)),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        # Priority, so ctrl+c quits the same way wherever focus is (Textual's default
        # only tells you how to quit).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    # How often the UI drains the engine's routine events and repaints progress (the
    # loss plot every other time). Key presses and samples do not wait for it.
    POLL_S: ClassVar[float] = 0.5
    QUIT_TIMEOUT_S: ClassVar[float] = 15.0  # give up waiting for the engine after this
    SIGNAL_SAVE_S: ClassVar[float] = 60.0  # after a signal, wait this long for the save
    SIGNAL_GRACE_S: ClassVar[float] = 5.0  # then this long for a normal exit (not SIGHUP)

    def __init__(
        self,
        config: TrainConfig,
        resume: str | None = None,
        *,
        trainer_factory: TrainerFactory = make_trainer,
        autostart: bool = True,
        handle_signals: bool = False,
        freeze_gc: bool = False,
    ) -> None:
        """`autostart=False` starts no training: tests then feed events with `feed()`.

        The real process (`run_tui`) also handles signals and, once training is set up,
        hides the start-up objects from the garbage collector (see gan_tui.process).
        """
        super().__init__()
        self.config = config
        self.resume = resume
        self.buffer = EventBuffer()
        self.history = History()
        self.info = RunInfo(
            run_name=Path(config.run_dir).name if config.run_dir else "new run",
            preset=config.preset, device=config.device, dataset=config.dataset,
        )
        self.progress: Progress | None = None
        self.started: Started | None = None
        self.finished: Finished | None = None
        self.quality: Quality | None = None  # the latest scores
        self.fatal_error: str | None = None
        self.last_checkpoint: str | None = None
        self._trainer_factory = trainer_factory
        self._autostart = autostart
        self._handle_signals = handle_signals
        self._freeze_gc = freeze_gc
        self._trainer: TrainerLike | None = None
        self._trainer_lock = threading.Lock()
        self._worker_done = not autostart
        self._quitting = False
        self._stop_requested = False  # set by a signal handler, which may not take locks
        self._signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._training_done = threading.Event()  # the worker has ended (or never started)
        if not autostart:
            self._training_done.set()
        self._paused = False
        self._want_pause = False
        self._saving = False
        self._save_notice: str | None = None
        self._diverged = False
        self._epoch_ends = 0  # seen by this process: tells when no scores will come

    # ------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ProgressPanel(id="progress")
                yield LossPlot(self.history, id="plot")
                yield LogPanel(id="log")
            with DigitsColumn(id="right"):
                yield DigitsPanel(id="digits")
        yield TooSmall(id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        progress = self.query_one("#progress", ProgressPanel)
        progress.border_title = "Progress"
        if self.config.quality_samples == 0:
            progress.show_quality(None, "quality scores off (--quality-samples 0)")
        self._refresh_panels()
        self.set_interval(self.POLL_S, self._tick)
        self._ui_loop = asyncio.get_running_loop()
        if self._handle_signals:
            self._install_signal_handlers()
            self._watch_terminal()
        if self._autostart:
            self.log_line("Loading the data and building the models…", "dim")
            self._train()

    def on_resize(self) -> None:
        self.query_one(TooSmall).show_size(self.size.width, self.size.height)

    # ------------------------------------------------------- the worker

    @work(thread=True, exclusive=True, name="trainer", exit_on_error=False)
    def _train(self) -> None:
        """Build the trainer and run it (on the worker thread)."""
        try:
            self._build_and_run(get_current_worker())
        finally:
            self._training_done.set()

    def _build_and_run(self, worker: Worker[None]) -> None:
        reported = False

        def sink(event: Event) -> None:
            nonlocal reported
            reported = reported or (isinstance(event, Error) and event.fatal)
            self.buffer.put(event)
            if not isinstance(event, (StepStats, CheckpointSaved)):
                # Paused, Samples...: answer a key press now, not at the next poll. (Saves
                # wait for the poll, which then sees last.pt and its kept copy together.)
                # post_message is thread-safe and never waits for the UI.
                self.post_message(EventsReady())

        try:
            trainer = self._trainer_factory(self.config, sink, self.resume)
        except GanTuiError as exc:
            self.buffer.put(Error(str(exc)))
            return
        except Exception as exc:  # shown to the user, not swallowed
            self.buffer.put(Error(f"could not start training: {type(exc).__name__}: {exc}"))
            return
        with self._trainer_lock:
            if self._quitting or self._stop_requested or worker.is_cancelled:
                return  # quit while loading: nothing trained, nothing to save
            self._trainer = trainer
        if self._stop_requested:  # a signal came between the check and the assignment
            trainer.request_stop("interrupt")
        if self._freeze_gc:
            freeze_startup_objects()
        done = threading.Event()
        threading.Thread(target=_stop_when_cancelled, args=(worker, trainer, done),
                         name="gan-tui-watchdog", daemon=True).start()
        try:
            trainer.run()
        except Exception as exc:  # the engine saved and reported it
            if not reported:
                self.buffer.put(Error(f"training failed: {type(exc).__name__}: {exc}"))
        finally:
            done.set()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "trainer" or event.state in (
            WorkerState.PENDING, WorkerState.RUNNING,
        ):
            return
        self._worker_done = True
        self.poll_events()
        if self._quitting:
            self._exit_app()

    @property
    def trainer(self) -> TrainerLike | None:
        """The running engine, once built (None while loading or if it failed to start)."""
        return self._trainer

    def send(self, command: Command) -> bool:
        """Send a command to the engine; False when no training is running."""
        trainer = self._trainer
        if trainer is None or self._worker_done:
            return False
        trainer.send(command)
        return True

    # --------------------------------------------------- events -> state

    def feed(self, *events: Event) -> None:
        """Queue events as if the engine had sent them (tests, replays)."""
        for event in events:
            self.buffer.put(event)

    def _tick(self) -> None:
        # One timer for every routine repaint: they land in one frame, one compositor pass.
        self.poll_events()
        self.query_one(LossPlot).tick(time.monotonic())

    def on_events_ready(self, _message: EventsReady) -> None:
        self.poll_events()

    def poll_events(self) -> None:
        """Fold every pending engine event into the state, then redraw what changed."""
        events = self.buffer.drain()
        if not events:
            return
        for event in events:
            self._HANDLERS.get(type(event), GanTuiApp._handle_other)(self, event)
        if self._save_notice:
            self.notify(self._save_notice, title="Checkpoint saved", timeout=6, markup=False)
            self._save_notice = None
        self._refresh_panels()

    def _handle_started(self, event: Started) -> None:
        self.started = event
        self.info = RunInfo(event.run_name, event.preset, event.device, event.dataset,
                            event.num_images, event.run_dir)
        self.progress = Progress(
            epoch=event.start_epoch, epochs=event.epochs, steps_per_epoch=event.steps_per_epoch,
            global_step=event.global_step, start_step=event.global_step,
        )
        self.history.add_records(event.history)
        if event.resumed_from:
            self.log_line(f"Resumed from {event.resumed_from} at epoch {event.start_epoch}, "
                          f"step {event.global_step:,}", "bold")
        self.log_line(f"Training {event.preset} on {event.num_images:,} images "
                      f"({event.dataset}) on {event.device}")
        self.log_line(f"Run folder: {event.run_dir}", "dim")

    def _handle_step_stats(self, event: StepStats) -> None:
        start = self.progress.start_step if self.progress else 0
        self.progress = Progress(
            epoch=event.epoch, epochs=event.epochs, batch=event.batch,
            steps_per_epoch=event.steps_per_epoch, global_step=event.global_step,
            start_step=start, img_per_s=event.img_per_s, elapsed_s=event.elapsed_s,
            g_loss=event.g_loss, d_loss=event.d_loss, d_real=event.d_real, d_fake=event.d_fake,
        )
        self.history.append(event.global_step, event.g_loss, event.d_loss,
                            event.d_real, event.d_fake)

    def _handle_epoch_end(self, event: EpochEnd) -> None:
        self.log_line(event.seed_line())
        self._epoch_ends += 1
        # An epoch's scores come before the next EpochEnd: none by now means none at all
        # (scores off, or a dataset the digit classifier cannot judge).
        if self._epoch_ends > 1 and self.quality is None:
            self.query_one(ProgressPanel).show_quality(None, "no quality scores for this run")

    def _handle_quality(self, event: Quality) -> None:
        self.quality = event
        self.log_line(event.line(), "cyan")
        self.query_one(ProgressPanel).show_quality(event)
        self.query_one(DigitsPanel).show_classes(event.histogram)

    def _handle_samples(self, event: Samples) -> None:
        digits = self.query_one(DigitsPanel)
        caption = _samples_caption(event)
        had_labels = digits.labels is not None
        digits.show(event.images, caption, event.labels)
        if had_labels != (digits.labels is not None):
            digits.refresh(layout=True)  # a caption line per row changes the best width

    def _handle_checkpoint(self, event: CheckpointSaved) -> None:
        if event.reason != "kept":
            self.last_checkpoint = event.path
        if event.reason != "epoch":  # every epoch rewrites last.pt: not news
            how = _SAVE_REASONS.get(event.reason, event.reason)
            self.log_line(f"Checkpoint {self._run_relative(event.path)} ({how})", "green")
        if self._saving and event.reason in ("request", "kept"):
            # The engine writes last.pt and then a kept copy; the copy is the one to keep.
            self._save_notice = event.path
            self._saving = event.reason == "request"

    def _handle_paused(self, event: Paused) -> None:
        self._paused = self._want_pause = True  # the engine may pause itself (divergence)
        self.log_line(f"Paused at step {event.global_step:,}", "yellow")

    def _handle_resumed(self, event: Resumed) -> None:
        self._paused = self._want_pause = False
        self._diverged = False  # the engine resumes a diverged run only if its weights are fine
        self.log_line(f"Resumed at step {event.global_step:,}", "yellow")

    def _handle_diverged(self, event: Diverged) -> None:
        self._diverged = True
        message = one_line(event.message)
        self.log_line(f"Diverged: {message}", "bold red")
        then = ("resume the last good checkpoint" if event.checkpoint
                else "start again")  # nothing of this run was saved yet
        self.log_line(f"Press q to end the run (nothing more is saved), then {then} with "
                      "lower learning rates.", "red")
        self.notify(f"{message}. Press q to end the run.", title="Training diverged",
                    severity="error", timeout=20, markup=False)

    def _handle_finished(self, event: Finished) -> None:
        self.finished = event
        self._paused = False
        self._saving = False
        if event.checkpoint:
            self.last_checkpoint = event.checkpoint
        # Says what is true: "saved" only when the checkpoint holds the last step.
        for line in self.ending_lines():
            self.log_line(line, "bold")

    def _handle_error(self, event: Error) -> None:
        message = one_line(event.message)  # paths in it may hold control characters
        if event.fatal:
            self.fatal_error = message
        self._saving = False
        self.log_line(("Error: " if event.fatal else "Warning: ") + message, "bold red")
        # markup=False everywhere: a path like runs/[b]x[/b] must show as typed.
        self.notify(message, title="Error" if event.fatal else "Warning",
                    severity="error" if event.fatal else "warning", timeout=10, markup=False)

    def _handle_other(self, event: Event) -> None:
        """Newer engine events: log their own summary line if they have one."""
        line = getattr(event, "line", None)
        if callable(line):
            self.log_line(str(line()), "cyan")

    _HANDLERS: ClassVar[dict[type, Callable[[GanTuiApp, Event], None]]] = {
        Started: _handle_started,
        StepStats: _handle_step_stats,
        EpochEnd: _handle_epoch_end,
        Samples: _handle_samples,
        CheckpointSaved: _handle_checkpoint,
        Paused: _handle_paused,
        Resumed: _handle_resumed,
        Finished: _handle_finished,
        Error: _handle_error,
        Diverged: _handle_diverged,
        Quality: _handle_quality,
    }

    # ------------------------------------------------------------ drawing

    @property
    def phase(self) -> Phase:
        if self.fatal_error:
            return Phase.ERROR
        if self._diverged:
            return Phase.DIVERGED
        if self.finished:
            return Phase.DONE if self.finished.reason == "completed" else Phase.STOPPED
        if self._quitting or self._saving:
            return Phase.SAVING
        if self.started is None:
            return Phase.STARTING
        return Phase.PAUSED if self._paused else Phase.TRAINING

    def _refresh_panels(self) -> None:
        self.query_one(HeaderBar).show(self.info, self.phase)
        self.query_one(ProgressPanel).show(self.progress, self.phase)

    def _run_relative(self, path: str) -> str:
        """Paths inside the run folder are shown relative to it (the log is narrow)."""
        try:
            return str(Path(path).relative_to(self.info.run_dir))
        except ValueError:
            return _display_path(Path(path))

    def log_line(self, message: str, style: str = "") -> None:
        self.query_one(LogPanel).add(message, style)

    # ------------------------------------------------------------ actions

    def action_toggle_pause(self) -> None:
        if not self._engine_ready():
            return
        if self._diverged:
            # The engine paused itself; it answers each Resume (an Error notice while
            # the weights are not numbers), so every press asks again.
            self.send(Resume())
            return
        # Toggle what was asked, not what was last seen: two quick presses cancel out.
        self._want_pause = not self._want_pause
        self.send(Pause() if self._want_pause else Resume())

    def action_save(self) -> None:
        if self._engine_ready():
            self._saving = True
            self.send(Save())
            self._refresh_panels()

    def action_sample(self) -> None:
        if self._engine_ready():
            self.send(Sample(count=16))

    def action_sample_digit(self, digit: int) -> None:
        """16 fresh samples of one digit, for presets conditioned on the class."""
        if not self._engine_ready():
            return
        if not is_conditional(self.config.preset):
            self.notify("Digit keys need a conditional preset such as --preset cgan.",
                        timeout=5, markup=False)
            return
        self.send(Sample(count=16, digit=digit))

    def _engine_ready(self) -> bool:
        """True if commands reach a running engine; otherwise say why not."""
        if self._trainer is not None and not self._worker_done:
            return True
        if not self._worker_done:
            message = "Still loading the data and models; try again in a moment."
        elif self.last_checkpoint:
            message = f"Training has ended; the last checkpoint is {self.last_checkpoint}."
        else:
            message = "Training is not running."
        self.notify(message, severity="warning", timeout=4, markup=False)
        return False

    def action_cycle_renderer(self) -> None:
        self.query_one(DigitsPanel).cycle_mode()

    def action_toggle_plot(self) -> None:
        plot = self.query_one(LossPlot)
        plot.mode = "d" if plot.mode == "loss" else "loss"

    def action_toggle_log_y(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_y = not plot.log_y

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self, reason: str = "stop", signum: int | None = None) -> None:
        """Ask the engine to save last.pt and stop; the app exits when the worker ends.

        `signum`: the signal that asked, so the process exits with 128 + signum.
        """
        if self._quitting:
            return
        if signum is not None:
            self._signal = signum
        with self._trainer_lock:
            self._quitting = True
            trainer = self._trainer
        if trainer is None or self._worker_done:
            self._exit_app()
            return
        trainer.request_stop(reason)
        if self._diverged:
            self.log_line("Stopping; the diverged weights are not saved…", "bold")
        else:
            self.log_line("Saving last.pt before quitting…", "bold")
        self._refresh_panels()
        self.set_timer(self.QUIT_TIMEOUT_S, self._exit_app)

    def _exit_app(self) -> None:
        self.exit(return_code=self.exit_code())

    def exit_code(self) -> int:
        """1 after a fatal error, 128 + signal after a signal; else as headless runs end:
        3 when the run diverged, 1 when its last state could not be saved, else 0."""
        if self.fatal_error:
            return 1
        if self._signal:
            return 128 + self._signal
        if self.finished is None:
            return 0
        from gan_tui.headless import exit_code  # late import: it loads the engine

        return exit_code(self.finished, [])

    # ------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> None:
        """SIGHUP (the SSH connection dropped), SIGTERM and SIGINT save and quit, like q.

        (In the terminal ctrl+c arrives as a key, not SIGINT: see BINDINGS.)
        Plain `signal.signal`, not the event loop's handlers: when the terminal is
        gone, Textual's output thread dies and the loop can block for good on its
        next write (textual#6692), so nothing here may wait for the loop.
        """
        for name in ("SIGHUP", "SIGTERM", "SIGINT"):
            signum = getattr(signal, name, None)  # Windows has no SIGHUP
            # One the process was started ignoring stays ignored, as in headless runs
            # (SIGHUP under nohup). A terminal that hangs up still ends the app: see
            # _watch_terminal; a dashboard has nothing to draw on without one.
            if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _watch_terminal(self) -> None:
        """Treat a terminal that hung up like SIGHUP, for when no signal comes (a parent
        that swallows it). Linux only: macOS reports ttys as invalid to poll()."""
        stdin = sys.__stdin__
        if not sys.platform.startswith("linux") or stdin is None or not stdin.isatty():
            return

        def watch(fd: int) -> None:
            while not terminal_hung_up(fd, timeout_s=1.0):
                pass
            self._on_signal(signal.SIGHUP, None)

        threading.Thread(target=watch, args=(stdin.fileno(),), name="gan-tui-tty-watch",
                         daemon=True).start()

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        """Runs on the main thread between two bytecodes, possibly inside a stuck write
        (or on the terminal watcher's thread): thread-safe calls only, no locks."""
        if self._signal is not None:
            return
        self._signal = signum
        self._stop_requested = True  # the worker checks it if the engine is still loading
        trainer = self._trainer
        if trainer is not None:
            trainer.request_stop("interrupt")  # a SimpleQueue put: safe in a signal handler
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            self._ui_loop.call_soon_threadsafe(self.request_quit, "interrupt", signum)
        threading.Thread(target=self._exit_after_save, args=(signum,),
                         name="gan-tui-exit-guard", daemon=True).start()

    def _exit_after_save(self, signum: int) -> None:
        """Guarantee the process ends once the engine has saved, whatever the UI does."""
        self._training_done.wait(self.SIGNAL_SAVE_S)
        if signum != getattr(signal, "SIGHUP", None):
            # The terminal is still there: give the normal exit (which restores it and
            # prints the resume command) time to finish first.
            time.sleep(self.SIGNAL_GRACE_S)
        os._exit(128 + signum)  # after SIGHUP there is no terminal to restore or print to

    def on_unmount(self) -> None:
        # Whatever ended the app (even a crash), the engine must stop, or the process
        # would wait for the whole run when it exits.
        trainer = self._trainer
        if trainer is not None and not self._worker_done:
            trainer.request_stop("interrupt")

    # ------------------------------------------------------------ after

    def ending_lines(self) -> list[str]:
        """How the run ended and how to go on from it, in the headless runner's words
        (paths as typed when inside the working directory)."""
        finished = self.finished
        if finished is None:  # it never started, or crashed before it could say
            last = Path(self.info.run_dir) / "checkpoints" / "last.pt"
            if self.info.run_dir and last.exists():
                return [f"Resume with: gan-tui train --resume {_display_path(last)}"]
            return []
        from gan_tui.headless import ending_lines  # late import: it loads the engine

        shown = dataclasses.replace(
            finished, run_dir=_display_path(Path(finished.run_dir)),
            checkpoint=finished.checkpoint and _display_path(Path(finished.checkpoint)))
        return ending_lines(shown, self.config)


_SAVE_REASONS = {
    "request": "saved on request", "kept": "copy kept", "stop": "saved before stopping",
    "interrupt": "saved on interrupt", "crash": "saved after a crash",
}


def terminal_hung_up(fd: int, timeout_s: float = 0.0) -> bool:
    """True once the terminal on `fd` has hung up (the other end of the pty closed)."""
    poller = select.poll()
    poller.register(fd, 0)  # ask for nothing: poll still reports HUP, ERR and NVAL
    gone = select.POLLHUP | select.POLLERR | select.POLLNVAL
    return any(mask & gone for _, mask in poller.poll(int(timeout_s * 1000)))


def _stop_when_cancelled(worker: Worker[None], trainer: TrainerLike, done: threading.Event) -> None:
    """Watchdog: a cancelled worker (the app is closing) stops the engine, even if paused."""
    while not done.is_set():
        if worker.cancelled_event.wait(0.25):
            trainer.request_stop("interrupt")
            return


def _samples_caption(event: Samples) -> str:
    if event.fixed:
        return f"epoch {event.epoch + 1} · fixed noise"
    if event.labels and len(set(event.labels)) == 1:  # a digit key on a conditional preset
        return f"digit {event.labels[0]} · step {event.global_step:,}"
    return f"fresh · step {event.global_step:,}"


def _display_path(path: Path) -> str:
    """Relative to the working directory when inside it (as typed), else absolute."""
    path = path.absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_tui(config: TrainConfig, resume: str | None = None, force: bool = False) -> int:
    """Run the dashboard; print what happened once the screen is back. Returns the exit code.

    `force` resumes a checkpoint even if its setup differs (the CLI's --force).
    """
    factory = functools.partial(make_trainer, force=force)
    app = GanTuiApp(config, resume, trainer_factory=factory, handle_signals=True,
                    freeze_gc=True)
    # No mouse: every control is a key, and the terminal keeps its own text selection
    # (handy for copying paths over SSH and in tmux).
    try:
        app.run(mouse=False)
    finally:
        app.restore_signal_handlers()
    return _report(app)


def _report(app: GanTuiApp) -> int:
    out = sys.stdout
    with contextlib.suppress(OSError):  # after SIGHUP there may be no terminal left
        if app.fatal_error:
            print(f"gan-tui: error: {app.fatal_error}", file=sys.stderr)
        for line in app.ending_lines():
            print(line, file=out)
        out.flush()
    return app.exit_code() or (app.return_code or 0)  # Textual sets 1 if the app crashed
