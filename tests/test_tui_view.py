"""The dashboard's reducer without a terminal: events in, view state and effects out."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gan_tui.config import TrainConfig
from gan_tui.events import (
    CheckpointSaved,
    Diverged,
    EpochEnd,
    Error,
    Finished,
    HandedOver,
    Pause,
    Paused,
    Quality,
    Resume,
    Resumed,
    Samples,
    Started,
    StepStats,
)
from gan_tui.tui.state import Phase
from gan_tui.tui.view import (
    NO_QUALITY,
    QUALITY_OFF,
    LogLine,
    Notice,
    ShowQuality,
    ShowSamples,
    ViewState,
)


def started(run_dir: str = "runs/r", **changes: object) -> Started:
    fields = dict(run_dir=run_dir, run_name=Path(run_dir).name, preset="seed", device="cpu",
                  dataset="bundled", num_images=256, steps_per_epoch=4, epochs=10,
                  start_epoch=0, global_step=0, resumed_from=None, config={})
    return Started(**{**fields, **changes})  # type: ignore[arg-type]


def stats(step: int) -> StepStats:
    return StepStats(epoch=(step - 1) // 4, epochs=10, batch=(step - 1) % 4 + 1,
                     steps_per_epoch=4, global_step=step, g_loss=1.0, d_loss=1.2,
                     d_real=0.6, d_fake=0.4, img_per_s=100.0, elapsed_s=step / 10)


def epoch_end(epoch: int) -> EpochEnd:
    return EpochEnd(epoch=epoch, epochs=10, global_step=4 * (epoch + 1), g_loss=1.0,
                    d_loss=1.2, d_real=0.6, d_fake=0.4, img_per_s=100.0, seconds=1.0)


def quality(epoch: int = 0) -> Quality:
    return Quality(epoch=epoch, global_step=4 * (epoch + 1), fid=10.0, score=5.0,
                   coverage=0.9, confidence=0.8, histogram=(100,) * 10, samples=1000,
                   seconds=0.1)


def running(config: TrainConfig | None = None) -> ViewState:
    view = ViewState.for_config(config or TrainConfig())
    view.apply([started(), stats(1)])
    return view


def test_before_any_event_the_run_is_starting_and_named_after_its_folder() -> None:
    view = ViewState.for_config(TrainConfig(run_dir="runs/mine"))
    assert view.phase is Phase.STARTING
    assert view.info.run_name == "mine"
    assert view.opening() == []
    assert ViewState.for_config(TrainConfig(quality_samples=0)).opening() == [
        ShowQuality(None, QUALITY_OFF)]


def test_started_and_step_stats_fill_progress_and_history() -> None:
    view = ViewState.for_config(TrainConfig())
    effects = view.apply([started(global_step=8, start_epoch=2, resumed_from="old.pt"),
                          stats(9), stats(10)])
    assert view.phase is Phase.TRAINING
    assert view.info.run_dir == "runs/r"
    assert view.progress is not None
    assert (view.progress.start_step, view.progress.global_step) == (8, 10)
    assert view.history.steps == [9, 10]
    assert effects == [
        LogLine("Resumed from old.pt at epoch 2, step 8", "bold"),
        LogLine("Training seed on 256 images (bundled) on cpu"),
        LogLine("Run folder: runs/r", "dim"),
    ]


def test_paused_sets_phase_paused_and_resumed_clears_it() -> None:
    view = running()
    assert view.apply([Paused(global_step=1)]) == [LogLine("Paused at step 1", "yellow")]
    assert view.phase is Phase.PAUSED and view.want_pause
    view.apply([Resumed(global_step=1)])
    assert view.phase is Phase.TRAINING and not view.want_pause


def test_pause_key_toggles_what_was_asked_not_what_was_seen() -> None:
    view = running()
    assert view.pause_command() == Pause()
    assert view.pause_command() == Resume()  # two quick presses cancel out


def test_diverged_sets_diverged_and_says_so_in_an_error_notice() -> None:
    view = running()
    effects = view.apply([
        Diverged(epoch=0, global_step=5, message="training diverged at step 5",
                 checkpoint="runs/r/checkpoints/last.pt"),
        Paused(global_step=5),
    ])
    assert view.phase is Phase.DIVERGED
    assert Notice("training diverged at step 5. Press q to end the run.",
                  title="Training diverged", severity="error", timeout=20) in effects
    assert LogLine("Diverged: training diverged at step 5", "bold red") in effects
    # Every press of space asks the engine to resume again (it refuses NaN weights).
    assert view.pause_command() == Resume() and view.pause_command() == Resume()


def test_a_save_announces_the_kept_copy_once_per_batch() -> None:
    view = running()
    view.saving = True  # s was pressed
    assert view.phase is Phase.SAVING
    effects = view.apply([
        CheckpointSaved("runs/r/checkpoints/last.pt", 0, 1, "request"),
        CheckpointSaved("runs/r/checkpoints/step_0000001.pt", 0, 1, "kept"),
    ])
    notices = [e for e in effects if isinstance(e, Notice)]
    assert notices == [Notice("runs/r/checkpoints/step_0000001.pt",
                              title="Checkpoint saved", timeout=6)]
    assert LogLine("Checkpoint checkpoints/last.pt (saved on request)", "green") in effects
    assert view.last_checkpoint == "runs/r/checkpoints/last.pt"  # the kept copy is not last
    assert not view.saving and view.phase is Phase.TRAINING


LAST = "runs/r/checkpoints/last.pt"


def saved_and_stopped(reason: str) -> list:
    """last.pt saved at step 3 (for `reason`: "stop", "detach"...), then the run's end."""
    return [CheckpointSaved(LAST, 0, 3, reason),
            Finished(reason="stopped", epoch=0, global_step=3, checkpoint=LAST,
                     run_dir="runs/r", checkpoint_step=3)]


