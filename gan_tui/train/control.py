"""Commands -> decisions at step boundaries: go on, pause, stop.

Commands arrive on a thread-safe, signal-safe queue at any time; the loop asks
`obey_pending()` between two steps and acts on the answer, so nothing ever lands in
the middle of a step. Save and Sample are carried out through the `Host` (the trainer);
Pause blocks here until Resume or Stop.

Under torchrun every rank must take the same decision at the same step boundary. Each
boundary is then one control round (`agree`, an all-reduce MAX of one small integer,
train/dist.py): rank 0 turns its queue (the socket's commands) into a code, any rank
adds STOP for a signal it got or a divergence it saw, and the largest code wins. Save
and Sample need nobody else (rank 0 alone writes and draws), so they never take a
round. Paused ranks meet every PAUSE_POLL_S in the same round, so a pause of any
length never nears the collectives' timeout.
"""

from __future__ import annotations

import collections
import queue
import time
from collections.abc import Callable
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
# A control round's codes, ordered so that the largest wins.
GO, RESUME, PAUSE, STOP = 0, 1, 2, 3


class Host(Protocol):
    """What the controller needs from the loop it steers."""

    global_step: int

    @property
    def diverged(self) -> bool:
        """True once the losses or weights stopped being numbers (until a resume)."""

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

    def __init__(self, host: Host, agree: Callable[[int], int] | None = None) -> None:
        """`agree`: a torchrun control round (code -> the largest over ranks); None alone."""
        self.host = host
        self._agree = agree
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._held: collections.deque[Command] = collections.deque()  # see answer_sample_requests
        self.stop_reason = "stop"  # the reason of the Stop that ended training
        self.paused_s = 0.0  # seconds spent paused, which training time leaves out

    def send(self, command: Command) -> None:
        """Thread-safe and reentrant (SimpleQueue), so signal handlers may call it too."""
        self.commands.put(command)

    def obey_pending(self) -> bool:
        """Obey every queued command; False when training should stop."""
        if self._agree is not None:
            return self._decide_together()
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

    def go_on_together(self) -> bool:
        """At an epoch's end, before its record: False on every rank when any rank saw
        the run diverge (commands wait for the next step boundary, as alone)."""
        if self._agree is None:
            return True
        return self._agree(STOP if self.host.diverged else GO) != STOP

    # ------------------------------------------------------------ under torchrun

    def _decide_together(self) -> bool:
        """One control round: this rank's queue up to a Pause or Stop -> a code; every
        rank acts on the largest."""
        code = GO
        while code == GO and (command := self._next_command()) is not None:
            code = self._code_of(command)
        return self._act_on(self._agree_on(code))

    def _wait_paused_together(self) -> bool:
        """wait_while_paused, with a round every PAUSE_POLL_S: a Resume or Stop on rank 0
        (or a signal anywhere) ends the pause on every rank at once."""
        self.host.pause_begins()
        self.host.emit(Paused(self.host.global_step))
        paused_at = time.monotonic()
        try:
            while True:
                code = GO
                command = self._next_command(timeout=PAUSE_POLL_S)
                if isinstance(command, Resume):
                    code = RESUME if self.host.may_resume() else GO
                elif command is not None and not isinstance(command, Pause):
                    code = self._code_of(command)
                agreed = self._agree_on(code)
                if agreed == STOP:
                    return False
                if agreed == RESUME:
                    self.host.emit(Resumed(self.host.global_step))
                    return True
        finally:
            self.paused_s += time.monotonic() - paused_at
            self.host.pause_ends()

    def _code_of(self, command: Command) -> int:
        """Stop and Pause become codes; Save and Sample are carried out here (rank 0's
        own business); Resume while running means nothing."""
        if isinstance(command, Stop):
            self.stop_reason = command.reason
            return STOP
        if isinstance(command, Pause):
            return PAUSE
        self._obey(command)
        return GO

    def _agree_on(self, code: int) -> int:
        assert self._agree is not None
        if self.host.diverged:
            code = STOP
        agreed = self._agree(code)
        if agreed == STOP and code != STOP:
            self.stop_reason = "interrupt"  # another rank was signalled
        return agreed

    def _act_on(self, agreed: int) -> bool:
        if agreed == STOP:
            return False
        if agreed == PAUSE:
            return self._wait_paused_together()
        return True

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
