"""Never lose a run (issue 6): interruptions, bad files, full disks, divergence.

Real runs on real digits, real files and real processes, no mocks: a full disk is a
real failed write in a child process whose file size limit (RLIMIT_FSIZE) is below a
checkpoint's size; divergence is real NaN, from poisoned data or an absurd learning
rate; the malicious checkpoint carries a live payload (shown to run when loaded
unsafely) that would create a file.
"""

import hashlib
import io
import json
import os
import pickle
import random
import re
import resource
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from gan_tui import checkpoint as ckpt
from gan_tui.cli import main
from gan_tui.config import TrainConfig
from gan_tui.events import (
    CheckpointSaved,
    Diverged,
    Error,
    Finished,
    Paused,
    Resume,
    Save,
    StepStats,
    Stop,
)
from gan_tui.headless import EXIT_DIVERGED, HeadlessSink
from gan_tui.metrics import drop_records_after, read_metrics
from gan_tui.models import PRESETS
from gan_tui.train import Trainer
from gan_tui.train.losses import FiniteBCELoss
from tests.conftest import REPO, Recorder, run_cli, train
from tests.test_checkpoint import wait_for
from tests.test_cli import read_until
from tests.test_data import idx_bytes, write_split

# Per-epoch quality scoring, where this build has it, is not what these tests are about.
QUIET = {"quality_samples": 0} if "quality_samples" in TrainConfig.__dataclass_fields__ else {}
QUIET_FLAGS = ("--quality-samples", "0") if QUIET else ()
SMALL = ("--headless", "--limit", "512", "--seed", "0", "--device", "cpu", *QUIET_FLAGS)
CHILD_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
NAN = float("nan")


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temps(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob(f".*{ckpt.TEMP_SUFFIX}"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gan-tui: error: "), err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------ 1. kill -9


PADDED_WRITER = """
import sys, torch
from gan_tui.checkpoint import load_checkpoint, save_atomic
state = load_checkpoint(sys.argv[1])
state["padding"] = torch.ones(12_000_000)  # ~48 MB: each write takes a while
while True:
    save_atomic(state, sys.argv[1])
"""


def test_a_new_run_clears_the_temp_a_kill_9_left_and_resumes(small_config):
    first, _ = train(small_config(epochs=1, **QUIET))
    last = first.checkpoint_dir / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", PADDED_WRITER, str(last)], cwd=REPO,
                              env=CHILD_ENV)
    try:
        wait_for(lambda: temps(first.checkpoint_dir), what="a temp file")
        writer.kill()  # SIGKILL mid-write: no cleanup code runs
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert temps(first.checkpoint_dir), "the kill should have left its temp file"

    resumed = Trainer(small_config(epochs=2, **QUIET), Recorder(), resume=last)
    assert temps(first.checkpoint_dir) == []  # nothing left for the next run to trip on
    assert resumed.global_step == 8  # old or new last.pt: either is a whole checkpoint
    finished = resumed.run()
    assert (finished.reason, finished.global_step, finished.checkpoint_step) == (
        "completed", 16, 16)


def test_after_a_kill_mid_save_the_resumed_log_reads_as_one_run(small_config):
    """A kill -9 while epoch 2 was being saved: metrics.jsonl holds epoch 2 (and a torn
    line), last.pt still epoch 1. Dropping the records past last.pt's step, as a resume
    does first, leaves each epoch recorded once and the steps in order."""
    first, _ = train(small_config(epochs=1, log_every=2, **QUIET))
    last = first.checkpoint_dir / "last.pt"
    epoch_1 = last.read_bytes()
    train(small_config(epochs=2, log_every=2, **QUIET), resume=last)
    last.write_bytes(epoch_1)  # the epoch-2 save never landed
    log = first.run_dir / "metrics.jsonl"
    assert [r["epoch"] for r in _records(log, "epoch")] == [1, 2]
    with open(log, "a") as fh:
        fh.write('{"event": "step", "epoch": 3, "st')  # torn by the kill

    assert drop_records_after(log, 8) == 6  # 4 step records, epoch 2's record, torn line
    assert [r["step"] for r in read_metrics(log)] == [2, 4, 6, 8, 8]
    train(small_config(epochs=2, log_every=2, **QUIET), resume=last)
    assert [r["epoch"] for r in _records(log, "epoch")] == [1, 2]
    steps = [r["step"] for r in read_metrics(log)]
    assert steps == sorted(steps) and steps[-1] == 16
    assert sorted(p.name for p in first.run_dir.iterdir()) == [
        ".lock", "checkpoints", "config.json", "metrics.jsonl", "samples"]  # no temp left


def _records(log: Path, event: str) -> list[dict]:
    return [r for r in read_metrics(log) if r["event"] == event]


def test_dropping_records_keeps_what_it_cannot_judge_and_rewrites_only_when_needed(tmp_path):
    log = tmp_path / "metrics.jsonl"
    assert drop_records_after(log, 5) == 0 and not log.exists()
    lines = ['{"event": "step", "step": 4}', "not json", '{"note": "no step"}',
             '{"event": "epoch", "step": 5}']
    log.write_text("\n".join(lines) + "\n")
    before = log.stat()
    assert drop_records_after(log, 5) == 0
    assert log.stat().st_ino == before.st_ino  # untouched
    log.write_text("\n".join(lines) + '\n{"event": "step", "step": 6}\n{"step": 5}')
    assert drop_records_after(log, 5) == 1  # step 6 goes; the unterminated whole record stays
    assert log.read_text() == "\n".join([*lines, '{"step": 5}']) + "\n"


def test_under_nohup_a_hangup_does_not_stop_a_headless_run(tmp_path):
    """nohup starts a command with SIGHUP ignored; gan-tui must not undo that."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gan_tui", *SMALL, "--epochs", "200"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        read_until(proc.stdout, "Epoch: [0/200]")
        proc.send_signal(signal.SIGHUP)  # the SSH link drops
        read_until(proc.stdout, "Epoch: [1/200]")  # ...and training goes on
        proc.send_signal(signal.SIGTERM)  # a stop signal that is not ignored still saves
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Resume with: gan-tui train --resume " in out


# ------------------------------------------------------- 2. checkpoint files


class Payload:
    """Unpickling this runs `exec`, which creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    """A real gan-tui checkpoint of the seed preset (64 digits, not trained: fast)."""
    run = tmp_path_factory.mktemp("good")
    config = TrainConfig(limit=64, epochs=1, seed=0, device="cpu", run_dir=str(run), **QUIET)
    return Trainer(config, Recorder()).save("test")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, good_checkpoint) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    raw = good_checkpoint.read_bytes()
    contents = {
        "truncated.pt": raw[: len(raw) // 2],
        "random.pt": random.Random(0).randbytes(4096),
        "empty.pt": b"",
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    torch.save(torch.zeros(3), folder / "tensor.pt")  # another program's file
    torch.save({"weights": torch.zeros(3)}, folder / "state_dict.pt")  # a dict, not ours
    torch.save({"epochs": 3, "note": "hello"}, folder / "dict.pt")
    state = ckpt.load_checkpoint(good_checkpoint)
    torch.save({**state, "epoch": "three"}, folder / "damaged.pt")
    torch.save({**state, "config": {**state["config"], "preset": "no-such-preset"}},
               folder / "foreign.pt")  # e.g. a preset of a newer gan-tui
    return {path.name: path for path in folder.iterdir()}


NOT_OURS = "not a gan-tui checkpoint (no 'gan-tui/1' format tag)"
FILE_CASES = [
    # file, train --resume FILE says, sample --checkpoint FILE says (None: it works)
    ("truncated.pt", "truncated or corrupt file", "truncated or corrupt file"),
    ("random.pt", "not a gan-tui checkpoint (it is not a PyTorch file)",
     "not a gan-tui checkpoint (it is not a PyTorch file)"),
    ("empty.pt", "the file is empty", "the file is empty"),
    ("tensor.pt", NOT_OURS, "neither a gan-tui checkpoint nor a generator state dict"),
    ("state_dict.pt", NOT_OURS, "state dict has no 'mean.0.weight'"),
    ("dict.pt", NOT_OURS, "neither a gan-tui checkpoint nor a generator state dict"),
    ("damaged.pt", "damaged checkpoint (epoch of the wrong type)", None),
    ("foreign.pt", "its saved settings are not valid (unknown preset 'no-such-preset'",
     "its saved settings are not valid (unknown preset 'no-such-preset'"),
]


@pytest.mark.parametrize("command, name, says", [
    *[("train", name, train_says) for name, train_says, _ in FILE_CASES],
    *[("sample", name, sample_says) for name, _, sample_says in FILE_CASES if sample_says],
])
def test_bad_checkpoint_files_are_one_line_errors_naming_the_file(
        capsys, bad_files, command, name, says):
    path = bad_files[name]
    if command == "train":
        rc = main(["--headless", "--resume", str(path)])
    else:
        rc = main(["sample", "--checkpoint", str(path), "-n", "1", "--color", "never"])
    err = one_line_error(capsys)
    assert rc == 1
    assert err.startswith(f"gan-tui: error: {path}: "), err
    assert says in err


@pytest.mark.parametrize("command", ["train", "sample"])
@pytest.mark.parametrize("special, kind", [
    ("/dev/zero", "a character device"), ("/dev/urandom", "a character device")])
def test_a_device_as_checkpoint_is_not_a_regular_file(capsys, command, special, kind):
    if not Path(special).exists():
        pytest.skip(f"no {special} here")
    args = (["--headless", "--resume"] if command == "train" else ["sample", "--checkpoint"])
    rc = main([*args, special])
    assert rc == 1
    assert one_line_error(capsys) == (f"gan-tui: error: {special}: is {kind}, not a regular "
                                      "checkpoint file\n")


@pytest.mark.parametrize("command", ["train", "sample"])
def test_a_fifo_as_checkpoint_is_refused_without_opening_it(tmp_path, command):
    """Opening a FIFO with no writer would block: a real process shows it never does."""
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    args = (["--headless", "--resume"] if command == "train" else ["sample", "--checkpoint"])
    result = run_cli(*args, str(fifo), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f"gan-tui: error: {fifo}: is a FIFO (named pipe), not a regular "
                             "checkpoint file\n")


def test_a_huge_sparse_file_is_not_a_checkpoint_cleanly(capsys, tmp_path):
    sparse = tmp_path / "sparse.pt"
    with open(sparse, "wb") as fh:
        fh.truncate(8 * 2**30)  # 8 GiB of zeros that take no disk
    rc = main(["--headless", "--resume", str(sparse)])
    assert rc == 1
    assert one_line_error(capsys) == (f"gan-tui: error: {sparse}: not a gan-tui checkpoint "
                                      "(it is not a PyTorch file)\n")


def test_a_file_as_data_dir_or_run_dir_says_it_is_a_file(capsys, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder")
    rc = main([*SMALL, "--epochs", "1", "--data-dir", str(afile),
               "--run-dir", str(tmp_path / "run")])
    assert rc == 1
    assert one_line_error(capsys) == (f"gan-tui: error: data directory {afile} is not a "
                                      "folder (nor a .npy / .npz file)\n")
    rc = main([*SMALL, "--epochs", "1", "--run-dir", str(afile)])
    assert rc == 1
    assert one_line_error(capsys) == (f"gan-tui: error: cannot use run directory {afile}: it is "
                                      "a file, not a folder\n")
    assert afile.read_text() == "not a folder"


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path, Path]:
    """The payload as a torch.save zip and as a bare pickle; both shown to be live."""
    marker = tmp_path / "PWNED"
    as_zip, as_pickle = tmp_path / "evil.pt", tmp_path / "evil.pkl"
    torch.save({"format": ckpt.FORMAT, "generator": Payload(marker)}, as_zip)
    as_pickle.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    torch.load(as_zip, weights_only=False)  # an unsafe load runs it...
    assert marker.exists()
    marker.unlink()
    pickle.loads(as_pickle.read_bytes())
    assert marker.exists()
    marker.unlink()
    return marker, as_zip, as_pickle


REFUSED = ("not a gan-tui checkpoint (it asks to run code or build objects that are not "
           "plain weights; refused, nothing in it was run)")


@pytest.mark.parametrize("command", ["train", "sample"])
def test_a_malicious_checkpoint_runs_nothing(tmp_path, malicious, command):
    """A real process, as a user would run it: one line, exit 1, no file created."""
    marker, as_zip, as_pickle = malicious
    args = (["--headless", "--resume"] if command == "train" else ["sample", "--checkpoint"])
    result = run_cli(*args, str(as_zip), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"gan-tui: error: {as_zip}: {REFUSED}\n"
    assert not marker.exists()


@pytest.mark.parametrize("command", ["train", "sample"])
def test_a_malicious_bare_pickle_runs_nothing(capsys, malicious, command):
    marker, _, as_pickle = malicious
    args = (["--headless", "--resume"] if command == "train" else ["sample", "--checkpoint"])
    rc = main([*args, str(as_pickle)])
    assert rc == 1 and one_line_error(capsys) == f"gan-tui: error: {as_pickle}: {REFUSED}\n"
    assert not marker.exists()


CANNOT_FORCE = ("--force cannot help: the preset and latent_dim decide the networks' shapes, "
                "and the saved weights fit no other")


@pytest.mark.parametrize("force", [(), ("--force",)])
def test_resume_into_another_latent_size_says_at_once_force_cannot_help(
        capsys, good_checkpoint, force):
    rc = main(["--headless", "--resume", str(good_checkpoint), "--latent-dim", "64", *force])
    err = one_line_error(capsys)
    assert rc == 1
    assert err == (f"gan-tui: error: {good_checkpoint} was trained with other networks "
                   f"(latent_dim: 100 != 64); {CANNOT_FORCE}; leave out --latent-dim to "
                   "resume it, or start a new run\n")


def test_resume_a_checkpoint_of_another_preset_says_force_cannot_help(capsys, tmp_path):
    other = next(name for name in PRESETS if name != "seed")
    config = TrainConfig(preset=other, limit=64, epochs=1, seed=0, device="cpu",
                         run_dir=str(tmp_path / "other"), **QUIET)
    path = Trainer(config, Recorder()).save("test")
    for force in ((), ("--force",)):
        rc = main(["--headless", "--resume", str(path), "--preset", "seed", *force])
        err = one_line_error(capsys)
        assert rc == 1 and f"(preset: {other!r} != 'seed'" in err and CANNOT_FORCE in err
        assert "weights do not fit" not in err and "state_dict" not in err


def test_a_run_of_an_older_sngan_says_it_cannot_resume_but_still_draws(capsys, tmp_path):
    # Round 5 gave sngan's D 3 x 3 convolutions: a run saved before has round 4's D.
    from gan_tui.sngan import ProjectionDiscriminator

    config = TrainConfig(preset="sngan", limit=64, epochs=1, seed=0, device="cpu",
                         run_dir=str(tmp_path / "old"), **QUIET)
    older = Trainer(config, Recorder()).save("test")
    state = ckpt.load_checkpoint(older)
    state["discriminator"] = ProjectionDiscriminator(deep=False).state_dict()
    ckpt.save_atomic(state, older)
    rc = main(["--headless", "--resume", str(older), "--quality-samples", "0"])
    err = one_line_error(capsys)
    assert rc == 1 and "its discriminator is not the sngan preset's" in err
    assert "cannot be resumed" in err and "state_dict" not in err
    assert main(["sample", "--checkpoint", str(older), "--digit", "5"]) == 0
    assert capsys.readouterr().out.strip()  # its digits are still drawn


def test_resume_on_other_data_asks_for_force_and_then_trains(capsys, good_checkpoint, tmp_path):
    args = ["--headless", "--resume", str(good_checkpoint), "--limit", "32", "--epochs", "1",
            "--quality-samples", "0", "--run-dir", str(tmp_path / "forced")]
    rc = main(args)
    err = one_line_error(capsys)
    assert rc == 1 and "(limit: 64 != 32); pass --force to resume anyway" in err
    assert main([*args, "--force"]) == 0


def test_forced_resume_onto_other_data_restarts_the_interrupted_epoch(small_config):
    def react(event):
        if isinstance(event, StepStats) and event.global_step == 5:
            interrupted.request_stop()

    interrupted = Trainer(small_config(**QUIET), Recorder(react))
    checkpoint = interrupted.run().checkpoint  # mid-epoch: a permutation of 512 digits
    resumed, events = train(small_config(limit=256, **QUIET), resume=checkpoint, force=True)
    finished = events.of(Finished)[0]
    assert (finished.reason, finished.global_step) == ("completed", 5 + 4 + 4)


# ---------------------------------------------------------------- 3. data files


def _images(n=3, size=28):
    return np.random.default_rng(0).integers(0, 256, (n, size, size))


def _labels(n=3):
    return np.arange(n) % 10


def _wrong_magic(folder):
    write_split(folder, "t10k", _images(), _labels())
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(_images(), magic_type=0x09))


def _truncated(folder):
    write_split(folder, "t10k", _images(), _labels())
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])


