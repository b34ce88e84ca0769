"""`gan-tui runs` lists the runs in a folder; `gan-tui stop RUN` saves and stops one.

A run is any folder under the runs root with a config.json (or, while it starts, a
status.json). What is shown comes from
its status.json (written by the training process) and, for runs made before there
was one, from metrics.jsonl; the state "running" is only believed while a process
holds the run's lock (else "crashed").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gan_tui.errors import GanTuiError
from gan_tui.paths import display_path
from gan_tui.serve import registry

DEFAULT_ROOT = "runs"
STOP_WAIT_S = 120.0  # a save takes well under a second; the epoch's end may run first


class RunNotFound(GanTuiError):
    """No such run folder."""


class NotRunningError(GanTuiError):
    """The run has no live process to talk to."""


@dataclass(frozen=True)
class RunSummary:
    path: Path
    preset: str
    state: str
    epoch: int | None
    epochs: int | None
    step: int | None
    fid: float | None
    fid_floor: float | None  # real digits' FID at the same count: what `fid` can reach
    img_per_s: float | None
    updated: float  # seconds since the epoch: for sorting and the age column


# ------------------------------------------------------------------ finding


def find_runs(root: Path) -> list[Path]:
    """Run folders under `root`, newest first."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if is_run_dir(p)]
    return sorted(runs, key=_last_touched, reverse=True)


def is_run_dir(path: Path) -> bool:
    """A run's folder: its config, or (just spawned, still loading) its status."""
    return path.is_dir() and any((path / name).is_file()
                                 for name in ("config.json", registry.STATUS_FILE))


def resolve_run(name: str, root: Path) -> Path:
    """`latest` (the newest running run, else the newest run), a path or a run's name."""
    if name == "latest":
        runs = find_runs(root)
        if not runs:
            raise RunNotFound(f"no runs under {root}/ yet (start one with gan-tui train)")
        live = [r for r in runs if registry.is_running(r)]
        return (live or runs)[0]
    for candidate in (Path(name), root / name):
        if is_run_dir(candidate):
            return candidate
    if Path(name).is_file():
        raise RunNotFound(f"{name} is a file; name a run folder (gan-tui runs lists them)")
    raise RunNotFound(f"no run {name!r} here or under {root}/ (gan-tui runs lists them)")


def summarize(run_dir: Path) -> RunSummary:
    status = registry.read_status(run_dir)
    config = _read_json(run_dir / "config.json")
    records = _tail_records(run_dir / "metrics.jsonl")
    epoch_rec = next((r for r in reversed(records) if r.get("event") == "epoch"), {})
    quality = next((r for r in reversed(records) if r.get("event") == "quality"), {})
    state = registry.live_state(run_dir, status)
    if not status and state == "stopped" and epoch_rec.get("epoch") == config.get("epochs"):
        state = "done"
    return RunSummary(
        path=run_dir, preset=str(status.get("preset") or config.get("preset", "?")),
        state=state, epoch=_int(status.get("epoch", epoch_rec.get("epoch"))),
        epochs=_int(status.get("epochs", config.get("epochs"))),
        step=_int(status.get("step", epoch_rec.get("step"))),
        fid=_float(status.get("fid", quality.get("fid"))),
        fid_floor=_float(status.get("fid_floor", quality.get("fid_floor"))),
        img_per_s=_float(status.get("img_per_s", epoch_rec.get("img_per_s"))),
        updated=_last_touched(run_dir))


def _last_touched(run_dir: Path) -> float:
    times = []
    for name in (registry.STATUS_FILE, "metrics.jsonl", "config.json"):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail_records(path: Path, max_bytes: int = 65536) -> list[dict[str, Any]]:
    """The last records of a metrics.jsonl (its end is enough for a summary)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


# ------------------------------------------------------------------ showing


def format_age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


_STATE_STYLE = {"running": "green", "paused": "yellow", "starting": "cyan", "done": "bold",
                "crashed": "bold red", "diverged": "red"}


def runs_table(summaries: list[RunSummary], now: float) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("run", "preset", "state", "epoch", "step", "FID (real)", "img/s", "age"):
        table.add_column(column, justify="left" if column in ("run", "preset", "state")
                         else "right", no_wrap=column == "run")
    for s in summaries:
        table.add_row(
            Text(s.path.name), Text(s.preset), Text(s.state, _STATE_STYLE.get(s.state, "")),
            f"{s.epoch if s.epoch is not None else '?'}/{s.epochs or '?'}",
            f"{s.step:,}" if s.step is not None else "-",
            _fid_cell(s.fid, s.fid_floor),
            f"{s.img_per_s:,.0f}" if s.img_per_s is not None else "-",
            format_age(now - s.updated))
    return table


def _fid_cell(fid: float | None, floor: float | None) -> str:
    """`31.2 (4.4)`: the FID and, in brackets, what real digits score at the same count."""
    if fid is None:
        return "-"
    return f"{fid:.1f} ({floor:.1f})" if floor else f"{fid:.1f}"


def cmd_runs(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    runs = find_runs(root)
    console = Console(highlight=False)
    if not runs:
        console.print(f"No runs under {root}/ yet; start one with: gan-tui train", markup=False)
        return 0
    console.print(runs_table([summarize(r) for r in runs], time.time()))
    return 0


# ------------------------------------------------------------------ stopping


def resume_hint(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        return f"resume it with: gan-tui train --resume {display_path(run_dir)}"
    return "it has no checkpoint to resume"


def require_running(run_dir: Path) -> dict[str, Any]:
    """The run's status if its process is alive; NotRunningError (one line) if not."""
    status = registry.read_status(run_dir)
    if not registry.is_alive(run_dir, status):
        state = registry.live_state(run_dir, status)
        raise NotRunningError(f"{display_path(run_dir)} is not running ({state}); "
                              f"{resume_hint(run_dir)}")
    return status


