"""The sngan preset and its parts: DiffAugment, the hinge loss, spectral norm and the
projection discriminator; and that it keeps every promise the other presets keep
(resume exactness, divergence, digit keys)."""

import pytest
import torch
import torch.nn.functional as F

from gan_tui import checkpoint as ckpt
from gan_tui.cli import build_parser, config_from_args, main
from gan_tui.events import CheckpointSaved, Diverged, Finished
from gan_tui.models import PRESETS, build_models, count_parameters
from gan_tui.sngan import ProjectionDiscriminator, SnGenerator
from gan_tui.train import Trainer
from gan_tui.train.augment import cutout, make_augment, translation
from gan_tui.train.losses import BceLoss, HingeLoss, LogitBceLoss
from tests.conftest import Recorder
from tests.test_reliability import digest, poison_after_first_checkpoint


def digit_like(n: int = 6) -> torch.Tensor:
    """A 6 x 6 block of ink in the middle of a 28 x 28 background."""
    x = -torch.ones(n, 1, 28, 28)
    x[:, :, 11:17, 11:17] = 1.0
    return x


# ------------------------------------------------------------------ DiffAugment


def test_translation_moves_the_ink_and_fills_with_background():
    torch.manual_seed(0)
    moved = translation(digit_like(32))
    ink = (moved > 0).flatten(1).sum(1)
    assert (ink == 36).all()  # a 4 px shift cannot push the block out: nothing lost
    assert ((moved == 1) | (moved == -1)).all()  # no grey from padding
    centres = [(m[0] > 0).nonzero().float().mean(0) for m in moved]
    offsets = torch.stack(centres) - 13.5
    assert offsets.abs().max() <= 4 and (offsets != 0).any()


def test_cutout_blanks_one_square_of_half_the_size_to_background():
    torch.manual_seed(1)
    cut = cutout(torch.ones(64, 1, 28, 28))
    blanked = (cut == -1).flatten(1).sum(1)
    assert blanked.max() == 14 * 14 and blanked.min() >= 1  # whole inside, or clipped at edges
    assert ((cut == 1) | (cut == -1)).all()


