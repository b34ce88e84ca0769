"""Training in a process of its own: `gan-tui train --detach`, and the dashboard's
hand-over when its terminal goes away.

The background process is a plain headless run (`gan-tui train --headless ...`) in a
new session (no controlling terminal, so a dropped SSH link sends it nothing), stdin
closed, stdout and stderr appended to the run folder's train.log. It serves the run's
control socket like every run, so `gan-tui attach` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from gan_tui.config import TrainConfig
from gan_tui.errors import ConfigError
from gan_tui.paths import display_path
from gan_tui.serve import registry
from gan_tui.serve.hosting import LOG_FILE

START_WAIT_S = 60.0  # torch and the data load before the run takes its folder's lock


def spawn_training(run_dir: Path, argv: list[str], resuming: bool) -> int:
    """Start `gan-tui train --headless ARGV` detached, writing into `run_dir`; its pid."""
    return spawn(run_dir, [sys.executable, "-m", "gan_tui", "train", "--headless", *argv],
                 resuming=resuming)


def spawn(run_dir: Path, command: list[str], env: dict[str, str] | None = None,
          resuming: bool = False) -> int:
    """Start `command` (a training process, or torchrun's launcher of several) detached:
    a new session, stdin closed, output appended to `run_dir`'s train.log; its pid once
    the run holds the folder's lock. A run that ends before that is a ConfigError with
    the end of its train.log (e.g. bad data), never a silent success."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if registry.is_alive(run_dir):
        holder = registry.lock_holder(run_dir)
        raise ConfigError(f"{run_dir} is in use by process {holder or '?'} (a run trains "
                          "into it); choose another --run-dir, or stop that run first")
    if not resuming and (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run (checkpoints/last.pt); continue it "
                          f"with --resume {run_dir}, or choose another --run-dir")
    log_path = run_dir / LOG_FILE
    start = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env)
    # Until the run takes its lock and says it started, this is how it is found.
    with contextlib.suppress(OSError):
        registry.write_status(run_dir, {"state": "starting", "pid": process.pid})
    _wait_until_started(process, run_dir, log_path, start)
    return process.pid


def _wait_until_started(process: subprocess.Popen, run_dir: Path, log: Path,
                        start: int) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while not registry.is_locked(run_dir) and time.monotonic() < deadline:
        if process.poll() is not None:
            with contextlib.suppress(OSError):
                registry.write_status(run_dir, {"state": "stopped"})
            raise ConfigError(f"the background run ended at once: {_last_line(log, start)}")
        time.sleep(0.05)


def _last_line(log: Path, start: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(start)
            lines = [line for line in f.read().decode(errors="replace").splitlines()
                     if line.strip()]
    except OSError:
        lines = []
    return lines[-1].removeprefix("gan-tui: error: ") if lines else f"see {log}"


def child_argv(args: argparse.Namespace, run_dir: Path, resume: str | None) -> list[str]:
    """The user's training flags for the background run, with its folder fixed."""
    from gan_tui.cli import CONFIG_FLAGS

    argv = ["--run-dir", str(run_dir)]
    for name in CONFIG_FLAGS:
        value = getattr(args, name, None)
        if value is not None and name != "run_dir":
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if resume:
        argv += ["--resume", resume]
    if getattr(args, "force", False):
        argv.append("--force")
    if getattr(args, "sync_bn", False):
        argv.append("--sync-bn")
    return argv


def detach(args: argparse.Namespace, config: TrainConfig, resume: str | None) -> int:
    """`train --detach`: start the run in the background, say where it is, return 0."""
    from gan_tui.train.rundir import choose_run_dir

    run_dir = choose_run_dir(config)
    pid = spawn_training(run_dir, child_argv(args, run_dir, resume), resuming=bool(resume))
    print(f"Training in the background (pid {pid}): {display_path(run_dir)}")
    print_handles(run_dir)
    return 0


def print_handles(run_dir: Path) -> None:
    """How to watch, read and stop a background run."""
    shown = display_path(run_dir)
    print(f"  watch it:  gan-tui attach {shown}")
    print(f"  its log:   {display_path(run_dir / LOG_FILE)}")
    print(f"  stop it:   gan-tui stop {shown}")


def hand_over(run_dir: Path, checkpoint: Path) -> int:
    """Continue a run the dashboard just saved and stopped, in the background; its pid."""
    return spawn_training(run_dir, ["--run-dir", str(run_dir), "--resume", str(checkpoint)],
                          resuming=True)
