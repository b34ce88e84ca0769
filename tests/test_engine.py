"""The engine on real digits: the seed's step, events, commands, outputs, exact resume."""

import dataclasses
import math

import pytest
import torch

from gan_tui import checkpoint as ckpt
from gan_tui.errors import CheckpointError
from gan_tui.events import (
    CheckpointSaved,
    EpochEnd,
    Finished,
    Pause,
    Paused,
    Resume,
    Resumed,
    Sample,
    Samples,
    Save,
    Started,
    StepStats,
    Stop,
)
from gan_tui.metrics import read_metrics
from gan_tui.train import Trainer, make_adam, steps_per_epoch
from tests.conftest import Recorder, train


def test_two_epochs_on_real_digits_produce_losses_images_and_logs(small_config):
    trainer, events = train(small_config())
    run = trainer.run_dir
    epochs = events.of(EpochEnd)
    assert [e.epoch for e in epochs] == [0, 1]
    assert all(math.isfinite(v) for e in epochs for v in (e.g_loss, e.d_loss, e.d_real, e.d_fake))
    assert all(0 < e.d_real < 1 and 0 < e.d_fake < 1 for e in epochs)
    assert epochs[0].seed_line().startswith("Epoch: [0/2] | G_loss: ")
    assert (run / "samples" / "epoch_0001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "samples" / "epoch_0002.png").exists()
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "epoch"]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 8), (2, 16)]
    assert set(records[0]) == {"event", "epoch", "step", "g_loss", "d_loss", "d_real",
                               "d_fake", "img_per_s", "seconds"}
    assert (run / "config.json").exists()
    finished = events.of(Finished)[-1]
    assert (finished.reason, finished.epoch, finished.global_step) == ("completed", 2, 16)


def test_events_tell_progress_and_samples_every_epoch(small_config):
    _, events = train(small_config())
    started = events.of(Started)[0]
    assert (started.num_images, started.steps_per_epoch, started.device) == (512, 8, "cpu")
    stats = events.of(StepStats)
    assert [s.global_step for s in stats] == list(range(1, 17))  # interval 0: every step
    assert stats[7].batch == 8 and stats[8].batch == 1
    samples = events.of(Samples)
    assert len(samples) == 2 and all(s.fixed for s in samples)
    assert samples[0].images.shape == (16, 28, 28)
    assert samples[0].images.dtype.name == "float32"
    assert samples[0].images.min() >= -1 and samples[0].images.max() <= 1
    assert not (samples[0].images == samples[1].images).all()  # the generator learned


def test_stats_are_throttled_by_interval(small_config):
    _, events = train(small_config(stats_interval_ms=60_000))
    # Only the last step of each epoch forces an update when the interval is long.
    assert [s.global_step for s in events.of(StepStats)] == [8, 16]


def test_partial_last_batch_is_kept_but_never_a_single_image():
    assert steps_per_epoch(10_000, 64) == 157  # the seed's DataLoader: 156 full + 16
    assert steps_per_epoch(129, 64) == 2  # 64 + 64 + 1: BatchNorm cannot train on one
    assert steps_per_epoch(130, 64) == 3


def test_fused_or_foreach_adam_is_used_where_available():
    opt = make_adam([torch.nn.Parameter(torch.zeros(3))], 1e-4, (0.9, 0.999))
    group = opt.param_groups[0]
    assert group["fused"] or group["foreach"]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.999)


def test_optimizers_are_the_seeds(small_config):
    trainer = Trainer(small_config(), Recorder())
    assert trainer.opt_g.param_groups[0]["lr"] == 1e-4
    assert trainer.opt_d.param_groups[0]["lr"] == 2e-4
    assert isinstance(trainer.loss.criterion, torch.nn.BCELoss)


def test_pause_holds_the_step_and_sample_works_while_paused(small_config):
    """A sink that pauses at step 3, asks for samples and a save, then resumes."""
    trainer: Trainer

    def react(event):
        if isinstance(event, StepStats) and event.global_step == 3:
            trainer.send(Pause())
        elif isinstance(event, Paused):
            trainer.send(Sample(count=4))
            trainer.send(Save())
            trainer.send(Resume())

    events = Recorder(react)
    trainer = Trainer(small_config(epochs=1), events)
    trainer.run()
    kinds = [type(e).__name__ for e in events.events if not isinstance(e, StepStats)]
    paused_at = kinds.index("Paused")
    assert kinds[paused_at:paused_at + 5] == ["Paused", "Samples", "CheckpointSaved",
                                              "CheckpointSaved", "Resumed"]
    assert events.of(Paused)[0].global_step == events.of(Resumed)[0].global_step == 3
    fresh = [s for s in events.of(Samples) if not s.fixed]
    assert fresh[0].images.shape == (4, 28, 28)
    saved = [e for e in events.of(CheckpointSaved) if e.global_step == 3]
    assert {e.path.rsplit("/", 1)[-1] for e in saved} == {"last.pt", "step_0000003.pt"}
    assert events.of(Finished)[0].global_step == 8


def test_sampling_does_not_change_the_training_trajectory(small_config, tmp_path):
    def react(event):
        if isinstance(event, StepStats):
            trainer.send(Sample())

    trainer = Trainer(small_config(run_dir=str(tmp_path / "a")), Recorder(react))
    trainer.run()
    plain, _ = train(small_config(run_dir=str(tmp_path / "b")))
    assert_same_weights(trainer, plain)


def test_stop_saves_mid_epoch_and_says_where(small_config):
    def react(event):
        if isinstance(event, StepStats) and event.global_step == 5:
            trainer.send(Stop())

    events = Recorder(react)
    trainer = Trainer(small_config(), events)
    finished = trainer.run()
    assert (finished.reason, finished.global_step, finished.epoch) == ("stopped", 5, 0)
    state = torch.load(finished.checkpoint, weights_only=True)
    assert (state["global_step"], state["batch"], state["epoch"]) == (5, 5, 0)