def _broken_gzip(folder):
    write_split(folder, "t10k", _images(), _labels(), compress=True)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])


def _labels_are_images(folder):
    write_split(folder, "t10k", _images(), _images())


DATA_CASES = [
    (_wrong_magic, (), "t10k-images-idx3-ubyte: bad IDX magic number 0x00000903"),
    (_truncated, (), "header says 3 x 28 x 28 = 2352 bytes, file holds 2252"),
    (_broken_gzip, (), "t10k-images-idx3-ubyte.gz: not a valid gzip file"),
    (lambda f: write_split(f, "t10k", _images(4), _labels(3)), (), "4 images but 3 labels"),
    (lambda f: write_split(f, "t10k", _images(3, 32), _labels()), (),
     "images are 32 x 32, gan-tui needs 28 x 28"),
    (lambda f: write_split(f, "t10k", _images(0), _labels(0)), (), "the files hold no images"),
    (_labels_are_images, (), "label file has 3 dimensions, expected 1"),
    (lambda f: None, (), "no t10k-images-idx3-ubyte[.gz] for the 'test' split"),  # empty
    (lambda f: write_split(f, "t10k", _images(), _labels()), ("--split", "train"),
     "no train-images-idx3-ubyte[.gz] for the 'train' split"),
]


@pytest.mark.parametrize("make, extra, says", DATA_CASES)
def test_bad_data_folders_are_one_line_errors(capsys, tmp_path, make, extra, says):
    folder = tmp_path / "digits"
    folder.mkdir()
    make(folder)
    rc = main(["--headless", "--data-dir", str(folder), "--epochs", "1", *extra,
               "--run-dir", str(tmp_path / "run")])
    err = one_line_error(capsys)
    assert rc == 1 and says in err and str(folder) in err
    assert not (tmp_path / "run").exists()  # nothing was started


