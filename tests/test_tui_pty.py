"""The real `gan-tui` console script in a pseudo-terminal, driven like a user would.

pexpect reads the raw terminal stream; Textual writes each styled run of text in
one piece, so the header badge ("TRAINING", "PAUSED") shows up verbatim in it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_tui.serve import registry

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


def hang_up_while_paused(child: pexpect.spawn) -> tuple[int, float]:
    """Pause, then close the pty's master as a dropped connection does: the kernel sends
    SIGHUP and every later write to the terminal fails, which must not leave a spinning
    or hanging process behind. Returns the exit code and when the pause was seen."""
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
        return (proc.exitstatus if proc.exitstatus is not None
                else 128 + proc.signalstatus), paused_at
    finally:
        if proc.isalive():
            os.kill(proc.pid, signal.SIGKILL)


def test_hangup_with_on_hangup_stop_saves_last_pt_and_ends_the_process(tmp_path: Path) -> None:
    """Round 1's behaviour, kept behind --on-hangup stop: save, then really exit."""
    child = spawn(tmp_path, "--limit", "2048", "--epochs", "50", "--on-hangup", "stop")
    code, paused_at = hang_up_while_paused(child)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert last.exists() and last.stat().st_mtime >= paused_at
    assert code == 128 + signal.SIGHUP
    torch.load(last, map_location="cpu", weights_only=True)
    assert not (tmp_path / "run" / "train.log").exists()  # nothing carried on


def test_hangup_hands_the_run_to_a_background_process_that_ends_as_a_straight_run(
        tmp_path: Path) -> None:
    """The default: the dashboard saves at the exact step and a detached process resumes
    from it; on CPU with a fixed seed its final weights equal a straight run's."""
    args = ("--limit", "256", "--epochs", "12", "--seed", "5", "--quality-samples", "0",
            "--device", "cpu")
    child = spawn(tmp_path, *args)
    code, _ = hang_up_while_paused(child)
    assert code == 128 + signal.SIGHUP
    run = tmp_path / "run"
    log = run / "train.log"
    assert log.exists()
    deadline = time.monotonic() + TIMEOUT_S
    while registry.live_state(run) != "done":
        assert time.monotonic() < deadline, f"the background run did not finish: {log.read_text()}"
        assert registry.live_state(run) not in ("crashed", "stopped"), log.read_text()
        time.sleep(0.1)
    assert "Resuming" in log.read_text()
    straight = tmp_path / "straight"
    subprocess.run([str(GAN_TUI), "train", "--headless", *args, "--run-dir", str(straight)],
                   check=True, capture_output=True, timeout=TIMEOUT_S)
    ours = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    theirs = torch.load(straight / "checkpoints" / "last.pt", map_location="cpu",
                        weights_only=True)
    assert ours["global_step"] == theirs["global_step"] == 12 * 4
    for net in ("generator", "discriminator"):
        for name, tensor in theirs[net].items():
            assert torch.equal(ours[net][name], tensor), f"{net}.{name} differs"


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
