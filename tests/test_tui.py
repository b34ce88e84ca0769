"""Pilot tests: the dashboard's keys against a real (small) training run.

Each test waits on conditions (with a timeout), never on a fixed delay, so a loaded
machine only makes it slower. The deliberate waits are the pause test's observation
window, which proves the step counter stands still, and a slow sink standing in for
slow epoch-end work. Failures are real too: NaN data makes a run diverge, a file-size
limit makes a save fail as on a full disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from textual.content import Content
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Static
from textual.widgets._toast import Toast

from gan_tui.config import TrainConfig
from gan_tui.errors import DataError
from gan_tui.events import CheckpointSaved, Event, Quality, Samples, StepStats
from gan_tui.tui.app import GanTuiApp, TrainerFactory, _report, make_trainer
from gan_tui.tui.screens import HelpScreen
from gan_tui.tui.state import Phase
from gan_tui.tui.widgets import DigitsPanel, LogPanel, LossPlot, ProgressPanel, TooSmall

SIZE = (100, 30)
TIMEOUT_S = 60.0  # generous: a loaded 2-core machine may be slow, never wrong


def run_async(test: Callable[..., Coroutine]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest-asyncio plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def real_config(tmp_path: Path, epochs: int = 500, **overrides: object) -> TrainConfig:
    # 4 steps per epoch on 256 real digits; long enough that no test sees the end.
    settings = {"run_dir": str(tmp_path / "run"), "stats_interval_ms": 0, **overrides}
    return TrainConfig(limit=256, epochs=epochs, batch_size=64, seed=0, device="cpu",
                       **settings)  # type: ignore[arg-type]


def reacting(react: Callable[[Event, object], None]) -> TrainerFactory:
    """The real trainer, whose sink also calls `react(event, trainer)` on the training
    thread once the app has the event (to poison data, or to be slow)."""

    def factory(config: TrainConfig, sink: Callable[[Event], None], resume: str | None):
        box: list[object] = []

        def sink_and_react(event: Event) -> None:
            sink(event)
            react(event, box[0])

        box.append(make_trainer(config, sink_and_react, resume))
        return box[0]

    return factory


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
    return app.connection.trainer.global_step  # type: ignore[union-attr]


def log_text(app: GanTuiApp) -> str:
    return "\n".join(line.plain for line in app.query_one(LogPanel).lines)


def load_weights_only(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def toasts(app: GanTuiApp) -> list[str]:
    """The notices on screen, as the user reads them."""
    return [toast.render().plain for toast in app.screen.query(Toast)]


async def wait_toast(pilot, app: GanTuiApp, part: str) -> str:
    await wait_for(pilot, lambda: any(part in t for t in toasts(app)), f"a notice with {part!r}")
    return next(t for t in toasts(app) if part in t)


def plain(renderable: object, width: int) -> str:
    console = Console(width=width, file=io.StringIO())
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def drawn_text(widget: Widget) -> str:
    """What the widget draws on screen (borders included), one line per row."""
    lines = widget.render_lines(Region(0, 0, *widget.outer_size))
    return "\n".join(line.text for line in lines)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@run_async
async def test_pause_stops_steps_sample_and_save_work(tmp_path: Path) -> None:
    # Step stats only at epoch ends: the screen must still show the step it paused at.
    app = GanTuiApp(real_config(tmp_path, stats_interval_ms=600_000))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.progress and app.connection.trainer
                       and step_of(app) >= 6, "the first steps")
        assert app.view.phase is Phase.TRAINING

        await pilot.press("space")
        await wait_for(pilot, lambda: app.view.phase is Phase.PAUSED, "PAUSED")
        paused_at = step_of(app)
        await pilot.pause(0.5)  # observation window: nothing may move
        app.dashboard.poll_events()
        assert step_of(app) == paused_at
        assert app.view.progress.global_step == paused_at

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
        await wait_for(pilot, lambda: app.view.phase is Phase.PAUSED, "PAUSED after saving")

        await pilot.press("5")  # the seed preset cannot draw a chosen digit: say so
        await wait_toast(pilot, app, "Digit keys need a conditional preset such as --preset cgan")

        await pilot.press("p")  # p is the other pause key
        await wait_for(pilot, lambda: app.view.phase is Phase.TRAINING, "TRAINING")
        await wait_for(pilot, lambda: step_of(app) > paused_at, "steps after resuming")
        await pilot.press("q")
        await wait_exited(app)
    assert app.view.finished is not None and app.view.finished.reason == "stopped"


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
@run_async
async def test_quit_saves_last_pt_and_exits_quickly(tmp_path: Path, key: str) -> None:
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.progress and app.view.progress.global_step >= 6,
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
    assert app.view.finished is not None and app.view.finished.reason == "stopped"
    assert state["global_step"] == app.view.finished.global_step
    epoch, step = app.view.finished.epoch, app.view.finished.global_step
    assert app.view.ending_lines() == [f"Stopped at epoch {epoch}, step {step}; saved {last}",
                                  f"Resume with: gan-tui train --resume {last}"]


@run_async
async def test_quit_while_paused(tmp_path: Path) -> None:
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.progress is not None, "the first steps")
        await pilot.press("space")
        await wait_for(pilot, lambda: app.view.phase is Phase.PAUSED, "PAUSED")
        await pilot.press("q")
        await wait_exited(app)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


SLOW_EPOCH_END_S = 2.5  # epoch-end work (scoring, saving) standing in for a slow machine


@run_async
async def test_completed_run_shows_quality_each_epoch_and_needs_no_resume(tmp_path: Path) -> None:
    stats: list[StepStats] = []
    scores: list[Quality] = []

    def slow_first_epoch_end(event: Event, trainer: object) -> None:
        if isinstance(event, StepStats):
            stats.append(event)
        elif isinstance(event, Quality):
            scores.append(event)
            if event.epoch == 0:
                time.sleep(SLOW_EPOCH_END_S)

    app = GanTuiApp(real_config(tmp_path, epochs=2),
                    trainer_factory=reacting(slow_first_epoch_end))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.phase is Phase.DONE, "DONE")
        log = log_text(app)
        assert "Epoch: [1/2]" in log
        assert app.query_one(DigitsPanel).images is not None
        # The loss plot catches up on its own timer; its legend carries the last values.
        plot, last_g = app.query_one(LossPlot), app.view.history.g_loss[-1]
        await wait_for(pilot, lambda: f"G {last_g:.3f}" in drawn_text(plot), "the last loss")

        # Each epoch's scores are logged; the latest show under the progress bars and
        # their class histogram as bars in the digits panel's border.
        assert [line for line in log.splitlines() if line.startswith("quality: FID")] == [
            f"quality: FID {q.fid:.2f} (real vs real {q.floor:.2f}) | IS {q.score:.2f} | "
            f"coverage {q.coverage:.3f} | conf {q.confidence:.3f}" for q in scores]
        quality = app.view.quality
        assert quality is not None and quality.epoch == 1 and sum(quality.histogram) == 1000
        progress = app.query_one(ProgressPanel)
        shown = plain(progress.render(), progress.content_size.width)
        # The FID comes with what real digits score at the same count.
        assert quality.floor > 0
        # This panel is narrow: the short form.
        assert f"FID {quality.fid:.2f} (real {quality.floor:.1f}) · IS {quality.score:.2f}" in shown
        subtitle = Content.from_markup(app.query_one(DigitsPanel).border_subtitle or "").plain
        assert "classes 0" in subtitle and "9" in subtitle and "r blocks" in subtitle
        assert any(bar in subtitle for bar in "▁▂▃▄▅▆▇█")

        await pilot.press("space")  # nothing to pause: a notice, no crash
        await pilot.press("q")
        await wait_exited(app)
    assert app.view.ending_lines() == [
        f"Done: 2 epochs, 8 steps. Run directory: {tmp_path / 'run'}"]
    assert app.return_code == 0
    # The speed right after an epoch end is the training speed: the slow epoch-end work is
    # not in it (measured from the next epoch's first step).
    first_of_second = next(s for s in stats if s.epoch == 1)
    assert first_of_second.img_per_s > 64 / SLOW_EPOCH_END_S


@run_async
async def test_start_failure_is_shown_politely(tmp_path: Path) -> None:
    def broken(config, sink, resume):
        raise DataError("no digits here: /nowhere is empty")

    app = GanTuiApp(real_config(tmp_path), trainer_factory=broken)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.phase is Phase.ERROR, "ERROR")
        assert "no digits here" in log_text(app)
        await pilot.press("q")
        await wait_exited(app)
    assert app.return_code == 1


@run_async
async def test_view_keys_and_help_without_training() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
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
        keys = app.screen.query_one("#help-keys", Static)
        assert "0-9" in plain(keys.content, 80)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        await wait_exited(app)


@run_async
async def test_conditional_samples_show_their_labels() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        images = np.full((16, 28, 28), -1.0, dtype=np.float32)
        app.connection.feed(Samples(epoch=0, global_step=5, images=images, fixed=False,
                         labels=tuple(i % 10 for i in range(16))))
        app.dashboard.poll_events()
        await pilot.pause()
        digits = app.query_one(DigitsPanel)
        assert digits.labels == [str(i % 10) for i in range(16)]
        assert "0123" in drawn_text(digits).replace(" ", "")
        await pilot.press("q")
        await wait_exited(app)


def test_a_crashing_ui_still_stops_training(tmp_path: Path) -> None:
    """If the UI dies, the worker's cancellation stops the engine: no endless process."""

    class Boom(Exception):
        pass

    app = GanTuiApp(real_config(tmp_path))

    async def scenario() -> None:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(pilot, lambda: app.view.progress and app.view.progress.global_step >= 2,
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
    async with first.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: first.view.phase is Phase.DONE, "the first run to finish")
        await pilot.press("q")
        await wait_exited(first)
    last = tmp_path / "run" / "checkpoints" / "last.pt"

    app = GanTuiApp(real_config(tmp_path, epochs=4), resume=str(last))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.phase is Phase.DONE, "the resumed run to finish")
        assert f"Resumed from {last}" in log_text(app)
        assert app.view.progress.start_step == 8 and app.view.progress.global_step == 16
        assert app.view.history.steps[0] <= 8  # the first run's epochs are on the plot too
        await pilot.press("q")
        await wait_exited(app)


