"""The dashboard's plain parts: event buffer, plot thinning, digit fitting, quality text."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from gan_tui.events import Paused, Quality, StepStats
from gan_tui.render import grid_size
from gan_tui.tui.scaling import MAX_PX, MIN_PX, best_size, resize
from gan_tui.tui.state import EventBuffer, History, Progress, ema, format_duration, thin
from gan_tui.tui.widgets import class_bars, quality_line, step_ticks


def stats(step: int, g: float = 1.0, d: float = 1.0) -> StepStats:
    return StepStats(epoch=0, epochs=1, batch=step, steps_per_epoch=100, global_step=step,
                     g_loss=g, d_loss=d, d_real=0.5, d_fake=0.5, img_per_s=1.0, elapsed_s=1.0)


def test_buffer_keeps_order_and_drains_once() -> None:
    buffer = EventBuffer()
    events = [stats(1), Paused(1), stats(2)]
    for event in events:
        buffer.put(event)
    assert buffer.drain() == events
    assert buffer.drain() == []


def test_buffer_coalesces_stats_but_keeps_other_events() -> None:
    buffer = EventBuffer(max_stats=100)
    for step in range(1, 1001):
        buffer.put(stats(step))
        if step == 10:
            buffer.put(Paused(10))
    drained = buffer.drain()
    kept = [e.global_step for e in drained if isinstance(e, StepStats)]
    assert len(kept) <= 100
    assert kept == sorted(kept) and kept[-1] == 1000  # the newest survive, in order
    assert any(isinstance(e, Paused) for e in drained)


def test_buffer_put_from_threads_loses_nothing() -> None:
    buffer = EventBuffer(max_stats=10**6)
    threads = [threading.Thread(target=lambda: [buffer.put(stats(i)) for i in range(1000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(buffer.drain()) == 4000


def test_thin_averages_into_buckets() -> None:
    xs = list(range(10))
    assert thin(xs, xs, 20) == (xs, xs)  # fewer points than buckets: unchanged
    tx, ty = thin(xs, [float(x) for x in xs], 5)
    assert tx == [0.5, 2.5, 4.5, 6.5, 8.5] and ty == tx
    assert thin([], [], 5) == ([], [])


def test_thin_and_ema_skip_non_finite_values() -> None:
    _, ty = thin([0, 1, 2, 3], [1.0, math.nan, 3.0, 3.0], 2)
    assert ty == [1.0, 3.0]
    smoothed = ema([math.nan, 2.0, math.inf, 4.0], alpha=0.5)
    assert math.isnan(smoothed[0]) and smoothed[1:] == [2.0, 2.0, 3.0]


def test_history_accepts_checkpoint_records_and_skips_odd_ones() -> None:
    history = History()
    history.add_records([
        {"event": "epoch", "step": 8, "g_loss": 1.0, "d_loss": 2.0, "d_real": 0.6, "d_fake": 0.4},
        {"event": "epoch", "step": 16},  # incomplete
    ])
    assert history.steps == [8.0] and history.version == 1


def test_progress_eta_uses_this_process_speed() -> None:
    p = Progress(epoch=1, epochs=2, batch=50, steps_per_epoch=100, global_step=150,
                 start_step=100, elapsed_s=10.0)
    assert p.steps_per_s() == 5.0
    assert p.eta_s() == 10.0 and p.epoch_eta_s() == 10.0
    assert Progress().eta_s() is None


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-:--:--"), (math.nan, "-:--:--"), (0, "0:00:00"), (3725.4, "1:02:05"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("mode", ["blocks", "braille", "ascii"])
@pytest.mark.parametrize(("width", "height"), [(43, 26), (35, 20), (100, 100), (5, 5)])
def test_best_size_fits_the_grid(mode: str, width: int, height: int) -> None:
    px = best_size(mode, width, height)
    assert MIN_PX <= px <= MAX_PX
    w, h = grid_size(16, mode, 4, shape=(px, px))
    if px > MIN_PX:
        assert w <= width and h <= height
        bigger = grid_size(16, mode, 4, shape=(px + 1, px + 1))
        assert px == MAX_PX or bigger[0] > width or bigger[1] > height


def test_resize_keeps_range_and_mean() -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(3, 28, 28)).astype(np.float32)
    small = resize(images, 10)
    assert small.shape == (3, 10, 10)
    assert small.min() >= 0 and small.max() <= 1
    np.testing.assert_allclose(small.mean(axis=(1, 2)), images.mean(axis=(1, 2)), rtol=1e-5)
    assert resize(images, 28) is not None and resize(images, 28).shape == (3, 28, 28)


@pytest.mark.skipif(not hasattr(__import__("select"), "poll"), reason="needs poll()")
def test_terminal_hung_up_sees_the_other_end_close() -> None:
    import os
    import pty

    from gan_tui.tui.app import terminal_hung_up

    master, slave = pty.openpty()
    try:
        assert not terminal_hung_up(slave)
        os.close(master)
        assert terminal_hung_up(slave, timeout_s=1.0)
    finally:
        os.close(slave)


def quality(fid: float = 12.345, coverage: float = 0.981, floor: float = 4.386) -> Quality:
    return Quality(epoch=2, global_step=471, fid=fid, score=7.814, coverage=coverage,
                   confidence=0.912, histogram=(0,) * 10, samples=1000, seconds=0.1,
                   floor=floor)


@pytest.mark.parametrize(("width", "text"), [
    (80, "FID 12.35 (real vs real 4.39) · IS 7.81 · coverage 0.981 · conf 0.91"),
    (60, "FID 12.35 (real vs real 4.39) · IS 7.81 · coverage 0.981"),
    (50, "FID 12.35 (real 4.4) · IS 7.81 · coverage 0.981"),
    (41, "FID 12.35 (real 4.4) · IS 7.81 · cov 0.98"),
])
def test_quality_line_says_as_much_as_fits_and_always_the_floor(width: int, text: str) -> None:
    assert quality_line(quality(), width).plain == text


def test_quality_line_of_a_run_scored_without_a_floor() -> None:
    # A journal or metrics.jsonl from before the floor existed: the FID alone.
    assert quality_line(quality(floor=0.0), 80).plain.startswith("FID 12.35 · IS 7.81")


def test_quality_line_colours_coverage_and_explains_its_absence() -> None:
    low = quality_line(quality(coverage=0.4), 80)
    assert [span.style for span in low.spans if low.plain[span.start:span.end] == "0.400"] == [
        "red"]
    assert quality_line(None, 80, "no quality scores for this run").plain == (
        "no quality scores for this run")


def test_class_bars_scale_to_the_largest_class_and_flag_missing_digits() -> None:
    bars = class_bars((0, 1, 50, 100, 25, 0, 60, 70, 80, 99))
    assert bars.plain == "0 1▁2▄3█4▂5 6▅7▆8▇9█"
    missing = {bars.plain[s.start:s.end] for s in bars.spans if s.style == "red"}
    assert missing == {"0", "5"}
    assert class_bars((3,) * 10, spaced=True).plain == "0█ 1█ 2█ 3█ 4█ 5█ 6█ 7█ 8█ 9█"


@pytest.mark.parametrize(("lo", "hi", "labels"), [
    (1, 531, ["100", "200", "300", "400", "500"]),
    (313, 12_520, ["5k", "10k"]),  # one style per axis, not "5,000 10k"
    (10_000, 12_000, ["10k", "11k", "12k"]),
    (0, 120_000, ["0", "50k", "100k"]),
])
def test_step_ticks_are_round_and_labelled_alike(lo: int, hi: int, labels: list[str]) -> None:
    ticks, shown = step_ticks(lo, hi, 4 if hi < 100_000 else 5)
    assert shown == labels and all(lo <= t <= hi for t in ticks)


def test_step_labels_keep_half_thousands() -> None:
    assert step_ticks(10_000, 11_000, 3)[1] == ["10k", "10.5k", "11k"]
