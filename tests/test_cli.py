"""The command line as a user meets it: headless runs, signals, one-line errors."""

import json
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from gan_tui.cli import main
from tests.conftest import REPO, run_cli

SMALL = ("--headless", "--limit", "512", "--seed", "0", "--device", "cpu")


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 2"),
    (["--lr-g", "0"], "--lr-g must be greater than 0"),
    (["--lr-d", "-1"], "--lr-d must be greater than 0"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--epochs", "-1"],
     "no usable CUDA GPU" if not torch.cuda.is_available() else "--epochs must be"),
    (["--data-dir", "/no/such/dir"], "data directory /no/such/dir does not exist"),
    (["--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["--split", "train"], "bundled data is the MNIST test split only"),
    (["--resume", "/no/such.pt"], "/no/such.pt: no such checkpoint file"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_input_is_one_line_and_non_zero(capsys, args, message):
    with pytest.raises(SystemExit) if _is_usage_error(args) else _no_raise() as exit_info:
        rc = main(["--headless", *args])
    if exit_info is not None and hasattr(exit_info, "value"):
        rc = exit_info.value.code
    err = capsys.readouterr().err
    assert rc != 0
    assert err.count("\n") == 1, err
    assert message in err and err.startswith("gan-tui")


def _is_usage_error(args):
    return any(a in args for a in ("tpu", "many", "--frobnicate"))


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("args", [
    ["--epochs", "0"], ["--batch-size", "0"], ["--limit", "0"], ["--lr-g", "nan"],
    ["--lr-d", "inf"], ["--latent-dim", "0"], ["--ema", "2"], ["--lr-decay", "2"],
    ["--log-every", "0"], ["--checkpoint-every", "0"], ["--quality-samples", "1"], ["--seed", "-1"],
    ["--epochs", "many"], ["--preset", "nope"],  # caught by argparse itself
    ["sample", "-n", "0"], ["sample", "--digit", "12"], ["eval", "-n", "1"],
])
def test_every_usage_error_exits_2(capsys, args):
    """A value no run accepts is bad usage (2), whether argparse or the config catches it."""
    try:
        rc = main(args if args[0] in ("sample", "eval") else ["--headless", *args])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("gan-tui"), (rc, err)
    assert "error: " in err


@pytest.mark.parametrize("args", [
    ["--data-dir", "/no/such/dir"], ["--resume", "/no/such.pt"],
    ["sample", "--checkpoint", "/no/such.pt"], ["eval", "--checkpoint", "/no/such.pt"],
])
def test_errors_that_are_not_usage_exit_1(capsys, args):
    rc = main(args if args[0] in ("sample", "eval") else ["--headless", *args])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith("gan-tui: error: "), (rc, err)


def test_error_from_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("--epochs", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "gan-tui: error: --epochs must be at least 1, got 0"


def test_headless_run_prints_seed_lines_and_the_loss_chart(tmp_path):
    result = run_cli(*SMALL, "--epochs", "2", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("Epoch: [")]
    assert [line[:14] for line in epoch_lines] == ["Epoch: [0/2] |", "Epoch: [1/2] |"]
    assert " | G_loss: " in epoch_lines[0] and " | D_loss: " in epoch_lines[0]
    assert "img/s" in epoch_lines[0]
    assert any("Training Losses" in line for line in lines)
    assert "\x1b" not in result.stdout  # piped output stays plain
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_console_script_is_installed():
    script = REPO / ".venv" / "bin" / "gan-tui"
    exe = script if script.exists() else "gan-tui"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("gan-tui ")


# A test runner started in the background (nohup, `&` in a script) hands its children
# SIGINT and SIGHUP ignored, and gan-tui keeps an ignored signal ignored (nohup'd runs
# must survive a dropped SSH link). These tests want a terminal's defaults, so the child
# resets them before it becomes gan-tui (thread-safe, unlike Popen's preexec_fn).
_DEFAULT_SIGNALS_THEN_EXEC = (
    "import os, signal, sys; "
    "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGHUP)]; "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def start_training(cwd, *extra):
    return subprocess.Popen(
        [sys.executable, "-c", _DEFAULT_SIGNALS_THEN_EXEC, "-m", "gan_tui", *SMALL,
         "--epochs", "200", *extra], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def read_until(stream, marker: str, timeout: float = 90) -> list[str]:
    """Collect lines until one contains `marker` (a thread, so a hang cannot block forever)."""
    lines: list[str] = []
    found = threading.Event()

    def pump():
        for line in stream:
            lines.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=pump, daemon=True).start()
    assert found.wait(timeout), f"no {marker!r} in output: {lines!r}"
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_save_last_pt_and_print_how_to_resume(tmp_path, sig):
    proc = start_training(tmp_path)
    try:
        read_until(proc.stdout, "Epoch: [0/200]")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    checkpoint = next(tmp_path.glob("runs/*-seed/checkpoints/last.pt"))
    assert f"Resume with: gan-tui train --resume {checkpoint.resolve()}" in out
    state = torch.load(checkpoint, weights_only=True)
    assert state["global_step"] >= 8  # at least the first epoch's 8 steps


def test_resume_from_a_run_folder_continues_that_run(tmp_path, capsys):
    """`--resume runs/X` takes the folder's checkpoints/last.pt, as `sample` does."""
    run = tmp_path / "run"
    tiny = ("--headless", "--limit", "256", "--seed", "0", "--device", "cpu",
            "--quality-samples", "0")
    assert main([*tiny, "--epochs", "1", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["--headless", "--resume", str(run), "--epochs", "2"]) == 0
    last = run / "checkpoints" / "last.pt"
    assert f"Resuming {last} at epoch 1/2" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2]
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_resume_latest_continues_from_the_saved_step(tmp_path):
    proc = start_training(tmp_path)
    try:
        read_until(proc.stdout, "Epoch: [1/200]")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    checkpoint = next(tmp_path.glob("runs/*-seed/checkpoints/last.pt"))
    saved_step = torch.load(checkpoint, weights_only=True)["global_step"]
    result = run_cli("--headless", "--resume", "latest", "--epochs", str(saved_step // 8 + 1),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Resuming {checkpoint.resolve()} at epoch {saved_step // 8}" in result.stdout
    records = [json.loads(line) for line in (checkpoint.parent.parent / "metrics.jsonl").open()]
    epochs = [r["epoch"] for r in records if r["event"] == "epoch"]
    assert epochs == list(range(1, saved_step // 8 + 2))  # no epoch lost or repeated
    assert len(list(tmp_path.glob("runs/*"))) == 1  # resumed into the same run directory


def test_the_cli_and_the_app_load_without_torch():
    """torch takes seconds to import: --help and the TUI's first frame must not wait for it."""
    code = ("import sys; from gan_tui.cli import build_parser; build_parser(); "
            "import gan_tui.tui.app; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_every_preset_is_described_and_buildable():
    from gan_tui.models import PRESETS
    from gan_tui.presets import PRESET_INFO

    assert list(PRESETS) == list(PRESET_INFO)
    assert all(PRESETS[n].conditional == PRESET_INFO[n].conditional for n in PRESETS)


def test_cgan_on_labels_outside_0_to_9_is_one_line_not_a_traceback(capsys, tmp_path):
    from tests.test_data import write_split

    labels = np.arange(64) % 10
    labels[7] = 200
    write_split(tmp_path / "d", "t10k", np.zeros((64, 28, 28)), labels)
    rc = main([*SMALL, "--preset", "cgan", "--epochs", "1", "--data-dir", str(tmp_path / "d"),
               "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"gan-tui: error: {tmp_path / 'd' / 't10k-labels-idx1-ubyte'}: "
                          "label 200 at position 7 is not a digit class 0-9")
