"""How a training run shares the machine: process-wide settings (the CLI's runners call
`freeze_startup_objects`, tests do not), numpy's BLAS threads, and torch's threads
shared fairly among the runs on one machine."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def freeze_startup_objects() -> None:
    """Hide everything alive after start-up (torch, the models, the data, the dashboard)
    from the garbage collector.

    Each full collection otherwise walks all of it: 0.15-0.2 s with the GIL held, a few
    times a minute, which stalls training and freezes the dashboard mid key press
    (the responsiveness benchmark's worst presses). Objects made later are collected as
    usual; call once per process, after the trainer is built.
    """
    gc.collect()
    gc.freeze()


@functools.cache
def _blas_pools():  # noqa: ANN202 (threadpoolctl's controller)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def one_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` (small numpy linear algebra) with numpy's BLAS on one thread.

    OpenBLAS's worker threads busy-wait for ~0.1 s after every call, on the cores the
    training needs: after each epoch's scores that took ~2% of a core from torch on a
    2-core machine. This maths (N x 64 features, 64 x 64 results) is as fast on one
    thread. The limit holds only during the call, which runs no torch matrix maths, so
    torch's threads are never held back.
    """

    @functools.wraps(func)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with _blas_pools().limit(limits=1):
            return func(*args, **kwargs)

    return limited


# ------------------------------------------------------- sharing the cores


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Presence:
    """Marks this process as a training run on this machine, for as long as it lives.

    A file per run in the per-user runtime folder, flock'ed while the run trains: the
    kernel drops the lock when the process dies however it dies, so `count()` (files
    whose lock is held) never counts a dead run.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "active"
        self._fd: int | None = None
        self._path: Path | None = None

    def enter(self) -> None:
        """Lock a file under a hidden name, then rename it into view: a file that count()
        can see is locked from the start (else another run's count() could find it
        unlocked in between, take it for a dead run's and delete it)."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        hidden = self.folder / f".{os.getpid()}"
        self._fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._path = self.folder / f"{os.getpid()}"
        os.replace(hidden, self._path)

    def leave(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                assert self._path is not None
                self._path.unlink()
            os.close(self._fd)
            self._fd = None

    def count(self) -> int:
        """Live training runs of this user on this machine (this one included)."""
        from gan_tui.serve.registry import flock_held

        live = 0
        for path in self.folder.iterdir() if self.folder.is_dir() else ():
            if path.name.startswith("."):  # a run still entering (enter())
                continue
            if path == self._path:
                live += 1
                continue
            if flock_held(path):
                live += 1
            else:  # its process died: tidy up
                with contextlib.suppress(OSError):
                    path.unlink()
        return max(live, 1)


def fair_share(cores: int, runs: int, ranks_here: int = 1) -> int:
    """Threads per process when `runs` runs (each with `ranks_here` processes) share
    `cores`: at least one. OpenMP threads spin while they wait for each other, so an
    oversubscribed machine wastes about half its time (measured: two 2-thread runs on
    2 cores each got 31% of their speed alone; with one thread each, 67%)."""
    return max(1, cores // max(1, runs * ranks_here))


class ThreadShare:
    """Keeps torch's thread count at this run's fair share, checked between steps.

    `requested` is a number (fixed) or "auto". `poll()` is cheap (a clock read); every
    CHECK_EVERY_S it counts the live runs and returns the new count when it changed,
    else None.
    """

    CHECK_EVERY_S = 2.0

    def __init__(self, requested: int | str, presence: Presence | None,
                 ranks_here: int = 1, cores: int | None = None) -> None:
        self.requested = requested
        self.presence = presence
        self.ranks_here = ranks_here
        self.cores = cores or available_cores()
        self.current = 0
        self._next_check = 0.0

    @property
    def auto(self) -> bool:
        return self.requested == "auto"

    def choose(self) -> int:
        if not self.auto:
            return int(self.requested)
        runs = self.presence.count() if self.presence is not None else 1
        share = fair_share(self.cores, runs, self.ranks_here)
        # OMP_NUM_THREADS, where the user (or a test harness) set it, is a ceiling.
        ceiling = os.environ.get("OMP_NUM_THREADS", "")
        return min(share, int(ceiling)) if ceiling.isdigit() and int(ceiling) > 0 else share

    def poll(self, now: float) -> int | None:
        """Apply a changed share; the new thread count, or None if nothing changed."""
        if now < self._next_check:
            return None
        self._next_check = now + self.CHECK_EVERY_S
        threads = self.choose()
        if threads == self.current:
            return None
        import torch

        torch.set_num_threads(threads)
        self.current = threads
        return threads

    def describe(self) -> str:
        threads = _count(self.current, "thread")
        if not self.auto:
            return f"{threads} (--threads {self.requested})"
        runs = self.presence.count() if self.presence is not None else 1
        return f"{threads} (auto: {self.cores} cores shared by {_count(runs, 'run')})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