def test_augment_policy_is_differentiable_and_checked():
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    make_augment("translation,cutout")(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert make_augment("") is None
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        make_augment("translation,flip")


# ---------------------------------------------------------------------- losses


def test_hinge_loss_stops_pushing_past_the_margin():
    hinge = HingeLoss()
    scores = torch.tensor([-2.0, 0.0, 2.0])
    assert hinge.d_real(scores).item() == pytest.approx((3 + 1 + 0) / 3)
    assert hinge.d_fake(scores).item() == pytest.approx((0 + 1 + 3) / 3)
    assert hinge.g(scores).item() == pytest.approx(0.0)
    assert hinge.d_real(torch.tensor([float("nan")])).isnan()  # the engine sees divergence


def test_logit_bce_is_the_seeds_bce_on_sigmoid_probabilities():
    scores = torch.tensor([-3.0, -0.5, 0.0, 1.5, 4.0])
    probs = torch.sigmoid(scores)
    seed, logits = BceLoss(), LogitBceLoss()
    for side in ("d_real", "d_fake", "g"):
        assert getattr(logits, side)(scores).item() == pytest.approx(
            getattr(seed, side)(probs).item(), rel=1e-5)


# -------------------------------------------------------------------- networks


def test_sngan_networks_are_cpu_sized_conditional_and_give_raw_scores():
    g, d = build_models("sngan", 100)
    assert isinstance(g, SnGenerator) and isinstance(d, ProjectionDiscriminator)
    assert count_parameters(g) < 1_000_000 and count_parameters(d) < 200_000
    labels = torch.tensor([0, 3, 7, 9])
    images = g(torch.randn(4, 100), labels)
    assert images.shape == (4, 1, 28, 28) and images.abs().max() <= 1
    assert d(images, labels).shape == (4, 1)
    with pytest.raises(ValueError, match="needs class labels"):
        g(torch.randn(2, 100))
    assert PRESETS["sngan"].conditional and PRESETS["sngan"].loss == "hinge"
    deeper = SnGenerator(100, refine=True)  # the ablation's deeper G: one more layer
    assert deeper(torch.randn(4, 100), labels).shape == (4, 1, 28, 28)
    assert count_parameters(deeper) > count_parameters(g)


def test_the_ablations_discriminator_options_change_what_d_sees():
    x, labels = torch.randn(6, 1, 28, 28), torch.arange(6)
    plain = ProjectionDiscriminator()
    deep = ProjectionDiscriminator(deep=True)
    assert count_parameters(deep) > count_parameters(plain)
    assert deep(x, labels).shape == (6, 1)
    # Loading round 2's sngan checkpoints needs the default's names unchanged.
    assert set(plain.state_dict()) == set(ProjectionDiscriminator(deep=False).state_dict())
    spread = ProjectionDiscriminator(batch_spread=True).eval()
    alike = x[:1].repeat(6, 1, 1, 1)
    # One image's score moves with the rest of its batch: D sees the batch's variety.
    assert spread(x, labels)[0] != spread(torch.cat([x[:1], alike[1:]]), labels)[0]
    assert spread(x[:1], labels[:1]).shape == (1, 1)  # a batch of one: no spread, no error


def test_r1_penalises_d_gradients_at_real_digits_every_fourth_step():
    # D(x) = <w, x>: its gradient at any x is w, so R1 is r1 / 2 * ||w||^2 (times 4, lazy).
    from gan_tui.train.step import R1_EVERY, GanStep

    def d_loss(r1: float, step: int) -> float:
        torch.manual_seed(0)
        generator = torch.nn.Sequential(torch.nn.Linear(3, 784), torch.nn.Unflatten(1, (1, 28, 28)))
        discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1, bias=False))
        with torch.no_grad():
            discriminator[1].weight.fill_(0.01)
        opt = torch.optim.SGD(discriminator.parameters(), lr=0.0)
        gan_step = GanStep(generator, discriminator, torch.optim.SGD(generator.parameters(), 0.0),
                           opt, HingeLoss(), 3, torch.device("cpu"), r1=r1)
        return float(gan_step(torch.randn(4, 1, 28, 28), step=step)[1])

    penalty = 2.0 / 2 * R1_EVERY * 784 * 0.01 ** 2
    assert d_loss(2.0, step=8) == pytest.approx(d_loss(0.0, step=8) + penalty, rel=1e-5)
    assert d_loss(2.0, step=9) == pytest.approx(d_loss(0.0, step=9))  # lazy: not this step


def test_lecam_holds_d_scores_near_moving_averages_of_each_others():
    # D(real) is pulled towards the fakes' running mean score and D(fake) towards the
    # reals'; the running means then move 1 % towards this batch's.
    from gan_tui.train.step import LECAM_DECAY, GanStep

    torch.manual_seed(0)
    generator = torch.nn.Sequential(torch.nn.Linear(3, 784), torch.nn.Unflatten(1, (1, 28, 28)))
    discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1))
    real, noise = torch.randn(4, 1, 28, 28), torch.randn(4, 3)

    def d_loss(lecam: float) -> tuple[float, torch.Tensor]:
        gan_step = GanStep(generator, discriminator,
                           torch.optim.SGD(generator.parameters(), 0.0),
                           torch.optim.SGD(discriminator.parameters(), 0.0), HingeLoss(), 3,
                           torch.device("cpu"), lecam=lecam)
        gan_step.draw_noise = lambda size: noise
        gan_step.lecam_anchors.copy_(torch.tensor([0.5, -0.5]))  # (real, fake)
        return float(gan_step(real)[1]), gan_step.lecam_anchors

    with torch.no_grad():
        real_score, fake_score = discriminator(real), discriminator(generator(noise))
    penalty = 0.3 * ((real_score + 0.5).square().mean() + (fake_score - 0.5).square().mean())
    with_lecam, anchors = d_loss(0.3)
    assert with_lecam == pytest.approx(d_loss(0.0)[0] + float(penalty), rel=1e-5)
    expected = torch.tensor([0.5, -0.5]).lerp(
        torch.stack([real_score.mean(), fake_score.mean()]), 1 - LECAM_DECAY)
    assert torch.allclose(anchors, expected)


