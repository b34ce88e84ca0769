"""The viewer's end of a run's control socket: read its events, send it commands."""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from gan_tui.errors import GanTuiError
from gan_tui.events import Command
from gan_tui.serve import protocol
from gan_tui.serve.server import FrameReader

_RECV = 65536


class NotRunning(GanTuiError):
    """The run has no live control socket."""


class ControlClient:
    """A blocking connection to one run. `messages()` runs on one thread (a reader);
    `send` may be called from any other thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._reader = FrameReader()
        self._pending: collections.deque[protocol.Message] = collections.deque()

    @classmethod
    def connect(cls, socket_path: str | Path, timeout_s: float = 5.0) -> ControlClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            sock.close()
            raise NotRunning(f"cannot reach the run's control socket {socket_path}: "
                             f"{exc.strerror or exc}") from None
        sock.settimeout(None)
        from gan_tui.serve.server import peer_uid

        if peer_uid(sock) != os.getuid():  # status.json named someone else's socket
            sock.close()
            raise NotRunning(f"{socket_path} belongs to another user: not connecting")
        return cls(sock)

    def messages(self) -> Iterator[protocol.Message]:
        """Messages until the run closes the connection (ProtocolError if it sends junk)."""
        while True:
            # Decoded but not yet taken: a caller may stop iterating after any message
            # and call again, and nothing read from the socket is lost.
            while self._pending:
                yield self._pending.popleft()
            try:
                data = self._sock.recv(_RECV)
            except OSError:
                return
            if not data:
                return
            self._pending.extend(self._reader.feed(data))

    def set_timeout(self, seconds: float | None) -> None:
        """Reads give up (the iteration ends) after `seconds` of silence."""
        self._sock.settimeout(seconds)

    def send(self, command: Command) -> bool:
        """False when the run is gone."""
        frame = protocol.encode(command)
        with self._send_lock:
            try:
                self._sock.sendall(frame)
            except OSError:
                return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