def test_finished_after_a_save_reports_the_ending_lines(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    view = running()
    effects = view.apply(saved_and_stopped("stop"))
    ending = [f"Stopped at epoch 0, step 3; saved {LAST}",
              f"Resume with: gan-tui train --resume {LAST}"]
    assert view.phase is Phase.STOPPED
    assert view.ending_lines() == ending
    assert effects[-2:] == [LogLine(line, "bold") for line in ending]
    assert view.exit_code() == 0
    assert view.exit_code(signum=15) == 128 + 15


def test_a_run_handed_to_a_background_process_is_moved_not_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the dashboard (d) and any viewer attached to it see of a hand-over."""
    monkeypatch.chdir(tmp_path)
    view = running()
    effects = view.apply(saved_and_stopped("detach"))
    assert not any("Resume with" in e.text for e in effects if isinstance(e, LogLine))
    effects = view.apply([HandedOver(pid=4321, run_dir="runs/r", global_step=3)])
    moved = ["Training goes on in the background (pid 4321) from step 3.",
             "Watch it with: gan-tui attach runs/r", "Stop it with: gan-tui stop runs/r"]
    assert effects == [LogLine(line, "bold") for line in moved]
    assert view.phase is Phase.MOVED and view.ending_lines() == moved
    assert view.exit_code() == 0


def test_a_hand_over_that_fails_ends_as_a_stopped_run(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    view = running()
    view.apply([
        *saved_and_stopped("detach"),
        Error("could not carry the run on in the background: no room; it is saved, resume "
              "it by hand", fatal=False),
    ])
    assert view.phase is Phase.STOPPED
    assert view.ending_lines()[-1] == f"Resume with: gan-tui train --resume {LAST}"


def test_no_scores_after_two_epoch_ends_means_none_will_come() -> None:
    view = running()
    assert not any(isinstance(e, ShowQuality) for e in view.apply([epoch_end(0)]))
    assert ShowQuality(None, NO_QUALITY) in view.apply([epoch_end(1)])


def test_scores_are_logged_and_shown() -> None:
    view = running()
    effects = view.apply([epoch_end(0), quality(0), epoch_end(1)])
    assert view.quality == quality(0)
    assert ShowQuality(quality(0)) in effects
    assert ShowQuality(None, NO_QUALITY) not in effects


def test_samples_come_with_their_caption() -> None:
    view = running()
    images = np.zeros((16, 28, 28), dtype=np.float32)
    digit = Samples(epoch=0, global_step=7, images=images, fixed=False, labels=(3,) * 16)
    fixed = Samples(epoch=1, global_step=8, images=images, fixed=True)
    assert view.apply([digit, fixed]) == [ShowSamples(digit, "digit 3 · step 7"),
                                          ShowSamples(fixed, "epoch 2 · fixed noise")]


def test_a_fatal_error_ends_in_error_with_exit_code_1() -> None:
    view = ViewState.for_config(TrainConfig())
    effects = view.apply([Error("no digits here: /nowhere")])
    assert view.phase is Phase.ERROR and view.fatal_error == "no digits here: /nowhere"
    assert effects[-1] == Notice("no digits here: /nowhere", title="Error",
                                 severity="error", timeout=10)
    assert view.exit_code(signum=1) == 1  # the error says more than the signal
    warning = ViewState.for_config(TrainConfig())
    warning.apply([Error("disk full", fatal=False)])
    assert warning.fatal_error is None and warning.phase is Phase.STARTING


def test_why_a_key_did_nothing() -> None:
    view = ViewState.for_config(TrainConfig())
    assert "Still loading" in view.not_running_notice(starting=True).message
    assert view.not_running_notice(starting=False).message == "Training is not running."
    view.last_checkpoint = "runs/r/checkpoints/last.pt"
    assert view.not_running_notice(starting=False).message == (
        "Training has ended; the last checkpoint is runs/r/checkpoints/last.pt.")


def test_the_reducer_needs_neither_textual_nor_torch() -> None:
    import subprocess

    code = ("import sys, gan_tui.tui.view; "
            "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
