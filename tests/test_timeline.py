"""The story of a run (issue 16): every epoch's samples in one file, and a timelapse."""

from __future__ import annotations

import numpy as np
from PIL import Image

from gan_tui import timeline
from gan_tui.events import Samples
from tests.conftest import run_cli, train
from tests.test_tui import run_async


def test_every_epoch_lands_in_the_timeline_as_shown(small_config):
    trainer, events = train(small_config(epochs=3, quality_samples=0))
    epochs = timeline.read(timeline.path_in(trainer.run_dir))
    assert list(epochs) == [1, 2, 3]
    shown = [s for s in events.of(Samples) if s.fixed]
    for epoch, samples in zip(epochs.values(), shown, strict=True):
        assert np.abs(epoch - samples.images).max() <= 1 / 127.5  # uint8: 1 grey level


def test_a_torn_record_is_left_out_and_a_repeated_epoch_keeps_the_newest(tmp_path):
    path = tmp_path / "timeline.bin"
    first = np.full((16, 28, 28), -1.0, np.float32)
    again = np.full((16, 28, 28), 1.0, np.float32)
    timeline.append(path, 1, first)
    timeline.append(path, 2, first)
    timeline.append(path, 2, again)  # a resumed run repeats epoch 2
    with open(path, "ab") as out:
        out.write(b"\0\0\0\3" + b"\x80" * 100)  # killed while writing epoch 3
    epochs = timeline.read(path)
    assert list(epochs) == [1, 2] and epochs[2].min() == 1.0
    assert timeline.read(tmp_path / "missing.bin") == {}


def test_timelapse_writes_one_frame_per_epoch(tmp_path):
    run = tmp_path / "runs" / "t"
    assert run_cli("train", "--headless", "--limit", "256", "--epochs", "3",
                   "--quality-samples", "0", "--run-dir", str(run), cwd=tmp_path).returncode == 0
    out = run_cli("timelapse", "t", "--out", "evolution.gif", "--fps", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "3 epochs (1-3)" in out.stdout
    with Image.open(tmp_path / "evolution.gif") as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 500
    sheet = run_cli("timelapse", str(run), "--out", "sheet.png", "--scale", "1", cwd=tmp_path)
    assert sheet.returncode == 0 and (tmp_path / "sheet.png").exists()
    bad = run_cli("timelapse", "t", "--out", "x.jpg", cwd=tmp_path)
    assert bad.returncode == 2 and "must end in .gif" in bad.stderr
    none = run_cli("timelapse", "nope", cwd=tmp_path)
    assert none.returncode == 1 and "no run 'nope'" in none.stderr


@run_async
async def test_left_right_home_end_step_through_past_epochs(tmp_path):
    """Epochs 1-2 happened before this viewer came (they are only in the timeline file);
    epoch 3 arrives live. History stays put when epoch 4 arrives; end goes live."""
    from gan_tui.config import TrainConfig
    from gan_tui.events import Started
    from gan_tui.tui.app import GanTuiApp
    from gan_tui.tui.widgets import DigitsPanel

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    for epoch in (1, 2):
        timeline.append(timeline.path_in(run), epoch, np.full((16, 28, 28), -1.0, np.float32))

    def grid(epoch: int) -> Samples:
        return Samples(epoch=epoch - 1, global_step=epoch * 4,
                       images=np.zeros((16, 28, 28), np.float32), fixed=True)

    app = GanTuiApp(TrainConfig(), autostart=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.connection.feed(
            Started(run_dir=str(run), run_name="run", preset="seed", device="cpu",
                    dataset="d", num_images=256, steps_per_epoch=4, epochs=9, start_epoch=2,
                    global_step=8, resumed_from=None, config={}), grid(3))
        app.dashboard.poll_events()
        digits = app.query_one(DigitsPanel)
        assert digits.caption == "epoch 3 · fixed noise"
        await pilot.press("left")
        assert digits.caption.startswith("epoch 3 of 3 · history")
        await pilot.press("left")
        assert digits.caption.startswith("epoch 2 of 3 · history")
        await pilot.press("home")
        assert digits.caption.startswith("epoch 1 of 3")
        app.connection.feed(grid(4))
        app.dashboard.poll_events()
        assert digits.caption.startswith("epoch 1 of 4")  # no jump back to live
        await pilot.press("right")
        assert digits.caption.startswith("epoch 2 of 4")
        await pilot.press("end")
        assert digits.caption == "epoch 4 · fixed noise"
        await pilot.press("right")  # already live: stays
        assert digits.caption == "epoch 4 · fixed noise"