# ------------------------------------------------------- 4. the run directory


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_unusable_run_directory_is_a_one_line_error(capsys, tmp_path, where):
    if where == "under a file":
        (tmp_path / "file").write_text("not a folder")
        run_dir = tmp_path / "file" / "run"
        reason = f"{tmp_path / 'file'} is a file, not a folder"
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc here")
        run_dir, reason = Path("/proc/gan-tui-test/run"), "No such file or directory"
    rc = main([*SMALL, "--limit", "64", "--epochs", "1", "--run-dir", str(run_dir)])
    assert rc == 1
    assert one_line_error(capsys) == (f"gan-tui: error: cannot use run directory {run_dir}: "
                                      f"{reason}\n")


DISK_FULL = r"""
import json, pathlib, resource, sys
import torch
torch.set_num_threads(1)
from gan_tui import checkpoint as ckpt
from gan_tui.config import TrainConfig
from gan_tui.train import Trainer
from gan_tui.events import CheckpointSaved, Error, Save

run_dir, limit, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
last = f"{run_dir}/checkpoints/last.pt"
seen = {"saved": [], "errors": [], "during": None}

def disk(full):
    # Writes beyond `limit` bytes fail with EFBIG (Python ignores SIGXFSZ), as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (limit if full else resource.RLIM_INFINITY, resource.RLIM_INFINITY))

def sink(event):
    if isinstance(event, CheckpointSaved):
        seen["saved"].append([event.global_step, event.reason])
        if event.global_step == 8:
            disk(full=True)  # the disk fills up after the first epoch's checkpoint
    elif isinstance(event, Error):
        seen["errors"].append([trainer.global_step, event.fatal, event.message])
        if "could not save" in event.message and seen["during"] is None:
            seen["during"] = {"last_step": ckpt.load_checkpoint(last)["global_step"],
                              "temps": [p.name for p in pathlib.Path(last).parent.glob(".*.tmp")]}
            disk(full=False)  # the user frees some space...
            trainer.send(Save())  # ...and presses s

config = TrainConfig(limit=512, epochs=3, seed=0, device="cpu", run_dir=run_dir,
                     stats_interval_ms=0, **extra)
trainer = Trainer(config, sink)
finished = trainer.run()
seen["finished"] = [finished.reason, finished.global_step, finished.checkpoint_step]
seen["last_step"] = ckpt.load_checkpoint(last)["global_step"]
print(json.dumps(seen))
"""