def poison_after_first_epoch(before: list[str]) -> Callable[[Event, object], None]:
    """Once the first epoch's last.pt is written, every digit becomes NaN: the next step
    diverges for real."""

    def react(event: Event, trainer) -> None:
        if isinstance(event, CheckpointSaved) and event.global_step == 4:
            before.append(digest(Path(event.path)))
            trainer.data[:] = float("nan")

    return react


@run_async
async def test_divergence_pauses_refuses_resume_and_save_and_quit_explains(
        tmp_path: Path, capsys) -> None:
    before: list[str] = []
    app = GanTuiApp(real_config(tmp_path), trainer_factory=reacting(poison_after_first_epoch(
        before)))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.phase is Phase.DIVERGED and app.view.paused,
                       "DIVERGED, paused")
        assert str(app.query_one("#badge").content).strip() == "DIVERGED"
        said = ("training diverged at step 5, in epoch [1/500] (g_loss nan, d_loss nan, "
                f"d_real nan); nothing was saved over the last good checkpoint {last} (step 4)")
        assert f"Diverged: {said}" in log_text(app)
        # Literally, [1/500] included: no markup is read into messages.
        await wait_toast(pilot, app, said)

        await pilot.press("space")  # the engine refuses to resume NaN weights
        await wait_toast(pilot, app, "cannot resume: the generator and discriminator weights "
                                     "are not finite")
        await pilot.press("space")  # and says so again at each press
        await wait_for(pilot, lambda: log_text(app).count("cannot resume") == 2,
                       "a second refusal")
        await pilot.press("s")  # nor saves them
        await wait_toast(pilot, app, f"not saving {last}: the generator and discriminator")
        assert step_of(app) == 5
        await pilot.press("q")
        await wait_exited(app)
    assert app.view.finished is not None
    assert (app.view.finished.reason, app.view.finished.checkpoint_step) == ("diverged", 4)
    assert digest(last) == before[0]  # not a byte changed
    assert app.return_code == 3  # as headless runs exit after a divergence
    ending = [f"Diverged at epoch 1, step 5; {last} still holds step 4.",
              f"Resume with lower learning rates: gan-tui train --resume {last} "
              "--lr-g 5e-05 --lr-d 0.0001"]
    assert app.view.ending_lines() == ending
    capsys.readouterr()
    assert _report(app) == 3
    assert capsys.readouterr().out.splitlines() == ending  # printed after the screen closes


