"""`gan-tui sample` through the real CLI, on a generator briefly trained on real digits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.cells import cell_len
from torch import nn

from gan_tui.checkpoint import FORMAT, capture_rng, restore_rng
from gan_tui.cli import main
from gan_tui.config import TrainConfig
from gan_tui.models import PRESETS, Discriminator, Generator, Preset
from gan_tui.presets import PRESET_INFO, PresetInfo
from gan_tui.render import fit_columns, grid_size
from gan_tui.train import Trainer

BRAILLE = range(0x2800, 0x2900)
WIDE = "400"  # $COLUMNS for tests that check the grid the user asked for, unshrunk
# Environment variables that change colour or width decisions; tests set their own.
COLOR_ENV = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLORTERM",
             "COLUMNS", "TERM")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: one epoch on 256 bundled MNIST digits (checkpoints/last.pt)."""
    run = tmp_path_factory.mktemp("run")
    rng = capture_rng()  # the Trainer seeds the global RNGs; give them back afterwards
    try:
        config = TrainConfig(limit=256, epochs=1, seed=0, device="cpu", run_dir=str(run),
                             stats_interval_ms=0)
        Trainer(config, lambda event: None).run()
    finally:
        restore_rng(rng)
    return run


@pytest.fixture(scope="module")
def ckpt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the seed script saves: torch.save(generator.state_dict(), ...)."""
    path = tmp_path_factory.mktemp("bare") / "generator.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        torch.save(Generator().state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour or width settings from the environment the tests run in."""
    for name in COLOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", WIDE)