def test_disk_full_while_saving_keeps_training_and_the_old_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(run), str(1_000_000), json.dumps(QUIET)],
        capture_output=True, text=True, cwd=REPO, env=CHILD_ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    save_errors = [e for e in seen["errors"] if "could not save" in e[2]]
    assert len(save_errors) == 1
    step, fatal, message = save_errors[0]
    assert (step, fatal) == (16, False)  # reported at the second epoch's save; not fatal
    assert message == (f"could not save {run}/checkpoints/last.pt: File too large; the last "
                       f"good checkpoint is {run}/checkpoints/last.pt (step 8); free some "
                       "space, the next save tries again")
    assert seen["during"] == {"last_step": 8, "temps": []}  # intact, no temp left behind
    assert [16, "request"] in seen["saved"]  # the save after space came back worked
    assert seen["finished"] == ["completed", 24, 24]  # training went on to the end
    assert seen["last_step"] == 24
    assert temps(run / "checkpoints") == []


def test_headless_on_a_full_disk_reports_each_failure_and_exits_1(tmp_path):
    """Every file write fails but config.json's: training runs on, says so, exits 1."""
    run = tmp_path / "missing" / "parents" / "run"  # missing parents are created

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "gan_tui", *SMALL, "--epochs", "2", "--log-every", "1",
         "--run-dir", str(run)], preexec_fn=small_disk, capture_output=True, text=True,
        cwd=tmp_path, env=CHILD_ENV, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert not any(line.startswith("error: ") for line in lines)  # errors go to stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    last = run / "checkpoints" / "last.pt"
    save_error = (f"error: could not save {last}: File too large; no checkpoint of this run is "
                  "saved yet; free some space, the next save tries again")
    assert errors.count(save_error) == 3  # each epoch's save, and one last try at the end
    assert errors.count(f"error: could not write {run}/metrics.jsonl: File too large; "
                        "training goes on") == 1  # said once, not at every step
    assert [line[:14] for line in lines if line.startswith("Epoch: [")] == [
        "Epoch: [0/2] |", "Epoch: [1/2] |"]
    assert lines[-1] == ("Done at epoch 2, step 16, but it could not be saved (see the error "
                         "above) and no checkpoint of this run exists.")
    assert not last.exists() and temps(run / "checkpoints") == []
    assert (run / "config.json").exists()


