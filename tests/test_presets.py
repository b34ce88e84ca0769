"""The dcgan, cgan and sngan presets, conditional training and sampling, and generator EMA
(sngan's own parts: tests/test_sngan.py)."""

import math

import pytest
import torch

from gan_tui import checkpoint as ckpt
from gan_tui.cli import build_parser, config_from_args
from gan_tui.events import EpochEnd, Finished, Sample, Samples, StepStats
from gan_tui.models import (
    PRESETS,
    ConvDiscriminator,
    ConvGenerator,
    build_models,
    count_parameters,
)
from gan_tui.train import Trainer
from gan_tui.train.ema import standing_statistics
from gan_tui.train.schedule import lr_scale
from tests.conftest import Recorder, train


@pytest.mark.parametrize("preset", ["dcgan", "cgan"])
def test_conv_presets_make_28x28_digits_and_probabilities(preset):
    g, d = build_models(preset, 100)
    assert isinstance(g, ConvGenerator) and isinstance(d, ConvDiscriminator)
    assert count_parameters(g) < 1_000_000 and count_parameters(d) < 200_000  # CPU-sized
    z, labels = torch.randn(4, 100), torch.tensor([0, 3, 7, 9])
    args = (labels,) if PRESETS[preset].conditional else ()
    images = g(z, *args)
    assert images.shape == (4, 1, 28, 28) and images.abs().max() <= 1
    scores = d(images, *args)
    assert scores.shape == (4, 1) and ((scores > 0) & (scores < 1)).all()


def test_conditional_models_insist_on_labels():
    g, d = build_models("cgan", 100)
    with pytest.raises(ValueError, match="needs class labels"):
        g(torch.randn(2, 100))
    with pytest.raises(ValueError, match="needs class labels"):
        d(torch.zeros(2, 1, 28, 28))


@pytest.mark.parametrize("preset", ["dcgan", "cgan"])
def test_each_preset_has_tested_defaults_the_cli_applies(preset, tmp_path):
    defaults = PRESETS[preset].defaults
    assert defaults["lr_g"] == defaults["lr_d"] == 2e-4 and defaults["beta1"] == 0.5
    args = build_parser().parse_args(["train", "--preset", preset, "--lr-g", "1e-3"])
    config, _ = config_from_args(args)
    assert config.lr_g == 1e-3  # an explicit flag wins
    assert (config.lr_d, config.beta1, config.ema) == (2e-4, 0.5, defaults["ema"])
    assert PRESETS["seed"].defaults == {}  # the seed keeps TrainConfig's own defaults


def test_the_seed_step_draws_exactly_the_seeds_random_numbers(small_config):
    """No extra draws for unconditional presets: one randn per step, as the seed."""
    trainer = Trainer(small_config(), Recorder())
    real = trainer.data[:64]
    torch.manual_seed(123)
    expected = torch.randn(64, 100)
    expected_state = torch.get_rng_state()
    torch.manual_seed(123)
    trainer.step(real)
    assert torch.equal(torch.get_rng_state(), expected_state)
    torch.manual_seed(123)
    assert torch.equal(torch.randn(64, 100), expected)


@pytest.fixture
def lecam_preset():
    """sngan with LeCam (the ablation's variant), a preset for this test only."""
    from unittest.mock import patch

    from benchmarks.ablation import VARIANTS, register
    from gan_tui.presets import PRESET_INFO

    with patch.dict(PRESETS), patch.dict(PRESET_INFO):
        yield register(next(v for v in VARIANTS if v.name == "lecam-0.3"))


