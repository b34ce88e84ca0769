"""Atomic writes survive a kill -9; loads are safe and fail in one line."""

import os
import subprocess
import sys
import time

import pytest
import torch

from gan_tui import checkpoint as ckpt
from gan_tui.config import TrainConfig
from gan_tui.errors import CheckpointError, first_line

WRITER = """
import sys, torch
from gan_tui.checkpoint import save_atomic
state = {"payload": torch.ones(12_000_000)}  # ~48 MB: each write takes a while
while True:
    save_atomic(state, sys.argv[1])
"""


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_kill_during_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"payload": torch.arange(5.0)}, path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        wait_for(lambda: list(tmp_path.glob(".last.pt.*.tmp")), what="a temp file")
        writer.kill()  # SIGKILL: no cleanup code runs
        writer.wait(timeout=30)
    finally:
        writer.kill()
    state = ckpt.load_file(path)  # old or a complete new one, never a torn file
    assert state["payload"].shape in ((5,), (12_000_000,))
    leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
    assert leftovers, "the kill should have left the temp file behind"
    assert ckpt.remove_stale_temps(tmp_path) == leftovers
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_atomic({"x": torch.zeros(1)}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch raises a pickling error type
        ckpt.save_atomic({"x": lambda: 0}, path)
    assert torch.equal(ckpt.load_file(path)["x"], torch.zeros(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty"),
    (b"\x00\x01 random bytes that are not a checkpoint" * 10, "not"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=problem) as info:
        ckpt.load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "t.pt"
    ckpt.save_atomic({"x": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(path)


def test_other_programs_files_are_refused(tmp_path):
    plain = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), plain)
    with pytest.raises(CheckpointError, match="not a gan-tui checkpoint"):
        ckpt.load_checkpoint(plain)


def test_latest_picks_the_newest_run(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints/last.pt"):
        ckpt.latest_checkpoint(tmp_path)
    for age, name in ((100, "b"), (200, "a")):  # "b" written after "a"
        path = ckpt.save_atomic({"x": torch.zeros(1)}, tmp_path / name / "checkpoints" / "last.pt")
        os.utime(path, (time.time() - age, time.time() - age))
    assert ckpt.find_checkpoint("latest", tmp_path).parent.parent.name == "b"
    assert ckpt.run_dir_of(tmp_path / "a" / "checkpoints" / "last.pt") == tmp_path / "a"


def test_settings_of_older_checkpoints_still_load():
    """on_divergence was a setting once; configs saved with it load without it."""
    saved = {**TrainConfig(seed=3).to_dict(), "on_divergence": "pause"}
    assert TrainConfig.from_dict(saved) == TrainConfig(seed=3)
    assert "on_divergence" not in TrainConfig().to_dict()


def test_a_long_torch_message_is_cut_at_a_word_not_mid_word():
    text = first_line(RuntimeError("magic number corrupt " * 20))
    assert text.endswith("...") and len(text) <= 163
    assert set(text.removesuffix("...").split()) <= {"magic", "number", "corrupt"}
    assert first_line(RuntimeError("short\nsecond line")) == "short"