def test_error_messages_are_printed_literally(tmp_path):
    """Paths in messages may hold [brackets]: no rich markup may be read into them."""
    out = io.StringIO()
    sink = HeadlessSink(Console(file=io.StringIO()), show_progress=False,
                        err_console=Console(file=out, width=200))
    sink(Error("could not save /runs/[/b]/x[bold]/last.pt: No space left on device", False))
    assert out.getvalue() == ("error: could not save /runs/[/b]/x[bold]/last.pt: No space left "
                              "on device\n")


# ----------------------------------------------------------------- 5. divergence


def poison_after_first_checkpoint(trainer_box: list, before: list):
    """A sink reaction: once last.pt holds step 8, every digit becomes NaN."""

    def react(event):
        if isinstance(event, CheckpointSaved) and event.global_step == 8:
            trainer = trainer_box[0]
            before.append(digest(trainer.checkpoint_dir / "last.pt"))
            trainer.data[:] = NAN

    return react


def test_divergence_stops_and_keeps_the_last_good_checkpoint(small_config):
    box, before = [], []
    events = Recorder(poison_after_first_checkpoint(box, before))
    trainer = Trainer(small_config(epochs=3, **QUIET), events)
    box.append(trainer)
    last = trainer.checkpoint_dir / "last.pt"
    finished = trainer.run()

    [diverged] = events.of(Diverged)
    assert (diverged.epoch, diverged.global_step, diverged.checkpoint) == (1, 9, str(last))
    assert diverged.message.startswith("training diverged at step 9, in epoch [1/3] (g_loss nan")
    assert diverged.message.endswith(f"nothing was saved over the last good checkpoint {last} "
                                     "(step 8)")
    assert (finished.reason, finished.checkpoint, finished.checkpoint_step) == (
        "diverged", str(last), 8)
    assert digest(last) == before[0]  # not a byte changed
    state = ckpt.load_checkpoint(last)
    assert state["global_step"] == 8
    assert all(t.isfinite().all() for t in state["generator"].values() if t.is_floating_point())
    assert [e.global_step for e in events.of(CheckpointSaved)] == [8]
    assert temps(trainer.checkpoint_dir) == []


