"""Where a run's process can be found, and whether it still lives.

Each run folder holds `status.json` (state, progress, pid and control socket, written
atomically by the serving process) and `.lock` (flock'ed by the one process training
into the folder; the kernel drops it when that process dies, however it dies). So a
run whose status says running but whose lock is free has crashed. Control sockets
live in a short per-user folder (a Unix socket path must fit in ~108 bytes), mode
0700, and status.json records which one is the run's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from gan_tui.errors import ConfigError

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
LIVE_STATES = ("starting", "running", "paused")


# ---------------------------------------------------------------- sockets


def runtime_dir() -> Path:
    """The per-user folder for control sockets: $XDG_RUNTIME_DIR/gan-tui, else
    /tmp/gan-tui-UID; made 0700 and refused if anyone else owns it or may enter."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = (Path(base) / "gan-tui" if base and Path(base).is_dir()
              else Path(tempfile.gettempdir()) / f"gan-tui-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=False)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(f"{folder} is not a folder of yours: refusing to put control "
                          "sockets there")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def socket_path_for(run_dir: Path) -> Path:
    """Short and unique per run folder and process."""
    digest = hashlib.sha256(str(run_dir.absolute()).encode()).hexdigest()[:12]
    return runtime_dir() / f"{digest}-{os.getpid()}.sock"


# ------------------------------------------------------------------- lock


class RunLock:
    """The one-writer lock of a run folder (flock on `.lock`, the holder's pid inside).

    A lock left by a dead process is free again (the kernel released it), so taking
    it over needs nothing special. The lock is a file object: dropped with its owner
    even if `release` is never called.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._file: Any = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the process that holds it."""
        handle = open(self.path, "a+")  # noqa: SIM115 (held for the whole run)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = lock_holder(self.path.parent)
            who = f"process {holder}" if holder else "another process"
            raise ConfigError(f"{self.path.parent} is in use by {who} (another gan-tui run "
                              "trains into it); choose another --run-dir, or stop that run "
                              "first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """True while a live process holds the run folder's lock."""
    return flock_held(run_dir / LOCK_FILE)


def flock_held(path: Path) -> bool:
    """True while some process holds an exclusive flock on `path` (False if it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def lock_holder(run_dir: Path) -> int | None:
    """The pid written into a held lock, or None."""
    try:
        text = (run_dir / LOCK_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


# ----------------------------------------------------------------- status


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """Atomically replace status.json (a reader never sees half of it)."""
    path = run_dir / STATUS_FILE
    temp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
    os.replace(temp, path)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as written, or {} when it is missing or unreadable."""
    try:
        data = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def live_state(run_dir: Path, status: dict[str, Any] | None = None) -> str:
    """The state to show: status.json's, except that a live state whose process no
    longer holds the lock is "crashed" (it died without saying so)."""
    status = read_status(run_dir) if status is None else status
    state = str(status.get("state") or "")
    locked = is_locked(run_dir)
    if state == "starting" and not locked:  # spawned, not yet at its lock: is it alive?
        return "starting" if _pid_alive(status.get("pid")) else "crashed"
    if state in LIVE_STATES:
        return state if locked else "crashed"
    if not state:
        return "running" if locked else "stopped"
    return state


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False


def is_alive(run_dir: Path, status: dict[str, Any] | None = None) -> bool:
    """A process has the run: it holds the lock (whatever its state: a diverged run the
    dashboard paused is alive too), or it was just spawned and is still loading."""
    status = read_status(run_dir) if status is None else status
    return is_locked(run_dir) or (status.get("state") == "starting"
                                  and _pid_alive(status.get("pid")))


def is_running(run_dir: Path) -> bool:
    return is_alive(run_dir)
