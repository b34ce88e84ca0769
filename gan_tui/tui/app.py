"""The Textual app around the dashboard: which run to show, and the process's lifecycle.

The app opens a connection to the run (`LocalRun`: the trainer in this process), shows
the `Dashboard` screen over it and decides how the process ends.

Ending: q / ctrl+c ask the run to stop (it saves last.pt) and the app exits once it has.
A signal (SIGHUP when the SSH connection drops, SIGTERM, SIGINT) or a terminal that hung
up does the same without relying on the event loop, and an exit guard ends the process
once the checkpoint is written. A run whose losses stop being numbers pauses itself
(DIVERGED); q then ends it without saving over the last good checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import signal
import sys
import threading
import time
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import AwaitMount

from gan_tui.config import TrainConfig
from gan_tui.tui import pixels
from gan_tui.tui.connection import (
    Connection,
    LocalRun,
    TrainerFactory,
    TrainerLike,
    make_trainer,
)
from gan_tui.tui.dashboard import Dashboard
from gan_tui.tui.view import ViewState

__all__ = ["GanTuiApp", "TrainerFactory", "TrainerLike", "make_trainer", "run_tui",
           "terminal_hung_up"]


class GanTuiApp(App[int]):
    """One training run on the dashboard; the exit code says how it ended."""

    CSS_PATH = "app.tcss"
    TITLE = "gan-tui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority, so ctrl+c quits the same way wherever focus is, help screen included
        # (Textual's default only tells you how to quit).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

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
        connection: Connection | None = None,
        on_hangup: str = "detach",
    ) -> None:
        """`autostart=False` starts no training: tests then feed events with
        `app.connection.feed()`. `connection` replaces the in-process run altogether.

        The real process (`run_tui`) also handles signals and, once training is set up,
        hides the start-up objects from the garbage collector (see gan_tui.process).
        `on_hangup`: what a lost terminal (SIGHUP, or a tty that hung up) does to a run
        started here: "detach" (save and carry it on in the background) or "stop" (save
        and stop).
        """
        super().__init__()
        self.config = config
        self.connection: Connection = connection or LocalRun(
            config, resume, trainer_factory, autostart=autostart, freeze_gc=freeze_gc)
        self.view = ViewState.for_config(config)  # outlives the screen: the exit code
        self.dashboard = Dashboard(self.connection, self.view)
        self._handle_signals = handle_signals
        self._on_hangup = on_hangup
        self._signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        # The terminal's graphics protocol ("sixel", "kitty") when it has one: the digits
        # panel then offers real pixels. run_app asks the terminal before Textual starts.
        self.pixels: str | None = None

    def get_default_screen(self) -> Screen:
        # The first screen, not one pushed over a blank one: app.query_one finds its widgets.
        return self.dashboard

    async def on_mount(self) -> None:
        self._ui_loop = asyncio.get_running_loop()
        if self._handle_signals:
            self._install_signal_handlers()
            self._watch_terminal()
        # The default screen composes on its own task: wait for it, so that the app is
        # only "ready" (to Pilot and to the first key press) with its widgets in place.
        await AwaitMount(self.dashboard, [self.dashboard])

    def on_unmount(self) -> None:
        self.connection.close()

    # ------------------------------------------------------------ ending

    async def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self, reason: str = "stop", signum: int | None = None) -> None:
        """Ask the run to save last.pt and stop; the app exits once it has.

        `signum`: the signal that asked, so the process exits with 128 + signum.
        """
        if signum is not None and not self.view.quitting:
            self._signal = signum
        self.dashboard.request_quit(reason)

    def on_dashboard_leave(self, _message: Dashboard.Leave) -> None:
        self.exit(return_code=self.exit_code())

    def exit_code(self) -> int:
        """1 after a fatal error, 128 + signal after a signal; else as headless runs end:
        3 when the run diverged, 1 when its last state could not be saved, else 0."""
        return self.view.exit_code(self._signal)

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
        # Signal-safe calls: a flag and a queue put.
        hangup = signum == getattr(signal, "SIGHUP", None)
        if hangup and self._on_hangup == "detach" and not self.view.quitting:
            self.connection.detach()  # the run goes on in the background
        else:
            self.connection.request_stop("interrupt")
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            self._ui_loop.call_soon_threadsafe(self.request_quit, "interrupt", signum)
        threading.Thread(target=self._exit_after_save, args=(signum,),
                         name="gan-tui-exit-guard", daemon=True).start()

    def _exit_after_save(self, signum: int) -> None:
        """Guarantee the process ends once the run has saved, whatever the UI does."""
        deadline = time.monotonic() + self.SIGNAL_SAVE_S
        while not self.connection.done and time.monotonic() < deadline:
            time.sleep(0.05)
        if signum != getattr(signal, "SIGHUP", None):
            # The terminal is still there: give the normal exit (which restores it and
            # prints the resume command) time to finish first.
            time.sleep(self.SIGNAL_GRACE_S)
        os._exit(128 + signum)  # after SIGHUP there is no terminal to restore or print to


def terminal_hung_up(fd: int, timeout_s: float = 0.0) -> bool:
    """True once the terminal on `fd` has hung up (the other end of the pty closed)."""
    poller = select.poll()
    poller.register(fd, 0)  # ask for nothing: poll still reports HUP, ERR and NVAL
    gone = select.POLLHUP | select.POLLERR | select.POLLNVAL
    return any(mask & gone for _, mask in poller.poll(int(timeout_s * 1000)))


def run_tui(config: TrainConfig, resume: str | None = None, force: bool = False,
            on_hangup: str = "detach") -> int:
    """Run the dashboard; print what happened once the screen is back. Returns the exit code.

    `force` resumes a checkpoint even if its setup differs (the CLI's --force).
    """
    factory = functools.partial(make_trainer, force=force)
    app = GanTuiApp(config, resume, trainer_factory=factory, handle_signals=True,
                    freeze_gc=True, on_hangup=on_hangup)
    return run_app(app)


def run_app(app: GanTuiApp) -> int:
    """Run a dashboard app as the real process does; print its ending; the exit code."""
    # Before Textual reads the terminal: afterwards its answer would arrive as key presses.
    app.pixels = app.pixels or pixels.prepare(pixels.detect())
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
        if app.view.fatal_error:
            print(f"gan-tui: error: {app.view.fatal_error}", file=sys.stderr)
        for line in app.view.ending_lines():
            print(line, file=out)
        out.flush()
    return app.exit_code() or (app.return_code or 0)  # Textual sets 1 if the app crashed
