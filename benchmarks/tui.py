"""The dashboard's cost: training speed with the TUI up vs headless, and how fast
a key press shows on screen while training."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.common import (
    BATCH,
    REPO,
    Row,
    alternate,
    interval_text,
    median,
    percentile,
)
from benchmarks.procs import (
    child_env,
    drain,
    epoch_records,
    gan_tui_command,
    quit_tui,
    spawn_tui,
    steady_img_per_s,
)

MAX_STEPS = 10_000 // BATCH


# ------------------------------------------------------------ TUI vs headless
#
# The two runs live side by side and train in turns of a few seconds, while the other
# waits (headless: SIGSTOP; the TUI: paused with p). A small cloud machine's speed can
# move by a third within seconds (its host's other tenants), so runs one after the
# other would compare different machines. Only the engine's own step time counts (epoch records:
# steps, not pauses or epoch ends).


def train_args(steps: int, epochs: int, device: str, seed: int, run_dir: Path) -> list[str]:
    return ["--epochs", str(epochs), "--limit", str(steps * BATCH), "--seed", str(seed),
            "--device", device, "--run-dir", str(run_dir)]


class _Turns(abc.ABC):
    """One training run that trains only while it has the turn.

    `window(kept)` resumes it, waits for 1 + `kept` new epoch records, stops it again
    and returns the images/s of the last `kept`: the first one straddles the stop (the
    headless run is stopped mid-step, the TUI one may start cold) and is dropped.
    """

    name = ""

    def __init__(self, run_dir: Path, timeout: float) -> None:
        self.log = run_dir / "metrics.jsonl"
        self.run_dir = run_dir
        self.timeout = timeout
        self.seen = 0  # epoch records already used

    def window(self, kept: int) -> float:
        self.resume()
        records = self._wait_for_records(1 + kept)  # on failure, close() cleans up
        self.stop()
        # Epochs that ended before the stop are spent, even ones that ended after the
        # last look: the next turn's first record must be the one the stop cut in two.
        self.seen = len(epoch_records(self.run_dir))
        return steady_img_per_s(records, warmup=1)

    def _wait_for_records(self, count: int) -> list[dict]:
        deadline = time.monotonic() + self.timeout
        size, records = -1, []
        while len(records) < count:
            if not self.wait(0.25) or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} run ended or stalled")
            if (new_size := _size(self.log)) != size:  # parse only what grew
                size, records = new_size, epoch_records(self.run_dir)[self.seen:]
        return records[:count]

    @abc.abstractmethod
    def resume(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def wait(self, seconds: float) -> bool:
        """Let it run for `seconds`; False once it has exited."""

    @abc.abstractmethod
    def close(self) -> None: ...


class _TuiTurns(_Turns):
    """The real app in a pseudo-terminal; `p` pauses the engine between two steps.

    The paused app stays up and idles (0.35% of a core on 2 cores): a frozen one would
    not be the app, as Textual re-enters its terminal mode on SIGCONT."""

    name = "TUI"

    def __init__(self, args: list[str], env: dict[str, str], run_dir: Path,
                 timeout: float) -> None:
        super().__init__(run_dir, timeout)
        self.child = spawn_tui(args, env)
        self.running = True  # it trains from the start

    def resume(self) -> None:
        if not self.running:
            self._press_p_until("TRAINING")
            self.running = True

    def stop(self) -> None:
        self._press_p_until("PAUSED")
        self.running = False

    def _press_p_until(self, badge: str) -> None:
        self.child.send("p")
        self.child.expect(badge, timeout=self.timeout)

    def wait(self, seconds: float) -> bool:
        return drain(self.child, seconds)

    def close(self) -> None:
        quit_tui(self.child)


class _HeadlessTurns(_Turns):
    """`gan-tui --headless`, output piped; SIGSTOP and SIGCONT between turns."""

    name = "headless"

    def __init__(self, args: list[str], env: dict[str, str], run_dir: Path,
                 timeout: float) -> None:
        super().__init__(run_dir, timeout)
        self.proc = subprocess.Popen(gan_tui_command() + ["--headless"] + args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, cwd=str(REPO))
        self.stop()  # the TUI warms up first

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)  # (send_signal skips a reaped child)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        _wait_until_stopped(self.proc.pid)  # no epoch record may land after this

    def wait(self, seconds: float) -> bool:
        time.sleep(seconds)
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGTERM)  # it saves and exits once it runs again
            self.proc.send_signal(signal.SIGCONT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_until_stopped(pid: int, timeout: float = 2.0) -> None:
    """Until the kernel shows `pid` stopped (Linux); elsewhere a short grace period."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        time.sleep(0.1)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.005)


@contextlib.contextmanager
def _unwind_on_termination() -> Iterator[None]:
    """SIGTERM or SIGHUP to the benchmark unwinds it, closing both runs, instead of
    ending it where it stands and leaving a stopped process behind."""

    def unwind(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, unwind) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def bench_tui_vs_headless(device: str, steps: int, repeats: int, threads: int | None,
                          log: Callable[[str], None], epochs: int = 1,
                          timeout: float = 300) -> Row:
    """`epochs`: epochs timed per turn (each turn also trains into one more)."""
    steps = max(2, min(steps, MAX_STEPS))
    env = child_env(threads)
    log(f"TUI vs headless: both runs alive, training in {repeats} alternating pairs of "
        f"turns ({epochs} timed epoch(s) of {steps} steps per turn), after a warm-up turn each")
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        def args(name: str) -> list[str]:
            return train_args(steps, 100_000, device, 0, Path(tmp) / name)

        with contextlib.ExitStack() as cleanup:  # never leave a stopped process behind
            cleanup.enter_context(_unwind_on_termination())
            headless = _HeadlessTurns(args("headless"), env, Path(tmp) / "headless", timeout)
            cleanup.callback(headless.close)
            tui = _TuiTurns(args("tui"), env, Path(tmp) / "tui", timeout)
            cleanup.callback(tui.close)
            for side in (tui, headless):  # start-up, first allocations, the first paint
                side.window(1)
            results = alternate({"headless": lambda rep: headless.window(epochs),
                                 "tui": lambda rep: tui.window(epochs)}, repeats, log)
    ratios = [t / h for t, h in zip(results["tui"], results["headless"], strict=True)]
    ratio = median(ratios)
    return Row(
        name="TUI vs headless (img/s)", baseline_label="headless",
        baseline=median(results["headless"]), ours=median(results["tui"]), unit="img/s",
        ratio=ratio, target=">= 0.95x", passed=ratio >= 0.95,
        note=f"real app in a {PTY_SIZE_TEXT} pseudo-terminal vs --headless piped, both "
             f"alive and training in turns ({repeats} alternating pairs; the other one "
             f"stopped or paused), the engine's own img/s over {epochs} epoch(s) of {steps} steps "
             f"per turn; per-pair ratios {', '.join(f'{r:.2f}' for r in ratios)}"
             f"{interval_text(ratios)}",
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
                          until_finished: bool = True,
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
        await _wait_for(lambda: app.view.progress is not None
                        and app.view.progress.global_step >= 3,
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
        speed = app.view.progress.img_per_s
        step_ms = BATCH / speed * 1000 if speed else 0.0
        app.request_quit()  # as q does: the engine saves last.pt and the worker ends
        if until_finished:  # (an attached viewer only detaches)
            await _wait_for(lambda: app.view.finished is not None, timeout,
                            "the engine to stop")
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