def test_pause_on_divergence_refuses_to_resume_or_save_nan_weights(small_config):
    box, before = [], []
    poison = poison_after_first_checkpoint(box, before)

    def react(event):
        poison(event)
        if isinstance(event, Paused):  # what a TUI user might press: s, space, q
            trainer.send(Save())
            trainer.send(Resume())
            trainer.send(Stop())

    events = Recorder(react)
    trainer = Trainer(small_config(epochs=3, **QUIET), events, on_divergence="pause")
    box.append(trainer)
    finished = trainer.run()

    kinds = [type(e).__name__ for e in events.events if not isinstance(e, StepStats)]
    at = kinds.index("Diverged")
    assert kinds[at:] == ["Diverged", "Paused", "Error", "Error", "Finished"]
    not_saving, no_resume = (e.message for e in events.of(Error)[-2:])
    last = trainer.checkpoint_dir / "last.pt"
    assert not_saving.startswith(f"not saving {last}: the generator and discriminator weights "
                                 "are not finite")
    assert no_resume.startswith("cannot resume: the generator and discriminator weights are "
                                "not finite; quit and go on from the last good checkpoint")
    assert (finished.reason, finished.global_step, finished.checkpoint_step) == (
        "diverged", 9, 8)
    assert digest(last) == before[0]


