"""A run outlives its terminal (issue 13): real detached processes, real sockets.

Small runs (a few hundred digits) that train long enough to be talked to; each test
stops what it started, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gan_tui import events as ev
from gan_tui.serve import protocol, registry
from gan_tui.serve.client import ControlClient
from gan_tui.tui.connection import LocalRun, SocketRun
from gan_tui.tui.state import Phase
from gan_tui.tui.view import LogLine, ViewState
from tests.conftest import run_cli

LONG = ("--limit", "256", "--epochs", "100000", "--seed", "3", "--device", "cpu",
        "--quality-samples", "0")
WAIT_S = 90.0  # generous: two cores are shared with the rest of the suite


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(run: Path) -> dict:
    return registry.read_status(run)


@pytest.fixture
def detached(tmp_path: Path) -> Iterator[Path]:
    """A detached run trained in tmp_path/runs/bg; killed at the end if still alive."""
    run = tmp_path / "runs" / "bg"
    out = run_cli("train", "--detach", "--run-dir", str(run), *LONG, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    try:
        yield run
    finally:
        pid = registry.lock_holder(run) or status(run).get("pid")
        # A test that fails at once finds the run still "starting": not at its lock yet.
        if pid and registry.is_running(run):
            os.kill(pid, signal.SIGKILL)


def connect_path(run: Path) -> str:
    return wait_for(lambda: status(run).get("socket"), "the control socket")


def connect(run: Path) -> ControlClient:
    return ControlClient.connect(connect_path(run))


def next_of(client: ControlClient, kind: type, limit: int = 100_000):
    for n, message in enumerate(client.messages()):
        if isinstance(message, kind):
            return message
        assert n < limit, f"no {kind.__name__}"
    raise AssertionError(f"connection closed before a {kind.__name__}")


def test_detach_returns_at_once_and_the_run_trains_without_a_terminal(tmp_path, detached):
    log = (detached / "train.log")
    assert log.exists()
    wait_for(lambda: status(detached).get("state") == "running", "the run to start")
    first = wait_for(lambda: status(detached).get("step"), "steps")
    wait_for(lambda: status(detached).get("step", 0) > first, "more steps")
    holder = registry.lock_holder(detached)
    # a session of its own: no controlling terminal to lose
    assert os.getsid(holder) == holder
    listing = run_cli("runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert listing.returncode == 0 and "bg" in listing.stdout and "running" in listing.stdout


def test_viewer_gets_history_and_pause_stops_the_step_counter(detached):
    wait_for(lambda: status(detached).get("step", 0) > 20, "some steps")
    with connect(detached) as client:
        hello = next_of(client, protocol.Hello)
        assert hello.run_dir == str(detached)
        started = next_of(client, ev.Started)
        assert started.preset == "seed"
        next_of(client, protocol.HistoryDone)
        client.send(ev.Pause())
        paused = next_of(client, ev.Paused)
        wait_for(lambda: status(detached).get("state") == "paused", "paused status")
        time.sleep(0.5)  # a paused run takes no steps: nothing to wait for but time
        assert status(detached)["step"] == paused.global_step
        client.send(ev.Resume())
        resumed = next_of(client, ev.Resumed)
        assert resumed.global_step == paused.global_step
        assert next_of(client, ev.StepStats).global_step > paused.global_step


def test_killed_viewer_leaves_training_untouched_and_two_viewers_share(detached):
    first = connect(detached)
    second = connect(detached)
    next_of(first, protocol.HistoryDone)
    next_of(second, protocol.HistoryDone)
    first._sock.close()  # as a kill -9 leaves it: no goodbye
    step = next_of(second, ev.StepStats).global_step
    assert next_of(second, ev.StepStats).global_step > step
    second.close()


def test_stop_saves_and_waits_and_then_the_run_is_stopped(tmp_path, detached):
    wait_for(lambda: status(detached).get("state") == "running", "the run to start")
    out = run_cli("stop", str(detached), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Stopped at epoch" in out.stdout and "last.pt" in out.stdout
    assert not registry.is_locked(detached)
    assert registry.live_state(detached) == "stopped"
    assert (detached / "checkpoints" / "last.pt").is_file()
    again = run_cli("stop", str(detached), cwd=tmp_path)
    assert again.returncode == 1
    assert "is not running (stopped)" in again.stderr and "--resume" in again.stderr


def test_a_killed_run_is_crashed_not_running(tmp_path, detached):
    wait_for(lambda: status(detached).get("state") == "running", "the run to start")
    os.kill(registry.lock_holder(detached), signal.SIGKILL)
    wait_for(lambda: not registry.is_locked(detached), "the process to die")
    listing = run_cli("runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert "crashed" in listing.stdout and "running" not in listing.stdout
    out = run_cli("attach", str(detached), cwd=tmp_path)
    assert out.returncode == 1 and "is not running (crashed)" in out.stderr


def test_two_runs_never_share_a_folder(tmp_path, detached):
    wait_for(lambda: registry.is_locked(detached), "the lock")
    out = run_cli("train", "--headless", "--run-dir", str(detached), *LONG, cwd=tmp_path)
    assert out.returncode == 1
    assert f"in use by process {registry.lock_holder(detached)}" in out.stderr
    resumed = run_cli("train", "--headless", "--resume", str(detached), cwd=tmp_path)
    assert resumed.returncode == 1 and "in use by process" in resumed.stderr


def test_a_fresh_run_refuses_a_folder_with_a_checkpoint(tmp_path):
    run = tmp_path / "done"
    first = run_cli("train", "--headless", "--run-dir", str(run), "--limit", "256",
                    "--epochs", "1", "--quality-samples", "0", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = json.loads((run / "config.json").read_text())
    again = run_cli("train", "--headless", "--run-dir", str(run), "--limit", "256",
                    "--epochs", "1", "--quality-samples", "0", cwd=tmp_path)
    assert again.returncode == 1 and "--resume" in again.stderr
    assert json.loads((run / "config.json").read_text()) == config  # nothing overwritten


# ---------------------------------------------------------- the attached dashboard

pexpect = pytest.importorskip("pexpect")
GAN_TUI = Path(sys.executable).with_name("gan-tui")


def attach(tmp_path: Path, run: Path) -> pexpect.spawn:
    env = {**os.environ, "TERM": "xterm-256color"}
    for name in ("NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    return pexpect.spawn(str(GAN_TUI), ["attach", str(run)], cwd=str(tmp_path), env=env,
                         dimensions=(30, 100), encoding="utf-8", codec_errors="replace",
                         timeout=WAIT_S)


def test_attach_shows_history_then_live_and_p_pauses_the_run(tmp_path, detached):
    wait_for(lambda: status(detached).get("epoch", 0) >= 2, "two epochs of history")
    viewer = attach(tmp_path, detached)
    try:
        # One frame is drawn top to bottom: the header (name, badge), then the log.
        viewer.expect("bg")  # the header names the run
        viewer.expect("TRAINING")
        viewer.expect(r"Epoch: \[\d+/100000\]")  # the history's log lines
        viewer.send("p")
        viewer.expect("PAUSED")
        wait_for(lambda: status(detached).get("state") == "paused", "the run to pause")
        viewer.send("p")
        wait_for(lambda: status(detached).get("state") == "running", "the run to resume")
        viewer.send("d")
        viewer.expect("Detached; the run trains on")
        viewer.expect(pexpect.EOF)
    finally:
        viewer.close(force=True)
    assert viewer.exitstatus == 0
    step = status(detached)["step"]
    wait_for(lambda: status(detached).get("step", 0) > step, "training to go on")


def test_killed_viewer_and_a_second_viewer(tmp_path, detached):
    first = attach(tmp_path, detached)
    second = attach(tmp_path, detached)
    try:
        first.expect("TRAINING")
        second.expect("TRAINING")
        os.kill(first.pid, signal.SIGKILL)
        step = wait_for(lambda: status(detached).get("step"), "steps")
        wait_for(lambda: status(detached).get("step", 0) > step, "training to go on")
        second.send("q")  # an attached viewer's q detaches too
        second.expect("Detached; the run trains on")
        second.expect(pexpect.EOF)
    finally:
        first.close(force=True)
        second.close(force=True)
    assert registry.live_state(detached) == "running"


def test_x_stops_the_run_after_asking(tmp_path, detached):
    viewer = attach(tmp_path, detached)
    try:
        viewer.expect("TRAINING")
        viewer.send("x")
        viewer.expect("Keep training")
        viewer.send("n")  # changed my mind: nothing happens
        time.sleep(0.3)
        assert registry.live_state(detached) == "running"
        viewer.send("x")
        viewer.expect("Keep training")
        viewer.send("y")
        viewer.expect(r"Resume with: gan-tui train --resume \S+last\.pt")
        viewer.expect(pexpect.EOF)
    finally:
        viewer.close(force=True)
    wait_for(lambda: registry.live_state(detached) == "stopped", "the run to stop")


def test_detach_that_cannot_start_says_why_and_keeps_a_finished_run(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda would start")
    failed = run_cli("train", "--detach", "--run-dir", str(tmp_path / "gpu"), "--device", "cuda",
                     "--limit", "256", cwd=tmp_path)
    assert failed.returncode == 1
    assert "the background run ended at once" in failed.stderr and "CUDA" in failed.stderr
    done = tmp_path / "done"
    assert run_cli("train", "--headless", "--run-dir", str(done), "--limit", "256", "--epochs",
                   "1", "--quality-samples", "0", cwd=tmp_path).returncode == 0
    before = (done / "status.json").read_text()
    again = run_cli("train", "--detach", "--run-dir", str(done), "--limit", "256", cwd=tmp_path)
    assert again.returncode == 1 and "--resume" in again.stderr
    assert (done / "status.json").read_text() == before  # still "done", not "crashed"


def test_a_viewer_of_the_dashboards_run_learns_where_the_run_went(small_config):
    """The dashboard hands its run to a background process (its d key, or a dropped
    terminal): a viewer attached to the dashboard's run is told where the run went, not
    only that it stopped, and the status file is the new process's from then on."""
    config = small_config(limit=256, epochs=6, quality_samples=0)
    run = Path(config.run_dir)
    local = LocalRun(config)

    async def hand_over_while_watched() -> list:
        local.start(lambda: None)
        client = await asyncio.to_thread(connect, run)
        await asyncio.to_thread(next_of, client, ev.StepStats)
        local.send(ev.Pause())
        await asyncio.to_thread(next_of, client, ev.Paused)
        local.detach()
        return await asyncio.to_thread(lambda: list(client.messages()))

    seen = asyncio.run(hand_over_while_watched())  # returns once the dashboard's thread has
    try:
        kinds = [type(message) for message in seen]
        assert ev.Finished in kinds and kinds[-1] is ev.HandedOver, kinds
        handed = seen[-1]
        assert Path(handed.run_dir) == run and handed.global_step > 0
        wait_for(lambda: registry.live_state(run) == "done", "the background run to finish")
        assert status(run)["pid"] == handed.pid  # not written over by the dashboard
    finally:
        if registry.is_running(run):
            os.kill(registry.lock_holder(run) or status(run)["pid"], signal.SIGKILL)