@contextlib.contextmanager
def full_disk() -> Iterator[None]:
    """Files may not grow past 1 MiB: a checkpoint write fails with EFBIG, as on a full
    disk (Python ignores SIGXFSZ, so the write raises instead of killing the process)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_FSIZE")
@run_async
async def test_a_failed_save_is_a_notice_training_goes_on_and_s_retries(tmp_path: Path) -> None:
    run_dir = tmp_path / "[b]run[/b]"  # brackets that markup would eat
    app = GanTuiApp(real_config(tmp_path, run_dir=str(run_dir)))
    last = run_dir / "checkpoints" / "last.pt"
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.last_checkpoint is not None, "the first checkpoint")
        await pilot.press("space")
        await wait_for(pilot, lambda: app.view.phase is Phase.PAUSED, "PAUSED")
        paused_at = step_of(app)
        with full_disk():
            await pilot.press("s")
            notice = await wait_toast(pilot, app, "could not save")
        assert f"could not save {last}: File too large; the last good checkpoint is {last} " \
            "(step " in notice  # literally: brackets and all
        assert notice.endswith("; free some space, the next save tries again")
        assert app.view.phase is Phase.PAUSED and app.view.fatal_error is None  # not fatal

        await pilot.press("s")  # space is back: s tries again, and saves
        kept = run_dir / "checkpoints" / f"step_{paused_at:07d}.pt"
        await wait_toast(pilot, app, str(kept))
        assert load_weights_only(kept)["global_step"] == paused_at

        log = app.query_one(LogPanel)  # read after the app has closed
        with full_disk():  # the disk fills up again: training goes on, no save succeeds
            await pilot.press("space")
            await wait_for(pilot, lambda: step_of(app) > paused_at + 4, "an epoch end")
            await pilot.press("q")
            await wait_exited(app)
    assert sum("could not save" in line.plain for line in log.lines) >= 3  # s, epoch, stop
    finished = app.view.finished
    assert finished is not None and finished.reason == "stopped"
    assert paused_at == finished.checkpoint_step < finished.global_step
    assert app.view.ending_lines()[0] == (
        f"Stopped at epoch {finished.epoch}, step {finished.global_step}, but it could not be "
        f"saved (see the error above); the newest checkpoint is {last} "
        f"(step {finished.checkpoint_step}).")
    assert any("could not be saved" in line.plain for line in log.lines)
    assert load_weights_only(last)["global_step"] == finished.checkpoint_step
    assert app.return_code == 1  # as headless: the last state is not on disk


@run_async
async def test_digit_keys_draw_that_digit_on_a_conditional_preset(tmp_path: Path) -> None:
    app = GanTuiApp(real_config(tmp_path, preset="cgan"))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.progress is not None, "training to start")
        await pilot.press("space")  # or the next epoch's fixed-noise grid replaces them
        await wait_for(pilot, lambda: app.view.phase is Phase.PAUSED, "PAUSED")
        digits = app.query_one(DigitsPanel)
        for key in ("3", "7"):
            await pilot.press(key)
            await wait_for(pilot, lambda k=key: digits.labels == [k] * 16, f"16 {key}s")
            assert digits.caption.startswith(f"digit {key} · step ")
            assert digits.images.shape == (16, 28, 28)
        await pilot.press("q")
        await wait_exited(app)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP")
@run_async
async def test_a_hangup_ignored_at_start_stays_ignored() -> None:
    """Under nohup SIGHUP is ignored; the app leaves it so (SIGTERM is still handled)."""
    hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    term = signal.getsignal(signal.SIGTERM)
    try:
        app = GanTuiApp(TrainConfig(), autostart=False, handle_signals=True)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == app._on_signal
            await pilot.press("q")
            await wait_exited(app)
        app.restore_signal_handlers()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == term
    finally:
        signal.signal(signal.SIGHUP, hup)


@run_async
async def test_the_too_small_note_names_the_size_after_each_resize() -> None:
    """Issue #12: the note was one resize behind (it read the size before the update)."""
    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        note = app.query_one(TooSmall)
        for width, height in ((79, 23), (70, 20)):
            await pilot.resize_terminal(width, height)
            await wait_for(pilot, lambda w=width, h=height: app.screen.size == (w, h),
                           "the new size")
            await pilot.pause()
            assert f"(this terminal: {width} x {height})" in str(note.content)
        await pilot.press("question_mark")  # a resize under the help screen counts too
        await pilot.resize_terminal(75, 22)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "(this terminal: 75 x 22)" in str(note.content),
                       "the size after closing help")
        await pilot.press("q")
        await wait_exited(app)


@run_async
async def test_digit_keys_on_a_seed_preset_show_one_notice(tmp_path: Path) -> None:
    """Issue #12: ten digit presses stacked ten identical pop-ups; one is enough."""
    app = GanTuiApp(real_config(tmp_path))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.view.progress is not None, "training to start")
        await pilot.press(*"0123456789")
        await wait_toast(pilot, app, "Digit keys need a conditional preset")
        await pilot.pause(0.2)  # every press has been answered
        assert len(toasts(app)) == 1
        assert len(app._notifications) == 1
        await pilot.press("q")
        await wait_exited(app)