def sample(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`gan-tui sample ARGS` in-process: (exit code, stdout, stderr). Output is not a TTY."""
    try:
        rc = main(["sample", *args])
    except SystemExit as exc:  # argparse usage errors exit from parse_args
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def lines_of(out: str) -> list[str]:
    assert out.endswith("\n")
    return out[:-1].split("\n")


def cells(out: str) -> tuple[int, int]:
    """(width, height) in cells of printed output; every line must be equally wide."""
    lines = lines_of(out)
    widths = {cell_len(line) for line in lines}
    assert len(widths) == 1, f"ragged grid: line widths {sorted(widths)}"
    return widths.pop(), len(lines)


# ------------------------------------------------------------- printed grids


@pytest.mark.parametrize("mode", ["blocks", "braille", "ascii"])
def test_n_and_cols_give_the_grid_size(capsys, ckpt: Path, mode: str) -> None:
    rc, out, err = sample(capsys, "--checkpoint", str(ckpt), "-n", "6", "--cols", "4",
                          "--render", mode, "--seed", "0", "--color", "never")
    assert rc == 0
    assert cells(out) == grid_size(6, mode, 4)  # 4 + 2 digits, the short row padded
    assert "\x1b" not in out
    assert ("note" in err) == (mode == "blocks")  # blocks without colour: a hint, not an error


def test_default_is_16_digits_in_4_columns_as_braille_when_piped(capsys, ckpt: Path) -> None:
    rc, out, err = sample(capsys, "--checkpoint", str(ckpt), "--seed", "0")
    assert (rc, err) == (0, "")
    assert cells(out) == grid_size(16, "braille", 4)
    assert all(ord(c) in BRAILLE for c in out if c not in " \n")


def test_grid_shrinks_to_the_width_instead_of_wrapping(capsys, monkeypatch, ckpt) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    rc, out, _ = sample(capsys, "--checkpoint", str(ckpt), "-n", "16", "--cols", "8",
                        "--render", "braille", "--seed", "0")
    assert rc == 0
    cols = fit_columns(16, "braille", 8, 50)
    assert cols == 3
    assert cells(out) == grid_size(16, "braille", cols)


def test_same_seed_same_digits_other_seed_other_digits(capsys, ckpt: Path) -> None:
    def grid(seed: str) -> str:
        rc, out, _ = sample(capsys, "--checkpoint", str(ckpt), "--render", "ascii",
                            "--seed", seed)
        assert rc == 0
        return out

    first = grid("3")
    assert grid("3") == first
    assert grid("4") != first


def test_bare_seed_state_dict(capsys, bare: Path) -> None:
    rc, out, err = sample(capsys, "--checkpoint", str(bare), "-n", "2", "--render", "ascii")
    assert (rc, err) == (0, "")
    assert cells(out) == grid_size(2, "ascii", 2)


def test_latest_and_run_folder(capsys, monkeypatch, tmp_path: Path, run_dir: Path) -> None:
    target = tmp_path / "runs" / "x" / "checkpoints" / "last.pt"
    target.parent.mkdir(parents=True)
    shutil.copyfile(run_dir / "checkpoints" / "last.pt", target)
    monkeypatch.chdir(tmp_path)
    expected = grid_size(4, "ascii", 2)
    for args in (["--checkpoint", "latest"], [], ["--checkpoint", "runs/x"]):
        rc, out, err = sample(capsys, *args, "-n", "4", "--render", "ascii", "--seed", "1")
        assert (rc, err) == (0, ""), args
        assert cells(out) == expected, args


# -------------------------------------------------------------------- --out


def test_out_png_is_a_torchvision_grid(capsys, ckpt: Path, tmp_path: Path) -> None:
    path = tmp_path / "new" / "grid.png"  # missing folders are made
    rc, out, err = sample(capsys, "--checkpoint", str(ckpt), "-n", "10", "--cols", "4",
                          "--out", str(path))
    assert (rc, err) == (0, "")
    assert len(lines_of(out)) == 1 and str(path) in out  # a confirmation, no grid
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (4 * 30 + 2, 3 * 30 + 2)  # 28 px digits, 2 px padding


def test_out_npy_in_batches(capsys, ckpt: Path, tmp_path: Path) -> None:
    big, small = tmp_path / "big.npy", tmp_path / "small.npy"
    for n, path in (("2000", big), ("3", small)):
        rc, out, err = sample(capsys, "--checkpoint", str(ckpt), "-n", n, "--seed", "5",
                              "--out", str(path))
        assert (rc, err) == (0, "")
        assert out.count("\n") == 1 and f"wrote {n} digits" in out
    images = np.load(big)
    assert images.dtype == np.float32 and images.shape == (2000, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    # Every digit its own noise, across the 1,000-digit batch boundary too.
    assert not np.allclose(images[0], images[1]) and not np.allclose(images[999], images[1000])
    # Eval mode and whole noise blocks: -n 3 gives the first 3 digits of -n 2000.
    np.testing.assert_allclose(np.load(small), images[:3], atol=1e-5)


# ------------------------------------------------------- conditional models


class LabelEcho(nn.Module):
    """A stand-in conditional generator: each image is one grey level set by its label."""

    def __init__(self, latent_dim: int = 100) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert labels.dtype == torch.long and len(labels) == len(z)
        level = labels.float() / 9 * 2 - 1
        return (level * self.gain).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)


@pytest.fixture
def conditional(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A gan-tui checkpoint of a conditional preset, registered only for this test."""
    preset = Preset("echo", "test double", LabelEcho, Discriminator, conditional=True)
    monkeypatch.setitem(PRESETS, "echo", preset)
    monkeypatch.setitem(PRESET_INFO, "echo", PresetInfo("echo", "test double", conditional=True))
    path = tmp_path / "echo.pt"
    torch.save({"format": FORMAT, "config": TrainConfig(preset="echo").to_dict(),
                "generator": LabelEcho().state_dict()}, path)
    return path


def test_conditional_digit_and_captions(capsys, conditional: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "sevens.npy"
    rc, _, _ = sample(capsys, "--checkpoint", str(conditional), "-n", "5", "--digit", "7",
                      "--out", str(out_file))
    assert rc == 0
    np.testing.assert_allclose(np.load(out_file), 7 / 9 * 2 - 1, atol=1e-6)

    rc, out, err = sample(capsys, "--checkpoint", str(conditional), "-n", "12", "--cols", "6",
                          "--render", "braille")
    assert (rc, err) == (0, "")
    assert cells(out) == grid_size(12, "braille", 6, captions=True)
    words = [line.split() for line in lines_of(out)]
    caption_rows = [w for w in words if w and all(word.isdigit() for word in w)]
    assert caption_rows == [list("012345"), list("678901")]  # classes cycle 0-9


# ------------------------------------------------------------------- errors


C = ["--checkpoint", "{ckpt}"]
# name -> (arguments, with {ckpt} the trained checkpoint and {tmp} a scratch folder; the
# words the one-line message must hold)
ERRORS: dict[str, tuple[list[str], str]] = {
    "missing file": (["--checkpoint", "{tmp}/nope.pt"], "no such checkpoint file"),
    "not torch": (["--checkpoint", "{tmp}/garbage.pt"], "not a gan-tui checkpoint"),
    "empty file": (["--checkpoint", "{tmp}/empty.pt"], "empty"),
    "other weights": (["--checkpoint", "{tmp}/alien.pt"], "mean.0.weight"),
    "latest, no runs": (["--checkpoint", "latest"], "train first"),
    "out suffix": ([*C, "--out", "{tmp}/x.jpg"], "must end in .png or .npy"),
    "out unwritable": ([*C, "--out", "{tmp}/a_file/x.npy"], "cannot write"),
    "n zero": ([*C, "-n", "0"], "at least 1"),
    "n negative": ([*C, "-n", "-3"], "at least 1"),
    "n text": ([*C, "-n", "many"], "not a whole number"),
    "cols zero": ([*C, "--cols", "0"], "at least 1"),
    "digit 10": ([*C, "--digit", "10"], "0-9"),
    "digit -1": ([*C, "--digit", "-1"], "0-9"),
    "digit unconditional": ([*C, "--digit", "3"], "needs a conditional model"),
    "seed negative": ([*C, "--seed", "-1"], "--seed"),
}


def make_bad_files(tmp: Path) -> None:
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all\n" * 10)
    (tmp / "empty.pt").write_bytes(b"")
    torch.save({"weight": torch.zeros(2)}, tmp / "alien.pt")
    (tmp / "a_file").write_text("a file, not a folder")


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_are_one_line(capsys, monkeypatch, ckpt: Path, tmp_path: Path, name: str) -> None:
    template, message = ERRORS[name]
    make_bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # no runs/ here, for `latest`
    rc, out, err = sample(capsys, *(a.format(ckpt=ckpt, tmp=tmp_path) for a in template))
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("gan-tui"), err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------- as a separate process


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in COLOR_ENV}
    return {**env, "COLUMNS": WIDE, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def processes(ckpt: Path, tmp_path_factory) -> Iterator[dict[str, tuple[int, str, str]]]:
    """Run each case as `python -m gan_tui sample ...` at once (torch imports are slow)."""
    base = [sys.executable, "-m", "gan_tui", "sample", "--checkpoint", str(ckpt), "--seed", "0"]
    cases = {
        "piped": (base, _env()),
        "always": ([*base, "--color", "always", "--render", "blocks"],
                   _env(NO_COLOR="1", TERM="xterm-256color")),
        "always, dumb": ([*base, "--color", "always", "--render", "blocks"], _env(TERM="dumb")),
        "missing": ([*base[:4], "--checkpoint", str(ckpt) + ".nope"], _env()),
    }
    procs = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, (cmd, env) in cases.items()}
    # The reader of a pipe leaves early, as `| head -c 100` does.
    head = subprocess.Popen([*base, "-n", "800", "--render", "braille"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert head.stdout is not None and head.stderr is not None
    head.stdout.read(100)
    head.stdout.close()
    results = {}
    for name, p in procs.items():
        # communicate(), not wait(): a full pipe would block a child that is still writing.
        out, err = p.communicate(timeout=120)
        results[name] = (p.returncode, out, err)
    results["head"] = (head.wait(timeout=120), "", head.stderr.read().decode())
    head.stderr.close()
    yield results


def test_piped_output_has_no_escape_codes(processes) -> None:
    rc, out, err = processes["piped"]
    assert (rc, err) == (0, "")
    assert "\x1b" not in out
    assert cells(out) == grid_size(16, "braille", 4)


@pytest.mark.parametrize("case, codes", [("always", "\x1b[38;5;"), ("always, dumb", "\x1b[3")])
def test_color_always_colours_a_pipe(processes, case: str, codes: str) -> None:
    rc, out, err = processes[case]
    assert (rc, err) == (0, "")
    assert codes in out  # 256 colours from TERM (over NO_COLOR); 16 even for TERM=dumb


def test_process_error_is_one_line(processes) -> None:
    rc, out, err = processes["missing"]
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "no such checkpoint file" in err and "Traceback" not in err


def test_closed_pipe_stops_quietly(processes) -> None:
    rc, _, err = processes["head"]
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert rc in (0, 1)  # rich exits 1 on EPIPE; 0 where the OS let the writes through