def test_key_presses_during_an_epochs_end_are_answered_before_its_save(small_config):
    """The end of an epoch (scores, the save) takes ~0.1 s: a sample asked for while it
    runs comes before the save; a save or stop waits until the epoch is recorded, so no
    checkpoint lands between an epoch's last step and its end (a resume would end the
    epoch twice)."""
    trainer: Trainer

    def react(event):
        if isinstance(event, Samples) and event.fixed and event.epoch == 0:
            trainer.send(Sample(count=4))
            trainer.send(Save())
            trainer.send(Stop())

    events = Recorder(react)
    trainer = Trainer(small_config(epochs=3, quality_samples=64), events)
    finished = trainer.run()
    kinds = [type(e).__name__ for e in events.events if not isinstance(e, StepStats)]
    fixed_at = kinds.index("Samples")
    assert kinds[fixed_at:fixed_at + 4] == ["Samples", "Samples", "Quality", "CheckpointSaved"]
    assert events.of(Samples)[1].images.shape == (4, 28, 28)
    assert [e.reason for e in events.of(CheckpointSaved)] == ["epoch", "request", "kept", "stop"]
    kept = next(e.path for e in events.of(CheckpointSaved) if e.reason == "kept")
    state = torch.load(kept, weights_only=True)
    assert (state["epoch"], state["batch"], state["global_step"]) == (1, 0, 8)
    assert (finished.reason, finished.epoch, finished.global_step) == ("stopped", 1, 8)
    assert len(events.of(EpochEnd)) == 1


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    for model_a, model_b in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        sa, sb = model_a.state_dict(), model_b.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name


def test_resume_after_an_epoch_is_bit_for_bit(small_config, tmp_path):
    straight, _ = train(small_config(run_dir=str(tmp_path / "straight")))
    first, _ = train(small_config(run_dir=str(tmp_path / "split"), epochs=1))
    last = first.checkpoint_dir / "last.pt"
    resumed, events = train(small_config(run_dir=str(tmp_path / "split"), epochs=2), resume=last)
    assert events.of(Started)[0].start_epoch == 1
    assert_same_weights(straight, resumed)
    assert resumed.global_step == straight.global_step == 16
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_resume_mid_epoch_is_bit_for_bit(small_config, tmp_path):
    straight, straight_events = train(small_config(run_dir=str(tmp_path / "straight")))

    def react(event):
        if isinstance(event, StepStats) and event.global_step == 11:
            interrupted.request_stop("interrupt")

    interrupted = Trainer(small_config(run_dir=str(tmp_path / "split")), Recorder(react))
    checkpoint = interrupted.run().checkpoint
    resumed, events = train(small_config(run_dir=str(tmp_path / "split")), resume=checkpoint)
    assert_same_weights(straight, resumed)
    # The resumed epoch reports the same means as the uninterrupted one.
    assert events.of(EpochEnd)[-1].g_loss == pytest.approx(straight_events.of(EpochEnd)[-1].g_loss)


def test_resume_refuses_a_different_setup_and_names_the_keys(small_config, tmp_path):
    first, _ = train(small_config(epochs=1))
    with pytest.raises(CheckpointError, match=r"limit: 512 != 256"):
        Trainer(small_config(limit=256), Recorder(), resume=first.checkpoint_dir / "last.pt")
    forced = Trainer(small_config(limit=256), Recorder(),
                     resume=first.checkpoint_dir / "last.pt", force=True)
    assert forced.epoch == 1


def test_checkpoint_holds_everything_and_loads_safely(small_config):
    trainer, _ = train(small_config(epochs=1))
    state = ckpt.load_checkpoint(trainer.checkpoint_dir / "last.pt")
    assert state["epoch"] == 1 and state["global_step"] == 8
    assert state["fixed_noise"].shape == (16, 100)
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert state["config"]["seed"] == 0
    assert len(state["history"]) == 1
    assert state["opt_g"]["state"] and state["opt_d"]["state"]


def test_periodic_checkpoints_are_kept(small_config):
    trainer, _ = train(small_config(epochs=3, checkpoint_every=2))
    names = sorted(p.name for p in trainer.checkpoint_dir.iterdir())
    assert names == ["epoch_0002.pt", "last.pt"]
    kept = torch.load(trainer.checkpoint_dir / "epoch_0002.pt", weights_only=True)
    assert kept["epoch"] == 2  # not overwritten when last.pt moved on to epoch 3


def test_the_trainer_works_on_its_own_copy_of_the_config(small_config, tmp_path):
    """The caller's config is left as given; the trainer's holds the seed the run uses."""
    first, _ = train(small_config(epochs=1, limit=256, quality_samples=0))
    config = small_config(seed=None, epochs=2, limit=256, quality_samples=0,
                          run_dir=str(tmp_path / "b"))
    fresh = Trainer(config, Recorder())
    assert config.seed is None and fresh.config is not config
    assert isinstance(fresh.config.seed, int)
    elsewhere = dataclasses.replace(config, run_dir=str(tmp_path / "c"))  # b is fresh's
    resumed = Trainer(elsewhere, Recorder(), resume=first.checkpoint_dir / "last.pt")
    assert elsewhere.seed is None and resumed.config.seed == 0  # the checkpoint's seed


def test_on_divergence_is_a_trainer_choice(small_config):
    with pytest.raises(ValueError, match="on_divergence must be one of stop, pause"):
        Trainer(small_config(), Recorder(), on_divergence="ignore")
