"""Commands -> decisions at step boundaries: go on, pause, stop.

Commands arrive on a thread-safe, signal-safe queue at any time; the loop asks
`obey_pending()` between two steps and acts on the answer, so nothing ever lands in
the middle of a step. Save and Sample are carried out through the `Host` (the trainer);
Pause blocks here until Resume or Stop. In a multi-process run, rank 0 decides and
broadcasts the decision from here.
"""

from __future__ import annotations

import collections
import queue
import time
from typing import Protocol

from gan_tui.events import (
    Command,
    Event,
    Pause,
    Paused,
    Resume,
    Resumed,
    Sample,
    Save,
    Stop,
)

# While paused, wake up this often to notice signals even if no command comes.
PAUSE_POLL_S = 0.25


class Host(Protocol):
    """What the controller needs from the loop it steers."""

    global_step: int

    def emit(self, event: Event) -> None: ...

    def save_on_request(self, reason: str) -> None: ...

    def draw_samples(self, command: Sample) -> None: ...

    def pause_begins(self) -> None:
        """Show where training stopped (the steps since the last stats)."""

    def pause_ends(self) -> None:
        """Training goes on (or stops): time the next stats window from now."""

    def may_resume(self) -> bool:
        """False refuses a Resume (after a divergence, while the weights are not finite)."""


class Control:
    """The command queue and what each command means between two steps."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._held: collections.deque[Command] = collections.deque()  # see answer_sample_requests
        self.stop_reason = "stop"  # the reason of the Stop that ended training
        self.paused_s = 0.0  # seconds spent paused, which training time leaves out

    def send(self, command: Command) -> None:
        """Thread-safe and reentrant (SimpleQueue), so signal handlers may call it too."""
        self.commands.put(command)

    def obey_pending(self) -> bool:
        """Obey every queued command; False when training should stop."""
        while (command := self._next_command()) is not None:
            if not self._obey(command):
                return False
        return True

    def answer_sample_requests(self) -> None:
        """Draw requested samples now; hold every other command for the next step.

        Called while an epoch ends: a save (or a pause, during which one may be asked
        for) must not land between an epoch's last step and its record, or a resume
        would end that epoch twice.
        """
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, Sample):
                self.host.draw_samples(command)
            else:
                self._held.append(command)

    def wait_while_paused(self) -> bool:
        """Block until Resume (True) or Stop (False), obeying Save and Sample meanwhile."""
        self.host.pause_begins()
        self.host.emit(Paused(self.host.global_step))
        paused_at = time.monotonic()
        try:
            while True:
                command = self._next_command(timeout=PAUSE_POLL_S)
                if command is None:
                    continue
                if isinstance(command, Resume):
                    if not self.host.may_resume():
                        continue
                    self.host.emit(Resumed(self.host.global_step))
                    return True
                if not isinstance(command, Pause) and not self._obey(command):
                    return False
        finally:
            self.paused_s += time.monotonic() - paused_at
            self.host.pause_ends()

    def _next_command(self, timeout: float = 0.0) -> Command | None:
        """The next command (any held back while an epoch ended first), or None if none
        comes within `timeout` seconds."""
        if self._held:
            return self._held.popleft()
        try:
            return self.commands.get(timeout=timeout) if timeout else self.commands.get_nowait()
        except queue.Empty:
            return None

    def _obey(self, command: Command) -> bool:
        if isinstance(command, Stop):
            self.stop_reason = command.reason
            return False
        if isinstance(command, Pause):
            return self.wait_while_paused()
        if isinstance(command, Save):
            self.host.save_on_request(command.reason)
        elif isinstance(command, Sample):
            self.host.draw_samples(command)
        return True  # Resume while running: nothing to do
