"""The dashboard's cost: training speed with the TUI up vs headless, and how fast
a key press shows on screen while training."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import BATCH, Row, alternate, median, percentile
from benchmarks.procs import (
    child_env,
    drain,
    epoch_records,
    gan_tui_command,
    quit_tui,
    run_quiet,
    spawn_tui,
    steady_img_per_s,
)

MAX_STEPS = 10_000 // BATCH


# ------------------------------------------------------------ TUI vs headless


def train_args(steps: int, epochs: int, device: str, seed: int, run_dir: Path) -> list[str]:
    return ["--epochs", str(epochs), "--limit", str(steps * BATCH), "--seed", str(seed),
            "--device", device, "--run-dir", str(run_dir)]


def tui_img_per_s(steps: int, epochs: int, device: str, seed: int, env: dict[str, str],
                  timeout: float = 600) -> float:
    """The engine's own images/s after a warm-up epoch, trained by the real app in a
    pseudo-terminal (every panel live, output read as a terminal would)."""
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        child = spawn_tui(train_args(steps, epochs, device, seed, run_dir), env)
        try:
            deadline = time.monotonic() + timeout
            # Read the log only when it grew, twice a second: this process shares the
            # cores it measures, and the headless side has no such watcher.
            log, seen, records = run_dir / "metrics.jsonl", -1, []
            while len(records) < epochs:
                alive = drain(child, 0.5)
                if not alive or time.monotonic() > deadline:
                    raise RuntimeError("the TUI run ended or timed out before its last epoch")
                if (size := _size(log)) != seen:
                    seen, records = size, epoch_records(run_dir)
            return steady_img_per_s(records)
        finally:
            quit_tui(child)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def headless_img_per_s(steps: int, epochs: int, device: str, seed: int, env: dict[str, str],
                       timeout: float = 600) -> float:
    """The same run with `--headless`, output piped (the non-terminal runner)."""
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        run_quiet(gan_tui_command() + ["--headless"]
                  + train_args(steps, epochs, device, seed, run_dir), env, timeout)
        records = epoch_records(run_dir)
        if len(records) < epochs:
            raise RuntimeError("the headless run wrote too few epoch records")
        return steady_img_per_s(records)


def bench_tui_vs_headless(device: str, steps: int, repeats: int, threads: int | None,
                          log: Callable[[str], None], epochs: int = 3) -> Row:
    steps = max(2, min(steps, MAX_STEPS))
    env = child_env(threads)
    log(f"TUI vs headless: {repeats} x {epochs} epochs of {steps} steps each "
        "(the first a warm-up), as subprocesses")
    runs = {
        "headless": lambda rep: headless_img_per_s(steps, epochs, device, rep, env),
        "tui": lambda rep: tui_img_per_s(steps, epochs, device, rep, env),
    }
    results = alternate(runs, repeats, log)
    ratios = [t / h for t, h in zip(results["tui"], results["headless"], strict=True)]
    ratio = median(ratios)
    timed = f"{epochs - 1} epochs of {steps} steps after a warm-up epoch" if epochs > 1 \
        else f"a {steps}-step epoch"
    return Row(
        name="TUI vs headless (img/s)", baseline_label="headless",
        baseline=median(results["headless"]), ours=median(results["tui"]), unit="img/s",
        ratio=ratio, target=">= 0.95x", passed=ratio >= 0.95,
        note=f"real app in a {PTY_SIZE_TEXT} pseudo-terminal vs --headless piped, "
             f"{repeats} alternating repeats, the engine's own img/s over {timed}; "
             f"per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}",
        samples={**results, "ratio": ratios},
    )


PTY_SIZE_TEXT = "120 x 40"


# ------------------------------------------------------------ responsiveness


class _FrameProbe:
    """Notes when the first frame is composed after a condition became true.

    Textual calls `App.post_display_hook` after each frame it composes (the
    headless driver composes frames too, it just writes them nowhere)."""

    def __init__(self) -> None:
        self.condition: Callable[[], bool] | None = None
        self.hit: float | None = None

    def __call__(self) -> None:
        if self.condition is not None and self.hit is None and self.condition():
            self.hit = time.perf_counter()

    def arm(self, condition: Callable[[], bool]) -> None:
        self.condition, self.hit = condition, None


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _timed_press(pilot, probe: _FrameProbe, key: str, shown: Callable[[], bool],
                       timeout: float) -> float:
    probe.arm(shown)
    began = time.perf_counter()
    await pilot.press(key)
    await _wait_for(lambda: probe.hit is not None, timeout, f"the effect of {key!r}")
    return (probe.hit - began) * 1000


async def _responsiveness(device: str, presses: int, run_dir: str, timeout: float,
                          log: Callable[[str], None], make_app: Callable | None = None,
                          ) -> tuple[dict[str, list[float]], float]:
    from gan_tui.config import TrainConfig
    from gan_tui.tui.app import GanTuiApp
    from gan_tui.tui.widgets import DigitsPanel

    config = TrainConfig(epochs=100, seed=0, device=device, run_dir=run_dir)
    # As `gan-tui` runs it (run_tui), less the signal handlers: see GanTuiApp.
    app = (make_app or functools.partial(GanTuiApp, freeze_gc=True))(config)
    probe = _FrameProbe()
    app.post_display_hook = probe  # type: ignore[method-assign]
    latencies: dict[str, list[float]] = {"p (pause)": [], "p (resume)": [], "g (sample)": []}
    async with app.run_test(size=(120, 40)) as pilot:
        await _wait_for(lambda: app.progress is not None and app.progress.global_step >= 3,
                        timeout, "training to start")
        badge = app.query_one("#badge")
        digits = app.query_one(DigitsPanel)

        def badge_is(text: str) -> Callable[[], bool]:
            return lambda: str(badge.content).strip() == text  # type: ignore[attr-defined]

        for i in range(presses):
            latencies["p (pause)"].append(
                await _timed_press(pilot, probe, "p", badge_is("PAUSED"), timeout))
            await asyncio.sleep(0.05 + 0.013 * (i % 5))  # not in step with any timer
            latencies["p (resume)"].append(
                await _timed_press(pilot, probe, "p", badge_is("TRAINING"), timeout))
            await asyncio.sleep(0.05 + 0.017 * (i % 5))
            caption = digits.caption
            latencies["g (sample)"].append(await _timed_press(
                pilot, probe, "g", lambda c=caption: digits.caption != c, timeout))
            await asyncio.sleep(0.05 + 0.011 * (i % 5))
            log(f"  presses {i + 1}/{presses}: " + ", ".join(
                f"{k} {v[-1]:.0f} ms" for k, v in latencies.items()))
        step_ms = BATCH / app.progress.img_per_s * 1000 if app.progress.img_per_s else 0.0
        app.request_quit()  # as q does: the engine saves last.pt and the worker ends
        await _wait_for(lambda: app.finished is not None, timeout, "the engine to stop")
    return latencies, step_ms


def bench_responsiveness(device: str, presses: int, log: Callable[[str], None],
                         timeout: float = 120) -> Row:
    log(f"responsiveness: {presses} x (p, p, g) while training, app under Pilot")
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        latencies, step_ms = asyncio.run(
            _responsiveness(device, presses, str(Path(tmp) / "run"), timeout, log))
    everything = [ms for values in latencies.values() for ms in values]
    p95 = percentile(everything, 95)
    parts = "; ".join(f"{k}: p50 {percentile(v, 50):.0f} / p95 {percentile(v, 95):.0f} ms"
                      for k, v in latencies.items())
    return Row(
        name="key press -> screen, p95", baseline_label="one training step",
        baseline=step_ms or None, ours=p95, unit="ms", target="<= 100 ms",
        passed=p95 <= 100,
        note=f"{len(everything)} presses, from Pilot.press to the first frame showing "
             f"the effect (badge PAUSED/TRAINING, fresh digits): {parts}",
        samples=latencies,
    )


__all__ = ["bench_tui_vs_headless", "bench_responsiveness", "gan_tui_command"]
