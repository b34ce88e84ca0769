"""SVG snapshots of the dashboard, fed a fixed script of events (no training, no clock).

Update after a deliberate change with: pytest tests/test_tui_snapshots.py --snapshot-update
and look at the pictures (snapshot_report.html) before committing them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from textual.pilot import Pilot

from gan_tui.config import TrainConfig
from gan_tui.data import load_bundled
from gan_tui.events import (
    CheckpointSaved,
    Diverged,
    EpochEnd,
    Event,
    Paused,
    Quality,
    Samples,
    Started,
    StepStats,
)
from gan_tui.tui.app import GanTuiApp
from gan_tui.tui.widgets import LossPlot

STEPS_PER_EPOCH = 157
EPOCHS = 100
# Predicted classes of 1,000 scored samples: few 6s, as the seed's GAN tends to draw.
HISTOGRAM = (61, 142, 98, 110, 95, 88, 23, 120, 104, 159)


def scripted_events(epochs_done: int = 3, extra_batches: int = 60) -> list[Event]:
    """A plausible run: losses settle, D(x) and D(G(z)) drift towards 0.5."""
    events: list[Event] = [Started(
        run_dir="runs/20250101-120000-seed", run_name="20250101-120000-seed", preset="seed",
        device="cpu", dataset="bundled MNIST test split", num_images=10_000,
        steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, start_epoch=0, global_step=0,
        resumed_from=None, config={},
    )]
    total = epochs_done * STEPS_PER_EPOCH + extra_batches
    for step in range(1, total + 1):
        epoch, batch = divmod(step - 1, STEPS_PER_EPOCH)
        t = step / 100
        wobble = 0.08 * math.sin(step / 7)
        events.append(StepStats(
            epoch=epoch, epochs=EPOCHS, batch=batch + 1, steps_per_epoch=STEPS_PER_EPOCH,
            global_step=step, g_loss=0.9 + 1.6 * math.exp(-t) + wobble,
            d_loss=1.25 - 0.6 * math.exp(-t) - wobble / 2,
            d_real=0.55 + 0.35 * math.exp(-t), d_fake=0.45 - 0.3 * math.exp(-t) + wobble / 4,
            img_per_s=2_450.0, elapsed_s=step * 64 / 2_450.0,
        ))
        if batch + 1 == STEPS_PER_EPOCH:
            events.append(EpochEnd(epoch=epoch, epochs=EPOCHS, global_step=step, g_loss=1.2,
                                   d_loss=1.1, d_real=0.6, d_fake=0.4, img_per_s=2_450.0,
                                   seconds=4.1))
            events.append(Quality(epoch=epoch, global_step=step, fid=96.3 / (epoch + 1),
                                  score=3.2 + epoch, coverage=0.85 + 0.04 * epoch,
                                  confidence=0.71, histogram=HISTOGRAM, samples=1000,
                                  seconds=0.12, floor=4.39))
    events.append(Samples(epoch=epochs_done - 1, global_step=epochs_done * STEPS_PER_EPOCH,
                          images=real_digits(), fixed=True))
    events.append(CheckpointSaved("runs/20250101-120000-seed/checkpoints/last.pt",
                                  epochs_done, total, "request"))
    return events


def real_digits() -> np.ndarray:
    """The first 16 bundled MNIST test digits, in [-1, 1] like a generator's output."""
    return load_bundled().images[:16].astype(np.float32) / 127.5 - 1.0


def fed_app(*extra: Event) -> GanTuiApp:
    app = GanTuiApp(TrainConfig(run_dir="runs/20250101-120000-seed"), autostart=False)
    app.connection.feed(*scripted_events(), *extra)
    return app


async def settle(pilot: Pilot) -> None:
    """Fold the events in and draw the plot now instead of on the timers."""
    app = pilot.app
    assert isinstance(app, GanTuiApp)
    app.dashboard.poll_events()
    await pilot.pause()
    app.query_one(LossPlot).redraw_if_stale()
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_dashboard(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(fed_app(), terminal_size=size, run_before=settle)


def test_paused_braille_d_plot_log_y(snap_compare) -> None:
    """r -> braille, v -> D(x)/D(G(z)) with the 0.5 line, l -> log-y; the badge says PAUSED."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("r", "v", "l")
        await settle(pilot)

    app = fed_app(Paused(global_step=531))
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_diverged(snap_compare) -> None:
    """The engine paused a run whose losses became NaN: DIVERGED, and the log says why."""
    last = "runs/20250101-120000-seed/checkpoints/last.pt"
    diverged = Diverged(epoch=3, global_step=531, checkpoint=last, message=(
        "training diverged at step 531, in epoch [4/100] (g_loss nan, d_loss nan); nothing "
        f"was saved over the last good checkpoint {last} (step 471)"))
    app = fed_app(diverged, Paused(global_step=531))
    assert snap_compare(app, terminal_size=(100, 30), run_before=settle)


def test_conditional_digit_at_80x24(snap_compare) -> None:
    """A digit key's 16 samples (cgan): the title says which digit; at 80 x 24 the blocks
    grid drops the per-digit captions rather than overflow the panel."""
    threes = Samples(epoch=3, global_step=540, images=real_digits(), fixed=False,
                     labels=(3,) * 16)
    assert snap_compare(fed_app(threes), terminal_size=(80, 24), run_before=settle)


def test_help_screen(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")

    assert snap_compare(fed_app(), terminal_size=(80, 24), run_before=run_before)


def test_too_small(snap_compare) -> None:
    assert snap_compare(fed_app(), terminal_size=(70, 20), run_before=settle)
