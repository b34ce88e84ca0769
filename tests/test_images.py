"""Your own images (issue 16): folders of ordinary image files and NumPy arrays as data.

The folders are real PNGs made from the bundled digits, with the mess a real folder
has: corrupt files, files that are not images, an empty one, and drawings that are
dark on light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan_tui.data import load_bundled, load_data_path, load_digits
from gan_tui.data.images import load_image_folder
from gan_tui.errors import DataError
from gan_tui.events import Sample, Samples, Started
from tests.conftest import Recorder, run_cli, train

PER_CLASS = 12


@pytest.fixture(scope="module")
def digits():
    return load_bundled()


def make_folder(root: Path, digits, classes: int = 10, dark_on_light: int = 3) -> Path:
    """class subfolders of PNGs; in "3" some are dark on light; plus junk."""
    folder = root / "shapes"
    for label in range(classes):
        sub = folder / f"class_{label}"
        sub.mkdir(parents=True)
        picks = np.flatnonzero(digits.labels == label % 10)[:PER_CLASS]
        for n, index in enumerate(picks):
            pixels = digits.images[index]
            if label == 3 and n < dark_on_light:
                pixels = 255 - pixels  # drawn in ink on paper
            Image.fromarray(pixels).save(sub / f"{n:03d}.png")
    (folder / "class_0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / f"class_{1 % classes}" / "notes.txt").write_text("not an image")
    (folder / f"class_{2 % classes}" / "empty.jpg").write_bytes(b"")
    return folder


def test_a_folder_of_images_becomes_labelled_digits(tmp_path, digits):
    folder = make_folder(tmp_path, digits)
    got = load_image_folder(folder, "auto", tmp_path / "cache")
    assert got.images.shape == (10 * PER_CLASS, 28, 28) and got.images.dtype == np.uint8
    assert got.skipped == 3  # the broken PNG, the text file, the empty file
    assert got.classes == tuple(f"class_{i}" for i in range(10))
    assert list(np.bincount(got.labels)) == [PER_CLASS] * 10
    # 28 x 28 images come through unchanged; dark-on-light ones are turned back
    threes = np.flatnonzero(digits.labels == 3)[:PER_CLASS]
    assert np.array_equal(got.images[got.labels == 3], digits.images[threes])


def test_images_keep_their_aspect_and_are_centred(tmp_path):
    bars = tmp_path / "bars"
    bars.mkdir()
    Image.fromarray(np.full((10, 40), 200, np.uint8)).save(bars / "wide.bmp")
    (bar,) = load_image_folder(bars, "no", tmp_path / "cache").images
    rows = np.flatnonzero(bar.max(axis=1) > 100)
    assert len(rows) == 7  # 40 x 10 scaled to 28 x 7: the aspect kept
    assert rows[0] == 10 and rows[-1] == 16  # centred
    strokes = tmp_path / "strokes"
    strokes.mkdir()
    sheet = Image.new("RGBA", (30, 30), (0, 0, 0, 0))  # a transparent sheet
    sheet.paste((0, 0, 0, 255), (10, 0, 20, 30))  # with a black stroke on it
    sheet.save(strokes / "stroke.png")
    got = load_image_folder(strokes, "auto", tmp_path / "cache")
    assert got.classes == () and got.skipped == 0
    (stroke,) = got.images  # transparent is paper; ink on paper turns light on dark
    assert stroke[:, 14].min() > 200 and stroke[:, 1].max() < 30


def test_the_cache_is_reused_and_a_changed_folder_converted_again(tmp_path, digits):
    folder = make_folder(tmp_path, digits, classes=2)
    cache = tmp_path / "cache"
    first = load_image_folder(folder, "auto", cache)
    (entry,) = cache.iterdir()
    stamp = entry.stat().st_mtime_ns
    again = load_image_folder(folder, "auto", cache)
    assert np.array_equal(first.images, again.images)
    assert entry.stat().st_mtime_ns == stamp and len(list(cache.iterdir())) == 1  # reused
    Image.fromarray(digits.images[0]).save(folder / "class_1" / "extra.png")
    grown = load_image_folder(folder, "auto", cache)
    assert len(grown.images) == len(first.images) + 1 and len(list(cache.iterdir())) == 2
    assert len(load_image_folder(folder, "no", cache).images) == len(grown.images)


def test_folders_that_cannot_work_say_so_in_one_line(tmp_path, digits):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("hello")
    with pytest.raises(DataError, match="none of its 1 files is an image"):
        load_image_folder(junk, "auto", tmp_path / "cache")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(digits.images[0]).save(flat / "one.png")
    out = run_cli("train", "--headless", "--preset", "cgan", "--data-dir", str(flat),
                  "--epochs", "1", "--run-dir", str(tmp_path / "r1"), cwd=tmp_path,
                  env={"GAN_TUI_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 1 and "has no classes" in out.stderr
    many = make_folder(tmp_path / "many", digits, classes=11)
    out = run_cli("train", "--headless", "--preset", "cgan", "--data-dir", str(many),
                  "--epochs", "1", "--run-dir", str(tmp_path / "r2"), cwd=tmp_path,
                  env={"GAN_TUI_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 1 and "has 11 classes" in out.stderr
    assert "Traceback" not in out.stderr


def test_cgan_trains_on_a_folder_and_draws_the_class_asked_for(tmp_path, digits,
                                                               small_config, monkeypatch):
    monkeypatch.setenv("GAN_TUI_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_folder(tmp_path, digits)

    def ask_for_class_7(event):
        if isinstance(event, Started):
            trainer.send(Sample(count=8, digit=7))

    recorder = Recorder(ask_for_class_7)
    config = small_config(preset="cgan", data_dir=str(folder), epochs=1, limit=None,
                          quality_samples=0, batch_size=32)
    from gan_tui.train import Trainer

    trainer = Trainer(config, recorder)
    trainer.run()
    started = recorder.of(Started)[0]
    assert started.num_images == 10 * PER_CLASS and "3 files skipped" in started.dataset
    fresh = [s for s in recorder.of(Samples) if not s.fixed]
    assert fresh and fresh[0].labels == (7,) * 8


def test_a_class_the_folder_lacks_is_a_notice_not_untrained_samples(tmp_path, digits,
                                                                   small_config, monkeypatch):
    monkeypatch.setenv("GAN_TUI_CACHE_DIR", str(tmp_path / "cache"))
    folder = make_folder(tmp_path, digits, classes=3)

    def ask(event):
        if isinstance(event, Started):
            trainer.send(Sample(count=4, digit=7))  # key 7: no such class here
            trainer.send(Sample(count=4, digit=2))

    recorder = Recorder(ask)
    from gan_tui.train import Trainer

    trainer = Trainer(small_config(preset="cgan", data_dir=str(folder), epochs=1, limit=None,
                                   quality_samples=0, batch_size=32), recorder)
    trainer.run()
    fresh = [s for s in recorder.of(Samples) if not s.fixed]
    assert [s.labels for s in fresh] == [(2,) * 4]
    errors = [e.message for e in recorder.events if type(e).__name__ == "Error"]
    assert "no class 7 in this run's data (it has 0, 1, 2)" in errors


def test_arrays_by_path(tmp_path, digits, small_config):
    floats = digits.images[:300].astype(np.float32) / 127.5 - 1  # [-1, 1]
    np.save(tmp_path / "d.npy", floats)
    got = load_data_path(tmp_path / "d.npy", "test")
    assert not got.labelled and np.abs(got.images.astype(int) - digits.images[:300]).max() <= 1
    np.savez(tmp_path / "d.npz", x=digits.images[:300] / 255.0, y=digits.labels[:300])
    labelled = load_digits(data_dir=str(tmp_path / "d.npz"))
    assert labelled.labelled and np.array_equal(labelled.labels, digits.labels[:300])
    train(small_config(data_dir=str(tmp_path / "d.npz"), limit=None, epochs=1,
                       quality_samples=0))
    np.save(tmp_path / "bad.npy", np.zeros((5, 32, 32)))
    with pytest.raises(DataError, match="must be N x 28 x 28"):
        load_data_path(tmp_path / "bad.npy", "test")
    np.save(tmp_path / "loud.npy", np.full((5, 28, 28), 7.5))
    with pytest.raises(DataError, match="run from 7.5 to 7.5"):
        load_data_path(tmp_path / "loud.npy", "test")


def test_invert_takes_auto_yes_or_no(tmp_path):
    out = run_cli("train", "--headless", "--invert", "sideways", cwd=tmp_path)
    assert out.returncode == 2 and "--invert" in out.stderr