@pytest.mark.parametrize("preset", ["dcgan", "cgan", "sngan", "sngan+lecam"])
def test_preset_trains_an_epoch_and_resumes_mid_epoch_exactly(preset, small_config, tmp_path,
                                                              request):
    """With the learning rates decaying over the second half (--lr-decay 0.5): a resume
    must pick up the rates where they were (and LeCam its moving averages)."""
    if preset == "sngan+lecam":
        preset = request.getfixturevalue("lecam_preset")
    def config(name):
        return small_config(preset=preset, limit=256, epochs=1, quality_samples=0, ema=0.9,
                            lr_decay=0.5, threads=1,  # no thread-share change mid-run
                            **{k: v for k, v in PRESETS[preset].defaults.items()
                               if k not in ("epochs", "ema")}, run_dir=str(tmp_path / name))

    straight, events = train(config("straight"))
    epoch = events.of(EpochEnd)[0]
    assert all(math.isfinite(v) for v in (epoch.g_loss, epoch.d_loss, epoch.d_real, epoch.d_fake))

    def react(event):
        if isinstance(event, StepStats) and event.global_step == 2:
            interrupted.request_stop("interrupt")

    interrupted = Trainer(config("split"), Recorder(react))
    stopped = interrupted.run().checkpoint
    state = torch.load(stopped, weights_only=True)  # safe to load, EMA included
    assert state["global_step"] == 2 and "generator_ema" in state
    resumed, _ = train(config("split"), resume=stopped)
    for name in ("generator", "discriminator", "generator_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key}"
    assert resumed.global_step == straight.global_step == straight.steps_per_epoch
    if PRESETS[preset].lecam:
        assert straight.gan_step.lecam_anchors.abs().sum() > 0
        assert torch.equal(straight.gan_step.lecam_anchors, resumed.gan_step.lecam_anchors)
    # the last step ran at 1/(steps/2) of each rate
    last = 1 / round(straight.steps_per_epoch / 2)
    for trainer in (straight, resumed):
        assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(trainer.config.lr_g * last)
        assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(trainer.config.lr_d * last)


def test_lr_decay_keeps_the_rates_then_lowers_them_linearly_to_the_last_step():
    assert [lr_scale(step, 8, 0.5) for step in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert {lr_scale(step, 8, 0.0) for step in range(8)} == {1.0}  # off: the seed's rates
    assert lr_scale(99, 100, 1.0) == pytest.approx(0.01)  # never 0: no wasted last step


@pytest.mark.parametrize("preset", ["cgan", "sngan"])
def test_conditional_samples_carry_labels_and_digit_requests_are_obeyed(preset, small_config):
    trainer: Trainer

    def react(event):
        if isinstance(event, StepStats) and event.global_step == 1:
            trainer.send(Sample(count=6, digit=7))
            trainer.send(Sample(count=12))
            trainer.send(Sample(digit=12))  # out of range: a non-fatal error, no samples

    events = Recorder(react)
    trainer = Trainer(small_config(preset=preset, limit=128, epochs=1, quality_samples=0),
                      events)
    trainer.run()
    fixed = [s for s in events.of(Samples) if s.fixed]
    assert fixed[0].labels == tuple(i % 10 for i in range(16))
    fresh = [s for s in events.of(Samples) if not s.fixed]
    assert fresh[0].labels == (7,) * 6 and fresh[0].images.shape == (6, 28, 28)
    assert fresh[1].labels == tuple(i % 10 for i in range(12))
    assert len(fresh) == 2
    assert any("no digit 12" in e.message and not e.fatal for e in events.events
               if type(e).__name__ == "Error")
    assert events.of(Finished)[0].reason == "completed"


@pytest.mark.parametrize("preset", ["cgan", "sngan"])
def test_conditional_fakes_take_the_real_batchs_classes_and_checkpoints_record_the_mix(
        preset, small_config):
    # D compares like with like: each step's fakes carry the real batch's labels, so
    # fakes come in the data's class mix; the checkpoint records that mix for scoring.
    seen: list[torch.Tensor] = []
    trainer = Trainer(small_config(preset=preset, limit=96, epochs=1, quality_samples=0),
                      Recorder())
    trainer.discriminator.register_forward_pre_hook(
        lambda module, args: seen.append(args[1].clone()))
    trainer.run()
    assert len(seen) == 3 * trainer.steps_per_epoch  # fake, real, then fake for G's loss
    for fake, real, fake_for_g in zip(seen[0::3], seen[1::3], seen[2::3], strict=True):
        assert torch.equal(fake, real) and torch.equal(fake_for_g, real)
    data_mix = torch.bincount(trainer.labels.cpu(), minlength=10).tolist()
    assert len(set(data_mix)) > 1  # 96 digits: an uneven mix, so the check means something
    sampler = ckpt.load_sampler(trainer.checkpoint_dir / "last.pt")
    assert sampler.class_counts == tuple(data_mix)


def test_unconditional_presets_ignore_the_digit(small_config):
    def react(event):
        if isinstance(event, StepStats) and event.global_step == 1:
            trainer.send(Sample(count=3, digit=4))

    events = Recorder(react)
    trainer = Trainer(small_config(limit=128, epochs=1, quality_samples=0), events)
    trainer.run()
    fresh = [s for s in events.of(Samples) if not s.fixed]
    assert fresh[0].labels is None and fresh[0].images.shape == (3, 28, 28)


def test_ema_generator_makes_the_samples_and_is_what_checkpoints_hand_out(small_config):
    trainer, events = train(small_config(epochs=1, limit=256, ema=0.9, quality_samples=0))
    assert trainer.generator_ema is not None
    ema_weights = trainer.generator_ema.state_dict()
    raw_weights = trainer.generator.state_dict()
    assert not torch.equal(ema_weights["mean.0.weight"], raw_weights["mean.0.weight"])
    with torch.no_grad():
        expected = trainer.generator_ema(trainer.fixed_noise).squeeze(1).numpy()
    shown = [s for s in events.of(Samples) if s.fixed][-1].images
    assert torch.equal(torch.from_numpy(shown), torch.from_numpy(expected))
    loaded, _ = ckpt.load_generator(trainer.checkpoint_dir / "last.pt")
    assert torch.equal(loaded.state_dict()["mean.0.weight"], ema_weights["mean.0.weight"])


def test_the_ema_draws_with_batchnorm_statistics_of_its_own_outputs(small_config):
    """Standing statistics: a checkpoint's EMA holds the BatchNorm statistics of its own
    outputs (computing them again changes nothing), not G's, copied."""
    trainer, _ = train(small_config(preset="dcgan", epochs=1, limit=256, ema=0.9,
                                    quality_samples=0))
    saved = torch.load(trainer.checkpoint_dir / "last.pt", weights_only=True)
    ema, raw = saved["generator_ema"], saved["generator"]
    means = [key for key in ema if key.endswith("running_mean")]
    assert means and not any(torch.allclose(ema[key], raw[key]) for key in means)
    loaded, config = ckpt.load_generator(trainer.checkpoint_dir / "last.pt")
    random_state = torch.get_rng_state()
    standing_statistics(loaded, config.latent_dim, torch.device("cpu"), labels=None)
    assert torch.equal(torch.get_rng_state(), random_state)  # training's draws untouched
    assert not loaded.training
    for key in means:
        assert torch.allclose(loaded.state_dict()[key], ema[key], atol=1e-6)


def test_cgan_draws_the_digit_asked_for_after_short_training(small_config, monkeypatch):
    """A narrower cgan (same code, width 16) at a high learning rate, 512 real digits,
    32 epochs of 16 steps (~40 s): the classifier mostly reads the requested digit.

    Full-quality conditioning (coverage ~1, FID) is the quality benchmark's job."""
    from gan_tui import models
    from gan_tui.classifier import classify

    monkeypatch.setattr(models, "DCGAN_WIDTH", 16)
    trainer, _ = train(small_config(preset="cgan", batch_size=32, lr_g=2e-3, lr_d=2e-3,
                                    beta1=0.5, epochs=32, quality_samples=0))
    labels = torch.arange(200) // 20  # 20 of each digit
    noise = torch.randn(200, 100, generator=torch.Generator().manual_seed(5))
    _, probs = classify(torch.from_numpy(trainer.generate(noise, labels)), "cpu")
    hits = probs.argmax(1) == labels
    per_digit = [hits[labels == d].float().mean().item() for d in range(10)]
    assert hits.float().mean() > 0.5, per_digit  # chance: 0.1
    assert sum(rate > 0.5 for rate in per_digit) >= 6, per_digit
