"""Pilot tests: the dashboard's keys against a real (small) training run.

Each test waits on conditions (with a timeout), never on a fixed delay, so a loaded
machine only makes it slower. The one deliberate wait is the pause test's
observation window, which proves the step counter stands still.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_tui.config import TrainConfig
from gan_tui.errors import DataError
from gan_tui.events import Samples, StepStats
from gan_tui.tui.app import GanTuiApp
from gan_tui.tui.screens import HelpScreen
from gan_tui.tui.state import Phase
from gan_tui.tui.widgets import DigitsPanel, LogPanel, LossPlot

SIZE = (100, 30)
TIMEOUT_S = 60.0  # generous: a loaded 2-core machine may be slow, never wrong


def run_async(test: Callable[..., Coroutine]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest-asyncio plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def real_config(tmp_path: Path, epochs: int = 500) -> TrainConfig:
    # 4 steps per epoch on 256 real digits; long enough that no test sees the end.
    return TrainConfig(limit=256, epochs=epochs, batch_size=64, seed=0, device="cpu",
                       run_dir=str(tmp_path / "run"), stats_interval_ms=0)


async def wait_for(pilot, condition: Callable[[], object], what: str,
                   timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


async def wait_exited(app: GanTuiApp, timeout: float = TIMEOUT_S) -> float:
    """Seconds until the app stopped running."""
    began = time.monotonic()
    while app.is_running:
        if time.monotonic() - began > timeout:
            raise AssertionError("the app did not exit")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


def step_of(app: GanTuiApp) -> int:
    return app.trainer.global_step  # type: ignore[union-attr]


def log_text(app: GanTuiApp) -> str:
    return "\n".join(line.plain for line in app.query_one(LogPanel).lines)


def load_weights_only(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@run_async
async def test_pause_stops_steps_sample_and_save_work(tmp_path: Path) -> None:
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.progress and app.progress.global_step >= 2,
                       "the first steps")
        assert app.phase is Phase.TRAINING

        await pilot.press("space")
        await wait_for(pilot, lambda: app.phase is Phase.PAUSED, "PAUSED")
        paused_at = step_of(app)
        await pilot.pause(0.5)  # observation window: nothing may move
        app.poll_events()
        assert step_of(app) == paused_at
        assert app.progress.global_step == paused_at

        # g works while paused, and draws fresh digits.
        before = app.query_one(DigitsPanel).images
        await pilot.press("g")
        await wait_for(pilot, lambda: app.query_one(DigitsPanel).images is not before,
                       "fresh digits")
        digits = app.query_one(DigitsPanel)
        assert digits.images.shape == (16, 28, 28)
        assert "fresh" in digits.caption
        assert step_of(app) == paused_at  # sampling is not training

        # s saves (also while paused); the notice names a file that loads safely.
        notices: list[str] = []
        notify = app.notify
        app.notify = lambda message, **kw: (notices.append(str(message)), notify(message, **kw))
        await pilot.press("s")
        await wait_for(pilot, lambda: "copy kept" in log_text(app), "the checkpoint notice")
        kept = Path(tmp_path / "run" / "checkpoints" / f"step_{paused_at:07d}.pt")
        assert notices == [str(kept)]
        state = load_weights_only(kept)
        assert state["global_step"] == paused_at
        await wait_for(pilot, lambda: app.phase is Phase.PAUSED, "PAUSED after saving")

        await pilot.press("p")  # p is the other pause key
        await wait_for(pilot, lambda: app.phase is Phase.TRAINING, "TRAINING")
        await wait_for(pilot, lambda: step_of(app) > paused_at, "steps after resuming")
        await pilot.press("q")
        await wait_exited(app)
    assert app.finished is not None and app.finished.reason == "stopped"


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
@run_async
async def test_quit_saves_last_pt_and_exits_quickly(tmp_path: Path, key: str) -> None:
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.progress and app.progress.global_step >= 6,
                       "training in its second epoch")
        pressed = time.monotonic()
        await pilot.press(key)
        await wait_exited(app)
        seconds = time.monotonic() - pressed
    # The promise is 2 s (typically ~0.3 s here); the bound leaves room for a loaded machine.
    print(f"quit took {seconds:.2f} s")
    assert seconds < 4.0, f"quitting took {seconds:.2f} s"
    assert app.return_code == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_weights_only(last)
    assert app.finished is not None and app.finished.reason == "stopped"
    assert state["global_step"] == app.finished.global_step
    assert app.resume_hint() is not None and str(last) in app.resume_hint()


@run_async
async def test_quit_while_paused(tmp_path: Path) -> None:
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.progress is not None, "the first steps")
        await pilot.press("space")
        await wait_for(pilot, lambda: app.phase is Phase.PAUSED, "PAUSED")
        await pilot.press("q")
        await wait_exited(app)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@run_async
async def test_completed_run_shows_done_and_needs_no_resume(tmp_path: Path) -> None:
    app = GanTuiApp(real_config(tmp_path, epochs=2))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.phase is Phase.DONE, "DONE")
        assert "Epoch: [1/2]" in log_text(app)
        assert app.query_one(DigitsPanel).images is not None
        await pilot.press("space")  # nothing to pause: a notice, no crash
        await pilot.press("q")
        await wait_exited(app)
    assert app.resume_hint() is None


@run_async
async def test_start_failure_is_shown_politely(tmp_path: Path) -> None:
    def broken(config, sink, resume):
        raise DataError("no digits here: /nowhere is empty")

    app = GanTuiApp(real_config(tmp_path), trainer_factory=broken)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.phase is Phase.ERROR, "ERROR")
        assert "no digits here" in log_text(app)
        await pilot.press("q")
        await wait_exited(app)
    assert app.return_code == 1


@run_async
async def test_view_keys_and_help_without_training() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        digits, plot = app.query_one(DigitsPanel), app.query_one(LossPlot)
        await pilot.press("r")
        assert digits.mode == "braille"
        await pilot.press("r", "r")
        assert digits.mode == "blocks"
        await pilot.press("v")
        assert plot.mode == "d" and "D(G(z))" in str(plot.border_title)
        await pilot.press("l")
        assert plot.log_y
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        await wait_exited(app)


@run_async
async def test_conditional_samples_show_their_labels() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        images = np.full((16, 28, 28), -1.0, dtype=np.float32)
        app.feed(Samples(epoch=0, global_step=5, images=images, fixed=False,
                         labels=tuple(i % 10 for i in range(16))))
        app.poll_events()
        await pilot.pause()
        digits = app.query_one(DigitsPanel)
        assert digits.labels == [str(i % 10) for i in range(16)]
        grid = digits.render()
        assert "".join(str(i) for i in range(4)) in grid.plain.replace(" ", "")
        await pilot.press("q")
        await wait_exited(app)


def test_a_crashing_ui_still_stops_training(tmp_path: Path) -> None:
    """If the UI dies, the worker's cancellation stops the engine: no endless process."""

    class Boom(Exception):
        pass

    app = GanTuiApp(real_config(tmp_path))

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.progress and app.progress.global_step >= 2,
                           "the first steps")

            def explode() -> None:
                raise Boom("a bug in the UI")

            app.call_later(explode)
            await wait_exited(app)

    with pytest.raises(Boom):
        asyncio.run(scenario())
    # asyncio.run only returns once the worker thread has ended (its executor is joined);
    # the engine stopped early and saved where it stopped.
    state = load_weights_only(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["global_step"] == step_of(app) < 500 * 4


@run_async
async def test_resume_continues_the_run_with_its_history(tmp_path: Path) -> None:
    first = GanTuiApp(real_config(tmp_path, epochs=2))
    async with first.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: first.phase is Phase.DONE, "the first run to finish")
        await pilot.press("q")
        await wait_exited(first)
    last = tmp_path / "run" / "checkpoints" / "last.pt"

    app = GanTuiApp(real_config(tmp_path, epochs=4), resume=str(last))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.phase is Phase.DONE, "the resumed run to finish")
        assert f"Resumed from {last}" in log_text(app)
        assert app.progress.start_step == 8 and app.progress.global_step == 16
        assert app.history.steps[0] <= 8  # the first run's epochs are on the plot too
        await pilot.press("q")
        await wait_exited(app)


@run_async
async def test_non_finite_losses_show_diverged() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        app.feed(StepStats(epoch=0, epochs=1, batch=1, steps_per_epoch=10, global_step=1,
                           g_loss=float("nan"), d_loss=0.5, d_real=0.5, d_fake=0.5,
                           img_per_s=1.0, elapsed_s=1.0))
        app.poll_events()
        await pilot.pause()
        assert app.phase is Phase.DIVERGED
        assert "diverged" in log_text(app)
        await pilot.press("q")
        await wait_exited(app)
