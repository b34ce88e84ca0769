"""The dashboard's link to a training run: events in, commands out.

The dashboard talks to a `Connection` and does not know which one it has. Today there is
one, `LocalRun`: the trainer runs in this process, on a thread of its own. (A viewer
attached to a detached training process will be another: it delivers the same events,
the run's history first, and sends the same commands.)

Threads (LocalRun): the engine calls our sink on the training thread. The sink only
appends to an `EventBuffer` (a lock held for microseconds) and, for the events a key
press waits for, wakes the UI; the UI drains the buffer on its own timer. So training
never waits for the UI, and the UI never waits for training: commands go the other way
through the engine's thread-safe queue.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

from gan_tui.config import TrainConfig
from gan_tui.errors import GanTuiError
from gan_tui.events import (
    CheckpointSaved,
    Command,
    Error,
    Event,
    Finished,
    HandedOver,
    Notice,
    Sink,
    StepStats,
    Stop,
)
from gan_tui.process import freeze_startup_objects
from gan_tui.runs import wait_for_socket
from gan_tui.serve.client import ControlClient
from gan_tui.serve.hosting import hosted
from gan_tui.serve.protocol import Hello, HistoryDone, ProtocolError
from gan_tui.tui.state import EventBuffer


class Connection(Protocol):
    """What the dashboard needs from a training run, wherever it runs.

    Every method is called on the UI thread except `request_stop`, which a signal
    handler may call too (so it takes no locks and never waits).
    """

    @property
    def ready(self) -> bool:
        """True while commands reach a running trainer."""
        ...

    @property
    def done(self) -> bool:
        """True once no more events will come (after one last `drain`): the run ended,
        this viewer let go of it, or it never started."""
        ...

    def start(self, wake: Callable[[], None]) -> str:
        """Start the run (or connect to it) without waiting; return a line telling the
        user what is happening ('' when nothing starts).

        `wake` may be called from any thread, at any time: when events arrive that the
        user is waiting to see (routine step statistics wait for the next `drain`), and
        once more when `done` turns True. It must be thread-safe and never block.
        """
        ...

    def drain(self) -> list[Event]:
        """The events that arrived since the last call, in order (never blocks)."""
        ...

    def send(self, command: Command) -> bool:
        """Pass a command on; False when no trainer is there to obey it."""
        ...

    def request_stop(self, reason: str = "stop") -> bool:
        """Ask the run to end as this viewer's quit means it (a local run saves last.pt and
        stops). True when an ending is on its way: `done` turns True once it has come;
        False when there is nothing to wait for. Signal-safe."""
        ...

    def detach(self) -> bool:
        """Let go of the run, which trains on without this viewer (`d`, a hang-up).
        True when an ending is on its way (a local run first saves and hands itself to a
        background process), False when there is nothing to wait for. Signal-safe."""
        ...

    def stop_run(self) -> bool:
        """Ask the run itself to save and stop, whoever started it. As `request_stop`."""
        ...

    def close(self) -> None:
        """The viewer is going away, however it ended: nothing may keep running for it."""
        ...


class TrainerLike(Protocol):
    """What LocalRun needs from gan_tui.train.Trainer (tests may pass a stand-in)."""

    run_dir: Path
    sink: Sink

    def send(self, command: Command) -> None: ...

    def request_stop(self, reason: str = "stop") -> None: ...

    def run(self) -> Finished: ...


TrainerFactory = Callable[[TrainConfig, Sink, "str | None"], TrainerLike]


def make_trainer(config: TrainConfig, sink: Sink, resume: str | None,
                 force: bool = False) -> TrainerLike:
    from gan_tui.train import Trainer  # late import: torch takes a second to load

    # A NaN loss pauses the run instead of ending it: the user sees it and decides.
    return Trainer(config, sink, resume=resume, force=force, on_divergence="pause")


class LocalRun:
    """The trainer in this process, built by `factory` and run on a thread of its own.

    `autostart=False` starts nothing: tests then `feed()` the events a trainer would send.
    `freeze_gc` hides the start-up objects from the garbage collector once the trainer is
    built (the real process does; see gan_tui.process).
    """

    LOADING = "Loading the data and building the models…"

    def __init__(self, config: TrainConfig, resume: str | None = None,
                 factory: TrainerFactory = make_trainer, *, autostart: bool = True,
                 freeze_gc: bool = False) -> None:
        self._config = config
        self._resume = resume
        self._factory = factory
        self._autostart = autostart
        self._freeze_gc = freeze_gc
        self._buffer = EventBuffer()
        self._wake: Callable[[], None] = _nothing
        self._thread: asyncio.Future[None] | None = None
        self._trainer: TrainerLike | None = None
        self._stopping = False  # read by the training thread; set without a lock (signals)
        self._handing_over = False  # this stop is a detach: carry the run on elsewhere
        self._done = threading.Event()  # the training thread has ended, or never started
        if not autostart:
            self._done.set()

    @property
    def trainer(self) -> TrainerLike | None:
        """The engine, once built (None while loading or if it failed to start)."""
        return self._trainer

    @property
    def ready(self) -> bool:
        return self._trainer is not None and not self._done.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def feed(self, *events: Event) -> None:
        """Queue events as if the engine had sent them (tests, replays)."""
        for event in events:
            self._buffer.put(event)

    def start(self, wake: Callable[[], None]) -> str:
        self._wake = wake
        if not self._autostart:
            return ""
        # The loop's executor, as Textual's thread workers use: closing the loop (asyncio.run)
        # waits for the thread, so the process cannot end in the middle of a save.
        self._thread = asyncio.get_running_loop().run_in_executor(None, self._run)
        return self.LOADING

    def drain(self) -> list[Event]:
        return self._buffer.drain()

    def send(self, command: Command) -> bool:
        trainer = self._trainer
        if trainer is None or self._done.is_set():
            return False
        trainer.send(command)
        return True

    def request_stop(self, reason: str = "stop") -> bool:
        # The flag first, then the trainer: the training thread publishes the trainer and
        # then reads the flag, so at least one of the two sees the other.
        self._stopping = True
        trainer = self._trainer
        if trainer is None or self._done.is_set():
            return False
        trainer.request_stop(reason)  # a SimpleQueue put: safe in a signal handler
        return True

    def detach(self) -> bool:
        """Save at this step, stop, and start a background process that resumes from
        the checkpoint (resume is exact), so training goes on without this terminal.
        Still loading: the trainer is built, saved at step 0 and handed over all the same."""
        self._handing_over = True  # before the stop: the training thread reads it after
        if not self.request_stop("detach"):
            return not self._done.is_set()  # loading: the hand-over is on its way
        return True

    def stop_run(self) -> bool:
        return self.request_stop("stop")

    def close(self) -> None:
        # Whatever ended the viewer (even a crash), the engine must stop, or the process
        # would wait for the whole run when it exits.
        self.request_stop("interrupt")

    # --------------------------------------------------- the training thread

    def _run(self) -> None:
        try:
            self._build_and_run()
        except Exception as exc:  # a bug here must still reach the screen
            self._buffer.put(Error(f"training failed: {type(exc).__name__}: {exc}"))
        finally:
            self._done.set()
            self._wake()

    def _build_and_run(self) -> None:
        reported = False

        def sink(event: Event) -> None:
            nonlocal reported
            reported = reported or (isinstance(event, Error) and event.fatal)
            self._buffer.put(event)
            if not isinstance(event, (StepStats, CheckpointSaved)):
                # Paused, Samples...: answer a key press now, not at the next poll. (Saves
                # wait for the poll, which then sees last.pt and its kept copy together.)
                self._wake()

        try:
            trainer = self._factory(self._config, sink, self._resume)
        except GanTuiError as exc:
            self._buffer.put(Error(str(exc)))
            return
        except Exception as exc:  # shown to the user, not swallowed
            self._buffer.put(Error(f"could not start training: {type(exc).__name__}: {exc}"))
            return
        if self._stopping and not self._handing_over:
            return  # quit while loading: nothing trained, nothing to save
        self._trainer = trainer
        if self._handing_over:
            trainer.request_stop("detach")  # asked while loading: save step 0, hand over
        elif self._stopping:
            return  # asked in between: whoever asked either saw the trainer or left already
        if self._freeze_gc:
            freeze_startup_objects()
        try:
            with hosted(trainer):  # reachable by `gan-tui attach` and `gan-tui runs`
                finished = trainer.run()
                if self._handing_over:  # before the socket closes: its viewers learn it too
                    self._hand_over(trainer, finished)
        except Exception as exc:  # the engine saved and reported it
            if not reported:
                self._buffer.put(Error(f"training failed: {type(exc).__name__}: {exc}"))

    def _hand_over(self, trainer: TrainerLike, finished: Finished) -> None:
        """Start the background process once the run saved its last step and let go
        of its folder (trainer.run() has returned: the lock is free), and say so to this
        dashboard and to every viewer attached to it (trainer.sink, while hosted)."""
        if finished.reason != "stopped" or finished.checkpoint_step != finished.global_step:
            return  # diverged or not saved: nothing exact to carry on from
        from gan_tui.detach import hand_over

        try:
            pid = hand_over(trainer.run_dir, Path(str(finished.checkpoint)))
        except (OSError, GanTuiError) as exc:
            trainer.sink(Error(f"could not carry the run on in the background: {exc}; "
                               "it is saved, resume it by hand"))
            return
        trainer.sink(HandedOver(pid, str(trainer.run_dir), finished.global_step))


class SocketRun:
    """A viewer attached to a training process through its control socket.

    A reader thread turns the socket's frames into events in an `EventBuffer`: first
    the run's history (what a viewer that had watched all along would have seen), then
    live events. Quitting this viewer only detaches: the run trains on. `stop_run` is
    the explicit way to end the run itself.
    When the run is handed to a background process (the dashboard that trains it
    pressed d, or lost its terminal), the viewer follows it there: it connects to the
    new process's socket once that listens, and its events carry on the same screen.
    """

    FOLLOW_WAIT_S: ClassVar[float] = 60.0  # the new process loads torch before it listens

    def __init__(self, socket_path: str | Path, run_dir: Path) -> None:
        self.socket_path = str(socket_path)
        self.run_dir = run_dir
        # Room for a long history's loss curve, delivered before the first drain.
        self._buffer = EventBuffer(max_stats=20_000)
        self._wake: Callable[[], None] = _nothing
        self._client: ControlClient | None = None
        self._live = False  # the history has been delivered
        self._finished = False
        self._leaving = False
        self._moved_to: int | None = None  # the pid the run was handed to, until followed
        self._done = threading.Event()

    @property
    def ready(self) -> bool:
        return self._client is not None and not self._done.is_set() and not self._finished

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self, wake: Callable[[], None]) -> str:
        self._wake = wake
        threading.Thread(target=self._read, name="gan-tui-attach", daemon=True).start()
        return f"Attaching to {self.run_dir.name}…"

    def drain(self) -> list[Event]:
        return self._buffer.drain()

    def send(self, command: Command) -> bool:
        client = self._client
        return bool(client and self.ready and client.send(command))

    def request_stop(self, reason: str = "stop") -> bool:
        """This viewer's quit: let go of the run (it trains on). Nothing to wait for."""
        self._leave()
        return False

    def detach(self) -> bool:
        self._leave()
        return False

    def stop_run(self) -> bool:
        """Ask the run itself to save and stop; its Finished event follows."""
        return self.send(Stop("stop"))

    def close(self) -> None:
        self._leave()

    def _leave(self) -> None:
        self._leaving = True
        client = self._client
        if client is not None:
            client.close()

    # ------------------------------------------------------ the reader thread

    def _read(self) -> None:
        ending: Event | None = None
        try:
            self._watch(self.socket_path)
            while self._moved_to is not None and not self._leaving:
                ending = self._follow(self._moved_to)
        except GanTuiError as exc:  # it ended just before we came, or cannot be reached
            gone = self._why_gone()
            ending = gone if isinstance(gone, Notice) else Error(str(exc))
        except ProtocolError as exc:
            ending = Error(f"the run sent something this gan-tui cannot read ({exc}); is it "
                           "a different version?")
        finally:
            if ending is None and not (self._finished or self._leaving):
                ending = self._why_gone()
            if ending is not None:
                self._buffer.put(ending)
            self._done.set()
            self._wake()

    def _watch(self, socket_path: str) -> None:
        self._client = ControlClient.connect(socket_path)
        self._deliver_all(self._client)

    def _follow(self, pid: int) -> Event | None:
        """Watch the process the run was handed to; a Notice if it cannot be reached."""
        self._moved_to = None
        try:
            socket_path = wait_for_socket(self.run_dir, self.FOLLOW_WAIT_S, pid=pid,
                                          give_up=lambda: self._leaving)
            if socket_path is None:
                return None  # this viewer left meanwhile
            self._live = self._finished = False
            self._watch(socket_path)
        except GanTuiError as exc:
            return Notice(f"Could not follow the run to process {pid}: {exc}")
        return None

    def _why_gone(self) -> Event:
        """The connection ended without a Finished: a run that ended meanwhile says so in
        its status; anything else went away without a word."""
        from gan_tui.serve import registry

        state = registry.live_state(self.run_dir)
        if state in ("done", "stopped", "diverged"):
            return Notice(f"The run has ended ({state}); gan-tui runs lists it.")
        return Error(f"the run's process went away without a word ({state}: gan-tui runs "
                     "shows it)")

    def _deliver_all(self, client: ControlClient) -> None:
        for message in client.messages():
            if isinstance(message, HistoryDone):
                self._live = True
                self._wake()
                continue
            if isinstance(message, Hello):
                continue
            self._buffer.put(message)
            self._finished = self._finished or isinstance(message, Finished)
            if isinstance(message, HandedOver):  # on this socket: this run
                self._moved_to = message.pid
            # During the history one wake at its end; then as LocalRun does.
            if self._live and not isinstance(message, (StepStats, CheckpointSaved)):
                self._wake()


def _nothing() -> None:
    pass