def test_spectral_norm_holds_each_layer_of_d_near_one():
    d = ProjectionDiscriminator()
    x, labels = torch.randn(8, 1, 28, 28), torch.arange(8)
    for _ in range(30):  # each training-mode call runs one power iteration
        d(x, labels)
    d.eval()
    conv = d.features[2]
    sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_projection_scores_depend_on_the_class():
    d = ProjectionDiscriminator().eval()
    x = torch.randn(1, 1, 28, 28).repeat(10, 1, 1, 1)
    scores = d(x, torch.arange(10)).flatten()
    assert scores.unique().numel() == 10


def test_cli_help_lists_sngan_and_applies_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    described = [line.split(None, 1) for line in lines if line.startswith("  ")]
    names = [parts[0] for parts in described if len(parts) == 2]
    assert [n for n in names if n in PRESETS] == list(PRESETS)  # a line each, in order
    assert any(line.startswith("  sngan  conditional SNGAN") for line in lines)
    args = build_parser().parse_args(["train", "--preset", "sngan"])
    config, _ = config_from_args(args)
    assert (config.lr_g, config.lr_d, config.beta1, config.beta2) == (1.6e-3, 3.2e-3, 0.0, 0.9)
    assert (config.batch_size, config.ema, PRESETS['sngan'].r1) == (64, 0.999, 1.0)
    assert PRESETS["sngan"].lecam == 0.0  # LeCam did not pay at the plateau (README)


# ------------------------------------------------------------- the promises


def test_sngan_diverging_stops_and_keeps_the_last_good_checkpoint(small_config):
    box, before = [], []
    events = Recorder(poison_after_first_checkpoint(box, before))
    trainer = Trainer(small_config(preset="sngan", epochs=3, quality_samples=0), events)
    box.append(trainer)
    finished = trainer.run()
    [diverged] = events.of(Diverged)
    assert diverged.global_step == 9 and "nan" in diverged.message
    assert (finished.reason, finished.checkpoint_step) == ("diverged", 8)
    assert digest(trainer.checkpoint_dir / "last.pt") == before[0]
    assert [e.global_step for e in events.of(CheckpointSaved)] == [8]
    assert isinstance(events.of(Finished)[0], Finished)


def test_sngan_checkpoint_samples_the_digit_asked_for(small_config, tmp_path, capsys):
    trainer = Trainer(small_config(preset="sngan", epochs=1, limit=128, quality_samples=0),
                      Recorder())
    trainer.run()
    generator, config = ckpt.load_generator(trainer.checkpoint_dir / "last.pt")
    assert config.preset == "sngan"
    assert main(["sample", "--checkpoint", str(trainer.checkpoint_dir / "last.pt"),
                 "--digit", "7", "-n", "4", "--seed", "1", "--render", "ascii"]) == 0
    assert "7" in capsys.readouterr().out
    with torch.no_grad():
        out = generator(torch.randn(3, 100), torch.tensor([7, 7, 7]))
    assert out.shape == (3, 1, 28, 28) and F.hardtanh(out).equal(out)


def test_sngan_draws_the_digit_asked_for_after_short_training(small_config):
    """Its own defaults on 512 real digits, 48 epochs of 8 steps (~40 s; its deeper D
    needs more than round 4's 32): the classifier reads the requested digit for nearly
    all. Full quality is the quality benchmark's job."""
    from gan_tui.classifier import classify
    from tests.conftest import train

    defaults = {k: v for k, v in PRESETS["sngan"].defaults.items() if k != "epochs"}
    trainer, _ = train(small_config(preset="sngan", epochs=48, quality_samples=0, **defaults))
    labels = torch.arange(200) // 20  # 20 of each digit
    noise = torch.randn(200, 100, generator=torch.Generator().manual_seed(5))
    _, probs = classify(torch.from_numpy(trainer.generate(noise, labels)), "cpu")
    hits = probs.argmax(1) == labels
    per_digit = [round(hits[labels == d].float().mean().item(), 2) for d in range(10)]
    assert hits.float().mean() > 0.7, per_digit  # chance: 0.1
    assert sum(rate > 0.5 for rate in per_digit) >= 8, per_digit
