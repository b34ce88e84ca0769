"""Fuzz (issue 6): the IDX reader, the checkpoint loader and the command line take
arbitrary input and answer with their own one-line error, never another exception.

Example counts are modest so the suite stays quick on two shared cores; raise them
locally with GAN_TUI_FUZZ_EXAMPLES=5000.
"""

import argparse
import contextlib
import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gan_tui import checkpoint as ckpt
from gan_tui.cli import _with_default_command, build_parser, config_from_args, main
from gan_tui.config import TrainConfig
from gan_tui.data import parse_idx, read_idx
from gan_tui.errors import CheckpointError, DataError, GanTuiError

# The fixtures these tests take are set up once per test, not per example, on purpose.
FUZZ = settings(max_examples=int(os.environ.get("GAN_TUI_FUZZ_EXAMPLES", "150")),
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------ IDX files


def header_dims(raw: bytes) -> tuple[int, ...]:
    ndim = raw[3]
    return tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))


def check_idx(raw: bytes) -> None:
    """parse_idx raises DataError (one line, naming the file) or returns exactly the
    array the header describes."""
    try:
        array = parse_idx(raw, name="fuzz.idx")
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.idx: ")
        return
    dims = header_dims(raw)
    assert array.shape == dims and array.dtype == np.uint8
    assert array.tobytes() == raw[4 + 4 * len(dims):]


@FUZZ
@given(st.binary(max_size=300))
@example(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4))  # 2**64 bytes: wraps int64
@example(bytes([0, 0, 8, 1]) + struct.pack(">I", 0))  # an empty label file
def test_parse_idx_on_arbitrary_bytes(raw):
    check_idx(raw)


@st.composite
def idx_files(draw) -> bytes:
    """Valid IDX bytes: labels (1 dim) or images (3 dims) of small random sizes."""
    ndim = draw(st.sampled_from([1, 3]))
    dims = draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim))
    payload = draw(st.binary(min_size=int(np.prod(dims)), max_size=int(np.prod(dims))))
    return bytes([0, 0, 8, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + payload


@FUZZ
@given(idx_files(), st.data())
def test_parse_idx_on_mutated_valid_files(valid, data):
    check_idx(valid)  # the unmutated file parses
    raw = bytearray(valid)
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "dim"]))
    if mutation == "flip":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    elif mutation == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    elif mutation == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=20))
    else:  # a dimension becomes anything a 32-bit field can hold
        at = 4 + 4 * data.draw(st.integers(0, raw[3] - 1))
        raw[at:at + 4] = struct.pack(">I", data.draw(st.integers(0, 2**32 - 1)))
    check_idx(bytes(raw))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(idx_files(), st.integers(0, 10_000), st.integers(1, 255), st.integers(0, 10_000))
def test_read_idx_on_damaged_gzip_files(workdir, valid, at, flip, cut):
    raw = bytearray(gzip.compress(valid))
    raw[at % len(raw)] ^= flip
    path = workdir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(raw[2:])[: max(cut, 1)])  # still looks like gzip
    try:
        read_idx(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


# ----------------------------------------------------------- checkpoint files


@pytest.fixture(scope="module")
def small_checkpoint_bytes() -> bytes:
    """A small file in the checkpoint format (real ones are megabytes: slow to fuzz)."""
    buffer = io.BytesIO()
    torch.save({"format": ckpt.FORMAT, "config": TrainConfig().to_dict(),
                "generator": {"w": torch.arange(6.0)}, "discriminator": {}, "opt_g": {},
                "opt_d": {}, "epoch": 1, "global_step": 8, "fixed_noise": torch.zeros(2, 3),
                "rng": {}, "history": [{"g_loss": 1.0}]}, buffer)
    return buffer.getvalue()


def check_checkpoint(path: Path) -> None:
    try:
        state = ckpt.load_checkpoint(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"{path}")
        return
    assert state["format"] == ckpt.FORMAT  # a flipped byte in tensor data still loads


@FUZZ
@given(st.binary(max_size=2000))
def test_load_checkpoint_on_arbitrary_bytes(workdir, raw):
    path = workdir / "arbitrary.pt"
    path.write_bytes(raw)
    check_checkpoint(path)


@FUZZ
@given(st.integers(0, 10**6), st.integers(1, 255), st.integers(0, 10**6),
       st.sampled_from(["flip", "truncate", "both"]))
def test_load_checkpoint_on_damaged_files(workdir, small_checkpoint_bytes, at, flip, cut, how):
    raw = bytearray(small_checkpoint_bytes)
    if how in ("flip", "both"):
        raw[at % len(raw)] ^= flip
    if how in ("truncate", "both"):
        del raw[cut % len(raw):]
    path = workdir / "damaged.pt"
    path.write_bytes(bytes(raw))
    check_checkpoint(path)


# ---------------------------------------------------------------- command line


def _parser_parts() -> tuple[argparse.ArgumentParser, list[str], list[str]]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = sorted({option for sub in subparsers.choices.values() for action in sub._actions
                    for option in action.option_strings})
    return parser, list(subparsers.choices), flags


PARSER, COMMANDS, FLAGS = _parser_parts()
WORDS = ["nan", "inf", "-inf", "1e309", "1e-320", "0x10", "", "-", "--", "latest", "seed",
         "dcgan", "cpu", "cuda", "mps", "tpu", "test", "train", "all", "bundled", "mnist",
         "/no/such/file", ".", "..", "-1", "0", "1", "2", "9223372036854775807",
         "18446744073709551616", "--frobnicate", "-x", "--lr", "--e"]
# What argv can hold: any text but NUL (and no lone surrogates but surrogateescape's).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
TOKENS = st.one_of(st.sampled_from(FLAGS), st.sampled_from(COMMANDS), st.sampled_from(WORDS),
                   st.integers(-(10**25), 10**25).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), TEXT)
ARGVS = st.lists(TOKENS, max_size=10)


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    """No runs/ here: `latest` finds nothing, and nothing can be trained on by accident."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_one_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("gan-tui"), err
    assert "Traceback" not in err


@FUZZ
@given(ARGVS)
@example(["--seed", "18446744073709551616"])
@example(["--lr-g", "inf"])
@example(["--resume", "."])
def test_train_arguments_parse_into_a_valid_config_or_one_line(empty_cwd, argv):
    """Parse and build the config as `gan-tui train` does, without training."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = PARSER.parse_args(_with_default_command(argv, COMMANDS))
        except SystemExit as exc:
            if exc.code not in (0, None):  # --help and --version exit 0
                assert exc.code == 2
                assert_one_line(err.getvalue())
            return
    if args.command != "train":
        return
    try:
        config, _ = config_from_args(args)
    except GanTuiError as exc:
        assert "\n" not in str(exc)
        return
    assert config.validate() is config  # whatever got through is a sound config


@FUZZ
@given(ARGVS)
@example(["sample", "--checkpoint", "."])
@example(["sample", "-n", "0"])
def test_main_answers_any_argv_in_one_line(empty_cwd, capsys, argv):
    """The whole CLI, `sample` included; a trailing `--epochs 0` keeps `train` from training
    (and any other command rejects it as an unknown argument)."""
    capsys.readouterr()
    try:
        rc = main([*argv, "--epochs", "0"])
    except SystemExit as exc:
        rc = exc.code
        if rc in (0, None):
            return
        assert rc == 2
    captured = capsys.readouterr()
    assert rc in (1, 2), (rc, captured)
    assert_one_line(captured.err)