def test_an_attached_viewer_follows_the_run_to_its_background_process(small_config):
    """A viewer attached to the dashboard's run stays on it across a hand-over: it
    connects to the new process, whose steps carry on the same loss curve (nothing
    plotted twice), and its keys reach the new process."""
    config = small_config(limit=256, epochs=100_000, quality_samples=0)
    run = Path(config.run_dir)
    local = LocalRun(config)
    view = ViewState.for_config(config)
    view.attached = True
    seen: list = []
    lines: list[str] = []  # the viewer's log

    def watch_until(viewer: SocketRun, done, what: str) -> None:
        def poll() -> bool:
            batch = viewer.drain()
            seen.extend(batch)
            lines.extend(e.text for e in view.apply(batch) if isinstance(e, LogLine))
            return done()
        wait_for(poll, what)

    def shown_step() -> int:
        return view.progress.global_step if view.progress else 0

    async def follow_a_hand_over(viewer: SocketRun) -> ev.HandedOver:
        await asyncio.to_thread(watch_until, viewer, lambda: len(view.history) > 0,
                                "the dashboard's steps")
        local.detach()
        await asyncio.to_thread(
            watch_until, viewer,
            lambda: view.started is not None and view.started.resumed_from is not None,
            "the new process's Started")
        handed = next(e for e in seen if isinstance(e, ev.HandedOver))
        assert view.phase is Phase.TRAINING and view.finished is None
        await asyncio.to_thread(watch_until, viewer, lambda: shown_step() > handed.global_step,
                                "steps from the new process")
        assert viewer.send(ev.Pause())
        await asyncio.to_thread(watch_until, viewer, lambda: view.paused, "Paused")
        assert viewer.stop_run()
        await asyncio.to_thread(watch_until, viewer, lambda: view.finished is not None,
                                "the run's Finished")
        return handed

    async def scenario() -> ev.HandedOver:
        local.start(lambda: None)
        viewer = None
        try:
            socket_path = await asyncio.to_thread(connect_path, run)
            viewer = SocketRun(socket_path, run)
            viewer.start(lambda: None)
            return await follow_a_hand_over(viewer)
        finally:  # a failure must not leave the dashboard's run training
            if viewer is not None:
                viewer.close()
            local.close()

    try:
        handed = asyncio.run(scenario())
        steps = view.history.steps
        assert steps == sorted(set(steps)), "a step plotted twice or out of order"
        assert f"Following the run to its background process (pid {handed.pid})" in lines
        assert view.finished.reason == "stopped" and view.phase is Phase.STOPPED
        wait_for(lambda: registry.live_state(run) == "stopped", "the run to stop")
        assert status(run)["pid"] == handed.pid
    finally:
        if registry.is_running(run):
            os.kill(registry.lock_holder(run) or status(run)["pid"], signal.SIGKILL)
