"""Runs as processes of their own: several runs sharing a machine, viewers attached to a
run, and how quickly an attached dashboard answers and opens.

Every run here is a real `gan-tui train --detach` process and every viewer a real
`gan-tui attach` in a pseudo-terminal (except the key-press row, which drives an
attached dashboard under Pilot in this process, as the in-process row does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import BATCH, Row, interval_text, median, percentile
from benchmarks.procs import (
    child_env,
    drain,
    epoch_records,
    gan_tui_command,
    spawn_tui,
    steady_img_per_s,
)

WINDOW_S = 12.0  # one measuring window: a few epochs of 16,000 images at ~4,000 img/s
LIMIT = 4096  # images per epoch: short epochs, so a window holds several records


def _detach(run_dir: Path, device: str, *extra: str) -> None:
    subprocess.run([*gan_tui_command(), "train", "--detach", "--run-dir", str(run_dir),
                    "--limit", str(LIMIT), "--epochs", "100000", "--seed", "0",
                    "--device", device, "--quality-samples", "0", *extra],
                   check=True, capture_output=True, env=child_env(), cwd=run_dir.parent)


def _stop(run_dir: Path) -> None:
    from gan_tui.serve import registry

    subprocess.run([*gan_tui_command(), "stop", str(run_dir)], capture_output=True,
                   env=child_env(), timeout=120)
    pid = registry.lock_holder(run_dir)
    if pid and registry.is_locked(run_dir):  # it would not stop: do not leave it running
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _wait_epochs(run_dir: Path, count: int, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while len(epoch_records(run_dir)) < count:
        if time.monotonic() > end:
            raise TimeoutError(f"{run_dir.name} did not reach {count} epochs")
        time.sleep(0.2)


def _window(run_dirs: list[Path], seconds: float) -> list[float]:
    """Each run's img/s over the epochs it finished within the next `seconds` (the
    engine's own step time, so epoch ends and start-up stay out)."""
    before = [len(epoch_records(r)) for r in run_dirs]
    time.sleep(seconds)
    speeds = []
    for run, skip in zip(run_dirs, before, strict=True):
        records = epoch_records(run)[skip + 1:]  # the first straddles the window's start
        speeds.append(steady_img_per_s(records, warmup=0) if records else float("nan"))
    return speeds


@contextlib.contextmanager
def _runs(device: str, names: list[str], *extra: str) -> Iterator[list[Path]]:
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        dirs = [Path(tmp) / name for name in names]
        try:
            for run in dirs:
                _detach(run, device, *extra)
            yield dirs
        finally:
            for run in dirs:
                _stop(run)


# ------------------------------------------------------------ concurrent runs


def bench_concurrent_runs(device: str, pairs: int, log: Callable[[str], None],
                          threads: str = "auto") -> Row:
    """Two runs at once, each against the first run alone, in alternating windows (the
    second run is started for each shared window and stopped after it)."""
    log(f"concurrent runs: {pairs} x (alone, together), --threads {threads}")
    alone: list[float] = []
    shares: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        _detach(first, device, "--threads", threads)
        try:
            _wait_epochs(first, 2)
            for i in range(pairs):
                (solo,) = _window([first], WINDOW_S)
                shutil.rmtree(second, ignore_errors=True)
                _detach(second, device, "--threads", threads)
                _wait_epochs(second, 2)
                time.sleep(2.5)  # the first run's thread check comes every 2 s
                a, b = _window([first, second], WINDOW_S)
                _stop(second)
                alone.append(solo)
                shares += [a / solo, b / solo]
                log(f"  pair {i + 1}/{pairs}: alone {solo:,.0f} img/s; together "
                    f"{a:,.0f} + {b:,.0f} ({a / solo:.0%}, {b / solo:.0%})")
        finally:
            _stop(first)
    worst = min(shares)
    return Row(
        name=f"two runs at once, each vs alone (--threads {threads})",
        baseline_label="one run alone", baseline=median(alone),
        ours=median(shares) * median(alone), unit="img/s", ratio=median(shares),
        target=">= 0.45x each", passed=median(shares) >= 0.45,
        note=f"{pairs} alternating windows of {WINDOW_S:.0f} s, seed preset, {LIMIT} images; "
             f"per-run shares {', '.join(f'{s:.2f}' for s in shares)} (worst {worst:.2f})"
             f"{interval_text(shares)}",
        samples={"alone": alone, "share": shares})