def test_save_refuses_nan_weights(small_config):
    events = Recorder()
    trainer = Trainer(small_config(**QUIET), events)
    path = trainer.save("request")
    good = digest(path)
    with torch.no_grad():
        next(trainer.discriminator.parameters())[0, 0] = NAN
    assert trainer.save("request") is None
    assert events.of(Error)[-1] == Error(
        f"not saving {path}: the discriminator weights are not finite; the last good "
        f"checkpoint is {path} (step 0)", fatal=False)
    assert digest(path) == good


def test_headless_divergence_keeps_last_pt_names_it_and_exits_3(small_config, tmp_path):
    """An absurd learning rate, given on resume, overflows the weights for real."""
    first, _ = train(small_config(epochs=1, **QUIET))
    last = first.checkpoint_dir / "last.pt"
    good = digest(last)
    result = run_cli("--headless", "--resume", str(last), "--epochs", "3", "--lr-g", "1e30",
                     "--lr-d", "1e30", *QUIET_FLAGS, cwd=tmp_path)
    assert result.returncode == EXIT_DIVERGED == 3
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()  # errors on stderr, nothing else there
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "error" not in result.stdout
    # Headless reads the statistics every 100 ms: the step that shows it depends on timing.
    assert re.match(r"error: training diverged at step (9|1[0-6]), in epoch \[1/3\] \(",
                    errors[0]), errors[0]
    assert errors[0].endswith(f"nothing was saved over the last good checkpoint {last} (step 8)")
    advice = result.stdout.splitlines()[-1]
    # --epochs 3 is kept: epochs count from the run's start, and the checkpoint's own
    # target (1) is already reached, so a resume without it would train nothing.
    assert advice == (f"Resume with lower learning rates: gan-tui train --resume {last} "
                      "--epochs 3 --lr-g 5e+29 --lr-d 5e+29")
    assert digest(last) == good
    # The advised command really trains on (and, its rates still absurd, diverges again),
    # instead of printing "Done: 1 epochs" and exiting 0.
    again = run_cli(*shlex.split(advice.split(": ", 1)[1])[1:], "--headless", cwd=tmp_path)
    assert again.returncode == EXIT_DIVERGED, again.stdout
    assert "Done" not in again.stdout and "training diverged" in again.stderr


