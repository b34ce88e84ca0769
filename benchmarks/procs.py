"""Running gan-tui as a user does: in a pseudo-terminal (the TUI) or piped (headless)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import REPO

PTY_SIZE = (40, 120)  # rows, columns: every panel of the dashboard shows


def gan_tui_command() -> list[str]:
    """The installed `gan-tui` script next to this Python, else `python -m gan_tui`."""
    script = Path(sys.executable).parent / "gan-tui"
    if script.exists():
        return [str(script)]
    found = shutil.which("gan-tui")
    return [found] if found else [sys.executable, "-m", "gan_tui"]


def child_env(threads: int | None = None) -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TEXTUAL"):
        env.pop(name, None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def epoch_records(run_dir: Path) -> list[dict]:
    """The epoch records written so far to a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        if '"epoch"' in line:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if record.get("event") == "epoch":
                records.append(record)
    return records


def steady_img_per_s(records: list[dict], warmup: int = 1) -> float:
    """Images per second of the engine's own step time over the epochs after the first
    `warmup` ones (start-up effects stay out: first allocations, the first full paint)."""
    timed = records[warmup:] or records
    images = sum(r["img_per_s"] * r["seconds"] for r in timed)
    return images / max(sum(r["seconds"] for r in timed), 1e-9)


def spawn_tui(args: list[str], env: dict[str, str]):
    import pexpect

    command = gan_tui_command()
    return pexpect.spawn(command[0], command[1:] + args, dimensions=PTY_SIZE, env=env,
                         cwd=str(REPO), timeout=None)


def drain(child, seconds: float) -> bool:
    """Read (and drop) the child's output for about `seconds`, so it never blocks on a
    full terminal; False once it has exited."""
    import pexpect

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            child.read_nonblocking(1 << 16, timeout=max(end - time.monotonic(), 0.001))
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
    return True


def quit_tui(child, timeout: float = 60) -> None:
    """Press q (save and quit) and wait for the process to end; kill it if it hangs."""
    import pexpect

    try:
        if child.isalive():
            child.send("q")
            child.expect(pexpect.EOF, timeout=timeout)
    except (pexpect.TIMEOUT, OSError):
        pass
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
