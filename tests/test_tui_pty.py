"""The real `gan-tui` console script in a pseudo-terminal, driven like a user would.

pexpect reads the raw terminal stream; Textual writes each styled run of text in
one piece, so the header badge ("TRAINING", "PAUSED") shows up verbatim in it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

pexpect = pytest.importorskip("pexpect")

GAN_TUI = Path(sys.executable).with_name("gan-tui")
TIMEOUT_S = 90  # a loaded machine is slow to import torch; never wrong

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not GAN_TUI.exists(), reason="the gan-tui console script is not installed"),
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "COLUMNS", "LINES"):  # COLUMNS/LINES would override the pty size
        env.pop(name, None)
    return pexpect.spawn(str(GAN_TUI), [*args, "--run-dir", str(tmp_path / "run")],
                         cwd=str(tmp_path), env=env, dimensions=(30, 100),
                         encoding="utf-8", codec_errors="replace", timeout=TIMEOUT_S)


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def test_console_script_pause_quit_and_resume_hint(tmp_path: Path) -> None:
    child = spawn(tmp_path, "--limit", "256", "--epochs", "50")
    try:
        child.expect("TRAINING")
        child.expect(r"[1-9][\d,]* img/s")  # live numbers: training has taken steps
        child.send("p")
        child.expect("PAUSED")
        child.send("q")
        child.expect(r"Resume with: gan-tui train --resume (\S+last\.pt)")
        resume_path = tmp_path / child.match.group(1)
        code = finish(child)
    finally:
        child.close(force=True)
    assert code == 0
    assert resume_path == tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(resume_path, map_location="cpu", weights_only=True)
    assert state["global_step"] > 0


def test_hangup_saves_last_pt_and_ends_the_process(tmp_path: Path) -> None:
    """The terminal goes away (SSH dropped, tmux killed): save last.pt, then really exit.

    Closing the pty's master is what a dropped connection does: the kernel sends SIGHUP
    and every later write to the terminal fails, which must not leave a spinning or
    hanging process behind.
    """
    child = spawn(tmp_path, "--limit", "2048", "--epochs", "50")
    proc = child.ptyproc
    try:
        child.expect("TRAINING")
        child.send("p")
        child.expect("PAUSED")
        paused_at = time.time()  # while paused only the hangup can write last.pt
        time.sleep(0.05)  # distinct file timestamps on coarse filesystems
        proc.fileobj.close()  # hang up
        deadline = time.monotonic() + TIMEOUT_S
        while proc.isalive():
            assert time.monotonic() < deadline, "gan-tui still runs after its terminal went away"
            time.sleep(0.05)
        code = proc.exitstatus if proc.exitstatus is not None else 128 + proc.signalstatus
    finally:
        if proc.isalive():
            os.kill(proc.pid, signal.SIGKILL)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert last.exists() and last.stat().st_mtime >= paused_at
    assert code == 128 + signal.SIGHUP
    torch.load(last, map_location="cpu", weights_only=True)


def test_sigterm_saves_and_exits_cleanly(tmp_path: Path) -> None:
    child = spawn(tmp_path, "--limit", "256", "--epochs", "50")
    try:
        child.expect("TRAINING")
        child.expect("img/s")
        os.kill(child.pid, signal.SIGTERM)
        child.expect(r"Resume with: gan-tui train --resume \S+last\.pt")
        code = finish(child)
    finally:
        child.close(force=True)
    assert code == 128 + signal.SIGTERM