# ------------------------------------------------------------ viewers' cost


def bench_viewers(device: str, pairs: int, log: Callable[[str], None]) -> Row:
    """Training speed with two attached viewers vs none, alternating windows."""
    log(f"viewers: {pairs} x (none, two attached)")
    bare: list[float] = []
    watched: list[float] = []
    with _runs(device, ["run"]) as (run,):
        _wait_epochs(run, 2)
        for i in range(pairs):
            (none,) = _window([run], WINDOW_S)
            viewers = [spawn_tui(["attach", str(run)], child_env()) for _ in range(2)]
            try:
                for viewer in viewers:
                    drain(viewer, 3.0)  # start-up and the history's first frame
                speeds = _window_draining([run], viewers, WINDOW_S)
            finally:
                for viewer in viewers:
                    viewer.terminate(force=True)
                    viewer.close()
            bare.append(none)
            watched.append(speeds[0])
            log(f"  pair {i + 1}/{pairs}: {none:,.0f} img/s alone, {speeds[0]:,.0f} watched")
    ratios = [w / b for w, b in zip(watched, bare, strict=True)]
    return Row(
        name="training with two viewers attached vs none", baseline_label="no viewer",
        baseline=median(bare), ours=median(watched), unit="img/s", ratio=median(ratios),
        target=">= 0.95x", passed=median(ratios) >= 0.95,
        note=f"two `gan-tui attach` dashboards (120 x 40 ptys) on the same 2 cores; "
             f"{pairs} alternating windows of {WINDOW_S:.0f} s; per-pair ratios "
             f"{', '.join(f'{r:.2f}' for r in ratios)}{interval_text(ratios)}",
        samples={"none": bare, "two viewers": watched, "ratio": ratios})


def _window_draining(run_dirs: list[Path], viewers: list, seconds: float) -> list[float]:
    """As _window, while reading the viewers' terminals (a real terminal would)."""
    before = [len(epoch_records(r)) for r in run_dirs]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for viewer in viewers:
            drain(viewer, 0.05)
    return [steady_img_per_s(epoch_records(r)[skip + 1:], warmup=0)
            for r, skip in zip(run_dirs, before, strict=True)]


# ------------------------------------------------------ attach with a long history


def _history(steps: int, steps_per_epoch: int, stats_per_s: float, img_per_s: float):
    """The events a seed run emits over `steps` steps: StepStats every 1/stats_per_s s,
    and at each epoch's end EpochEnd, Samples, Quality and a save."""
    from gan_tui import events as ev

    epochs = steps // steps_per_epoch
    yield ev.Started(run_dir="", run_name="history", preset="seed", device="cpu",
                     dataset="bundled MNIST test split", num_images=steps_per_epoch * BATCH,
                     steps_per_epoch=steps_per_epoch, epochs=epochs, start_epoch=0,
                     global_step=0, resumed_from=None, config={}, history=())
    steps_per_stat = max(1, round(img_per_s / BATCH / stats_per_s))
    rng = np.random.default_rng(0)
    for step in range(steps_per_stat, steps + 1, steps_per_stat):
        epoch, batch = divmod(step - 1, steps_per_epoch)
        yield ev.StepStats(epoch, epochs, batch + 1, steps_per_epoch, step, 1.0 + rng.random(),
                           1.2, 0.6, 0.4, img_per_s, step * BATCH / img_per_s)
        if step // steps_per_epoch != (step - steps_per_stat) // steps_per_epoch:
            done = step // steps_per_epoch
            yield ev.EpochEnd(done - 1, epochs, step, 1.1, 1.2, 0.6, 0.4, img_per_s, 2.0)
            yield ev.Samples(done - 1, step, rng.uniform(-1, 1, (16, 28, 28)).astype(
                np.float32), fixed=True)
            yield ev.Quality(done - 1, step, 50.0, 5.0, 0.9, 0.8, (100,) * 10, 1000, 0.1)
            yield ev.CheckpointSaved("last.pt", done, step, "epoch")


