"""A run's control endpoint: a Unix socket that streams the run's events to every
connected viewer and passes their commands to the trainer.

One daemon thread runs a selector loop over the listening socket, the viewers and a
wake-up pipe. The training thread only calls `sink` (append to the journal and to each
viewer's bounded queue, then a one-byte wake-up): a slow, stopped or dead viewer never
slows training. When a viewer's queue passes SOFT_LIMIT bytes its step statistics are
dropped (the curve gets coarser); samples, pauses and endings are never dropped, and a
viewer whose queue passes HARD_LIMIT is disconnected.

Only the owner gets in: the socket is 0600 in a 0700 folder and each peer's uid is
checked (SO_PEERCRED) before a byte is read from it. A malformed message closes that
one connection with one line in the run's log.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gan_tui.events import Command, Event, StepStats
from gan_tui.serve import protocol
from gan_tui.serve.journal import Journal

SOFT_LIMIT = 1 * 2**20  # queued bytes past which a viewer's step statistics are dropped
HARD_LIMIT = 64 * 2**20  # queued bytes past which the viewer is cut off
_RECV = 65536
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    _pid, uid, _gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                   _CRED.size))
    return uid


class FrameReader:
    """Splits a byte stream into messages; raises ProtocolError on the first bad one.

    `header_check` vets each frame's header before its body is waited for (the server
    takes only small commands from viewers)."""

    def __init__(self, header_check: Callable[[bytes], tuple[int, int]] = protocol.body_length
                 ) -> None:
        self._buffer = bytearray()
        self._header_check = header_check

    def feed(self, data: bytes) -> list[protocol.Message]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= protocol.HEADER.size:
            kind, length = self._header_check(bytes(self._buffer[:protocol.HEADER.size]))
            end = protocol.HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[protocol.HEADER.size:end])
            del self._buffer[:end]
            messages.append(protocol.decode_body(kind, body))
        return messages


class _Viewer:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.reader = FrameReader(protocol.command_length)
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.dropped = 0
        self.closing = ""  # why it is being cut off, once it is

    def enqueue(self, frame: bytes, droppable: bool) -> None:
        if self.closing:
            return
        if droppable and self.queued > SOFT_LIMIT:
            self.dropped += 1
            return
        if self.queued + len(frame) > HARD_LIMIT:
            self.closing = "it fell too far behind"
            return
        self.queue.append(frame)
        self.queued += len(frame)

    def put_first(self, frames: list[bytes]) -> None:
        """The history, ahead of whatever live events were queued while it was encoded."""
        self.queue.extendleft(reversed(frames))
        self.queued += sum(map(len, frames))

    def flush(self) -> bool:
        """Send what the socket takes now; True when the queue is empty."""
        while self.queue:
            frame = self.queue[0]
            try:
                sent = self.conn.send(frame)
            except BlockingIOError:
                return False
            self.queued -= sent
            if sent < len(frame):
                self.queue[0] = frame[sent:]
                return False
            self.queue.popleft()
        return True


class ControlServer:
    """Serve one run's events and take its commands; see the module docstring.

    `on_command` is called on the server's thread (the trainer's queue is thread-safe);
    `log` gets one line per refused or broken connection.
    """

    def __init__(self, socket_path: Path, run_dir: Path,
                 on_command: Callable[[Command], None],
                 log: Callable[[str], None] = lambda _line: None,
                 allowed_uid: int | None = None) -> None:
        self.socket_path = socket_path
        self.run_dir = run_dir
        self.journal = Journal()
        self._on_command = on_command
        self._log = log
        self._allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self._lock = threading.Lock()  # guards _viewers and their queues
        self._viewers: dict[socket.socket, _Viewer] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> ControlServer:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        try:
            self._listen(listener)
        except BaseException:  # e.g. a path too long to bind: give every descriptor back
            listener.close()
            self._shutdown()
            self._closed.set()
            raise
        self._thread = threading.Thread(target=self._serve, name="gan-tui-control",
                                        daemon=True)
        self._thread.start()
        return self

    def _listen(self, listener: socket.socket) -> None:
        old_umask = os.umask(0o177)  # born 0600: no moment where others may connect
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")

    def close(self) -> None:
        """Flush what viewers can take (the ending), close them and remove the socket."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    # ------------------------------------------------- the training thread

    def sink(self, event: Event) -> None:
        """Record `event` for late viewers and queue it for the connected ones."""
        with self._lock:  # with the journal: a viewer accepted meanwhile gets it once
            self.journal.add(event)
            if not self._viewers:
                return
            try:
                frame = protocol.encode(event)
            except (TypeError, ValueError) as exc:  # e.g. over MAX_FRAME: never the trainer's
                self._log(f"control socket: could not send {type(event).__name__}: {exc}")
                return
            droppable = isinstance(event, StepStats)
            for viewer in self._viewers.values():
                viewer.enqueue(frame, droppable)
        self._wake()

    def _wake(self) -> None:
        if self._wake_w < 0:  # closed: the number may belong to another file by now
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # --------------------------------------------------- the server thread

    def _serve(self) -> None:
        try:
            while not self._closed.is_set():
                for key, mask in self._selector.select(timeout=1.0):
                    self._dispatch_safely(key, mask)
                self._flush_all()
            self._flush_last()
        finally:
            self._shutdown()

    def _dispatch_safely(self, key: selectors.SelectorKey, mask: int) -> None:
        """Whatever one connection does, the endpoint keeps serving the others."""
        try:
            self._dispatch(key, mask)
        except Exception as exc:  # a bug or an OS limit: drop that one connection only
            self._log(f"control socket: dropped a connection ({type(exc).__name__}: {exc})")
            if isinstance(key.fileobj, socket.socket) and key.data == "viewer":
                self._drop(key.fileobj, "")

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "accept":
            self._accept()
        elif key.data == "wake":
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass
        elif mask & selectors.EVENT_READ:
            self._read(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        uid = peer_uid(conn)
        if uid != self._allowed_uid:  # checked before a single byte is read
            self._log(f"control socket: refused a connection from uid {uid}")
            conn.close()
            return
        conn.setblocking(False)
        viewer = _Viewer(conn)
        with self._lock:  # from here on the viewer queues live events; nothing is lost
            history = self.journal.snapshot()
            self._viewers[conn] = viewer
        # Encoded without the lock: a long history must not hold up the training thread.
        frames = [protocol.encode(protocol.Hello(protocol.VERSION, os.getpid(),
                                                 str(self.run_dir)))]
        frames += [protocol.encode(event) for event in history]
        frames.append(protocol.encode(protocol.HistoryDone(len(history))))
        with self._lock:
            viewer.put_first(frames)
        self._selector.register(conn, selectors.EVENT_READ, "viewer")

    def _read(self, conn: socket.socket) -> None:
        viewer = self._viewers.get(conn)
        if viewer is None:
            return
        try:
            data = conn.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn, "")
            return
        try:
            messages = viewer.reader.feed(data)
        except protocol.ProtocolError as exc:
            self._drop(conn, f"control socket: closed a viewer that sent a bad message ({exc})")
            return
        for message in messages:  # (command_length let nothing else through)
            self._on_command(message)

    def _flush_all(self) -> None:
        with self._lock:
            viewers = list(self._viewers.items())
        for conn, viewer in viewers:
            try:
                done = viewer.flush()
            except OSError:
                self._drop(conn, "")
                continue
            if viewer.closing:
                self._drop(conn, f"control socket: disconnected a viewer: {viewer.closing}")
                continue
            events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(conn, events, "viewer")

    def _flush_last(self, timeout_s: float = 1.0) -> None:
        """At the end, give viewers a moment to take the last events (the ending)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._flush_all()
            with self._lock:
                pending = any(v.queue for v in self._viewers.values())
            if not pending or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def _drop(self, conn: socket.socket, why: str) -> None:
        with self._lock:
            self._viewers.pop(conn, None)
        if why:
            self._log(why)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()

    def _shutdown(self) -> None:
        with self._lock:
            conns = list(self._viewers)
            self._viewers.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        if self._listener is not None:
            self._listener.close()
        self._selector.close()
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = -1
        os.close(wake_r)
        os.close(wake_w)