def test_resume_trains_on_with_the_learning_rates_given(small_config):
    first, _ = train(small_config(epochs=1, **QUIET))
    resumed = Trainer(small_config(epochs=2, lr_g=5e-5, lr_d=1e-4, **QUIET), Recorder(),
                      resume=first.checkpoint_dir / "last.pt")
    assert [g["lr"] for g in resumed.opt_g.param_groups] == [5e-5]
    assert [g["lr"] for g in resumed.opt_d.param_groups] == [1e-4]


def test_finite_bce_is_the_seeds_bce_on_probabilities_and_survives_nan():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(64, 1, generator=gen)
    target = (torch.rand(64, 1, generator=gen) > 0.5).float()
    a, b = scores.clone().requires_grad_(), scores.clone().requires_grad_()
    ours, seeds = FiniteBCELoss()(a, target), torch.nn.BCELoss()(b, target)
    ours.backward()
    seeds.backward()
    assert torch.equal(ours, seeds) and torch.equal(a.grad, b.grad)  # bit for bit

    scores[3] = NAN
    with pytest.raises(RuntimeError, match="between 0 and 1"):  # why the seed's would crash
        torch.nn.BCELoss()(scores, target)
    c = scores.clone().requires_grad_()
    loss = FiniteBCELoss()(c, target)
    loss.backward()
    assert loss.isnan() and c.grad.isfinite().all()


def test_resuming_a_loose_checkpoint_makes_a_new_run_folder_and_says_where(
        capsys, monkeypatch, tmp_path, good_checkpoint):
    """./moved.pt (outside a run's checkpoints/) must not turn the working folder into a
    run folder: the resume goes to runs/moved-resumed, then -2, and says so on stderr."""
    monkeypatch.chdir(tmp_path)
    moved = tmp_path / "moved.pt"
    moved.write_bytes(good_checkpoint.read_bytes())
    for name in ("moved-resumed", "moved-resumed-2"):
        rc = main([*SMALL, "--resume", "moved.pt", "--limit", "64", "--epochs", "1"])
        captured = capsys.readouterr()
        run = tmp_path / "runs" / name
        assert rc == 0, captured.err
        assert captured.err == (f"gan-tui: note: {moved} is not in a run's checkpoints/ "
                                f"folder; resuming into a new run folder {run}\n")
        assert f"run dir {run}" in captured.out
        assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved.pt", "runs"]


def test_resume_advice_carries_every_setting_that_differs_from_the_checkpoint(tmp_path):
    from gan_tui.config import resume_flags

    home = tmp_path / "runs" / "a"
    saved = TrainConfig(epochs=1, limit=512, seed=0, run_dir=str(home))
    same = TrainConfig(**{**saved.to_dict()})
    assert resume_flags(same, saved, home) == []
    assert resume_flags(same, saved, home, lower_lr=True) == ["--lr-g", "5e-05",
                                                              "--lr-d", "0.0001"]
    other = TrainConfig(**{**saved.to_dict(), "epochs": 100, "limit": 256, "ema": 0.99,
                           "run_dir": str(tmp_path / "elsewhere")})
    assert resume_flags(other, saved, home) == [
        "--epochs", "100", "--limit", "256", "--run-dir", str(tmp_path / "elsewhere"),
        "--ema", "0.99", "--force"]  # a data setting differs: the run itself was forced
    # A checkpoint kept outside any run: its resume wrote to a new folder, named again.
    assert resume_flags(same, saved, None) == ["--run-dir", str(home)]
