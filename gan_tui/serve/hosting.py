"""Make a training run reachable: its control socket and status.json, for as long as
it trains. Both runners (the dashboard's in-process worker and the headless/detached
process) wrap `trainer.run()` in `hosted(trainer)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gan_tui.errors import GanTuiError
from gan_tui.events import Command, Event, Sink
from gan_tui.serve.registry import socket_path_for
from gan_tui.serve.server import ControlServer
from gan_tui.serve.status import StatusWriter

LOG_FILE = "train.log"  # a detached run's output goes here too


class Hostable(Protocol):
    run_dir: Path
    sink: Sink

    def send(self, command: Command) -> None: ...


def run_log(run_dir: Path) -> Callable[[str], None]:
    """One timestamped line appended to the run's train.log per call."""

    def log(line: str) -> None:
        with contextlib.suppress(OSError), open(run_dir / LOG_FILE, "a") as out:
            out.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")

    return log


@contextlib.contextmanager
def hosted(trainer: Hostable) -> Iterator[ControlServer | None]:
    """Serve the trainer's events and take commands while the block runs.

    Without a usable socket folder the run still trains (and says so in its log); the
    status file is written either way.
    """
    log = run_log(trainer.run_dir)
    server: ControlServer | None = None
    try:
        server = ControlServer(socket_path_for(trainer.run_dir), trainer.run_dir,
                               trainer.send, log).start()
    except (OSError, GanTuiError) as exc:
        log(f"control socket unavailable, nobody can attach: {exc}")
    status = StatusWriter(trainer.run_dir, server.socket_path if server else None)
    inner = trainer.sink
    trainer.sink = _fanout(inner, status, server.sink if server else None)
    try:
        yield server
    finally:
        trainer.sink = inner
        if server is not None:
            server.close()


def _fanout(*sinks: Callable[[Event], None] | None) -> Sink:
    live = [s for s in sinks if s is not None]

    def sink(event: Event) -> None:
        for each in live:
            each(event)

    return sink