SOCKET_WAIT_S = 60.0  # a run just started loads torch and its data before it listens


@overload
def wait_for_socket(run_dir: Path, timeout_s: float = ..., pid: int | None = ...) -> str: ...
@overload
def wait_for_socket(run_dir: Path, timeout_s: float, pid: int | None,
                    give_up: Callable[[], bool]) -> str | None: ...
def wait_for_socket(run_dir: Path, timeout_s: float = SOCKET_WAIT_S, pid: int | None = None,
                    give_up: Callable[[], bool] = lambda: False) -> str | None:
    """The run's control socket once it listens: process `pid`'s, when given (a run just
    handed to a new process). NotRunningError if the run is not alive or opens none in
    time; None if `give_up()` turns True first."""
    deadline = time.monotonic() + timeout_s
    while not give_up():
        status = require_running(run_dir)
        socket_path = status.get("socket")
        if ((pid is None or status.get("pid") == pid) and isinstance(socket_path, str)
                and Path(socket_path).exists()):
            return socket_path
        if time.monotonic() > deadline:
            raise NotRunningError(f"{display_path(run_dir)} is {status.get('state')} but has "
                                  "no control socket to attach to (see its train.log)")
        time.sleep(0.1)
    return None


def stop_run(run_dir: Path, wait_s: float = STOP_WAIT_S) -> str:
    """Ask the run to save and stop (as SIGTERM would) and wait until its process has
    let go of the run folder. Returns how it ended, in one line."""
    from gan_tui.events import Finished, Stop
    from gan_tui.serve.client import ControlClient, NotRunning

    status = require_running(run_dir)
    deadline = time.monotonic() + wait_s
    ending = ""
    try:
        with ControlClient.connect(str(status.get("socket") or "")) as client:
            client.set_timeout(wait_s)  # a stopped (SIGSTOP) run must not hang us
            client.send(Stop("stop"))
            for message in client.messages():
                if isinstance(message, Finished):
                    ending = _ending(message)
                    break
    except NotRunning:  # no socket (still starting, or it could not make one): a signal
        pid = registry.lock_holder(run_dir) if registry.is_locked(run_dir) else None
        if pid:  # only the lock's holder: a stale pid may be another process by now
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    while registry.is_locked(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if registry.is_locked(run_dir):
        raise NotRunningError(f"{display_path(run_dir)} did not stop within {wait_s:.0f} s")
    return ending or f"Stopped {display_path(run_dir)}; {resume_hint(run_dir)}"


def _ending(finished: Any) -> str:
    where = f"; saved {display_path(Path(finished.checkpoint))}" if finished.checkpoint else ""
    return f"Stopped at epoch {finished.epoch}, step {finished.global_step:,}{where}"


def cmd_stop(args: argparse.Namespace) -> int:
    run_dir = resolve_run(args.run, Path(args.runs_root))
    print(stop_run(run_dir))
    print(f"Resume with: gan-tui train --resume {display_path(run_dir)}")
    return 0


def add_run_arguments(parser: argparse.ArgumentParser, optional: bool = True) -> None:
    """RUN (a folder, a name under --runs-root, or 'latest') and --runs-root, as attach,
    serve and stop take them; `optional`: RUN defaults to 'latest'."""
    if optional:
        parser.add_argument("run", nargs="?", default="latest", metavar="RUN",
                            help="a run folder, its name, or 'latest' (the newest running run; "
                            "the default)")
    else:
        parser.add_argument("run", metavar="RUN", help="a run folder, its name, or 'latest'")
    parser.add_argument("--runs-root", default=DEFAULT_ROOT, metavar="DIR",
                        help="where run names are looked up (default ./runs)")


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="list runs, newest first, with their state",
                               description="List the runs under DIR (default ./runs), newest "
                               "first: preset, state (starting, running, paused, stopped, "
                               "done, diverged, crashed), epoch, step, FID, speed and age.")
    runs.add_argument("dir", nargs="?", default=DEFAULT_ROOT, metavar="DIR")
    runs.set_defaults(func=cmd_runs)
    stop = commands.add_parser("stop", help="save and stop a running run",
                               description="Save a running run's checkpoint and stop it (as "
                               "SIGTERM would), waiting until it has ended.")
    add_run_arguments(stop, optional=False)
    stop.set_defaults(func=cmd_stop)