def bench_attach_history(repeats: int, log: Callable[[str], None],
                         steps: int = 10_000) -> Row:
    """`gan-tui attach` to a run with `steps` steps of history: from the command to the
    first frame that shows the newest step. The run here is this process serving a
    journal of the events a real run emits over those steps (no training needed)."""
    from gan_tui.events import Finished
    from gan_tui.serve.registry import RunLock, socket_path_for, write_status
    from gan_tui.serve.server import ControlServer

    log(f"attach with {steps:,} steps of history: {repeats} repeats")
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        run = Path(tmp) / "history"
        run.mkdir()
        (run / "config.json").write_text("{}")
        lock = RunLock(run)
        lock.acquire()
        server = ControlServer(socket_path_for(run), run, lambda _c: None).start()
        try:
            events = list(_history(steps, 156, 10.0, 4500.0))
            for event in events:
                server.journal.add(event)
            write_status(run, {"state": "running", "pid": os.getpid(),
                               "socket": str(server.socket_path)})
            newest = max(e.global_step for e in events if type(e).__name__ == "StepStats")
            last = f"{newest:,}"  # drawn bold: its own run of text in the stream
            for i in range(repeats):
                began = time.perf_counter()
                viewer = spawn_tui(["attach", str(run)], child_env())
                try:
                    viewer.expect(last, timeout=60)
                    times.append(time.perf_counter() - began)
                finally:
                    viewer.terminate(force=True)
                    viewer.close()
                log(f"  repeat {i + 1}/{repeats}: {times[-1]:.2f} s")
            server.sink(Finished("stopped", 0, steps, None, str(run)))
        finally:
            server.close()
            lock.release()
    stats = sum(1 for e in events if type(e).__name__ == "StepStats")
    return Row(
        name=f"attach -> first frame with {steps:,} steps of history",
        baseline_label="", baseline=None, ours=median(times), unit="s", target="<= 1.5 s",
        passed=median(times) <= 1.5,
        note=f"median of {repeats}; `gan-tui attach` in a 120 x 40 pty until the progress "
             f"panel shows the newest step (start-up and imports included); the history is "
             f"{len(events):,} events ({stats:,} step statistics at 10 per second)",
        samples={"seconds": times})


# ------------------------------------------------------ key presses, attached


def bench_attached_keys(device: str, presses: int, log: Callable[[str], None]) -> Row:
    """The responsiveness row, through an attached viewer: the run trains in its own
    process, the dashboard here talks to it over its control socket."""
    from benchmarks.tui import _responsiveness
    from gan_tui.attach import read_config
    from gan_tui.runs import wait_for_socket
    from gan_tui.tui.app import GanTuiApp
    from gan_tui.tui.connection import SocketRun

    log(f"attached key presses: {presses} x (p, p, g)")
    with _runs(device, ["run"]) as (run,):
        socket_path = wait_for_socket(run)

        def make_app(_config: object) -> GanTuiApp:
            app = GanTuiApp(read_config(run), connection=SocketRun(socket_path, run),
                            freeze_gc=True)
            app.view.attached = True
            return app

        latencies, step_ms = asyncio.run(_responsiveness(
            device, presses, str(run), 120, log, make_app=make_app, until_finished=False))
    everything = [ms for values in latencies.values() for ms in values]
    p95 = percentile(everything, 95)
    parts = "; ".join(f"{k}: p50 {percentile(v, 50):.0f} / p95 {percentile(v, 95):.0f} ms"
                      for k, v in latencies.items())
    return Row(
        name="key press -> screen through an attached viewer, p95",
        baseline_label="one training step", baseline=step_ms or None, ours=p95, unit="ms",
        target="<= 100 ms", passed=p95 <= 100,
        note=f"{len(everything)} presses; the run in its own process, the viewer under "
             f"Pilot here; from the press to the first frame showing the effect: {parts}",
        samples=latencies)
