"""The GAN step: tensors in, a stats tensor out.

Written to be captured as a graph later: fixed shapes for a given batch, no host-device
sync, and nothing read per step but what it is passed (the EMA decay is an argument).
The maths and the order of random draws are the seed's; resume exactness and the seed
faithfulness tests depend on both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gan_tui.train.augment import Augment
from gan_tui.train.ema import update_ema
from gan_tui.train.losses import GanLoss

# Called with a network's parameters between its backward and its optimizer step: under
# torchrun it averages their gradients over the ranks (train/dist.py); None alone.
GradientSync = Callable[[list[Tensor]], None]


def call(model: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """model(x), or model(x, labels) for a conditional preset."""
    return model(x) if labels is None else model(x, labels)


R1_EVERY = 4  # steps between R1 penalties (lazy regularisation)
LECAM_DECAY = 0.99  # of the moving averages LeCam holds D's scores to (Tseng et al. 2021)


class GanStep:
    """One optimisation step of a generator/discriminator pair, exactly as the seed.

    D on (real, G(z).detach()), then G through D(G(z)), then the EMA of G if there is one.
    Under torchrun `sync_gradients` averages each network's gradients over the ranks
    before its optimizer step, so every rank takes the same step (G and D apart: never
    one wrapper over both).
    Conditional presets get `labels` for the real batch, and their fakes take the same
    labels: the data's class mix (drawn evenly, fakes put 892 fives beside the data's
    1,135 ones), and D compares like with like. With `augment`
    (DiffAugment) D sees every image, real or fake, through it, and so does G's loss.
    With `r1` > 0, every R1_EVERY-th step (by the trainer's `step` count, so resumes stay
    exact) D's loss also penalises its gradients at the real digits. With `lecam` > 0
    D's loss also holds its scores near moving averages of each other's (LeCam), kept in
    `lecam_anchors`, which a checkpoint saves.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 loss: GanLoss, latent_dim: int, device: torch.device,
                 generator_ema: nn.Module | None = None,
                 sync_gradients: GradientSync | None = None,
                 augment: Augment | None = None, r1: float = 0.0,
                 lecam: float = 0.0) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.loss = loss
        self.augment = augment
        self.r1 = r1
        self.lecam = lecam
        # Moving averages of D's mean score on real and on fake digits (LeCam's anchors).
        self.lecam_anchors = torch.zeros(2, device=device)
        self.latent_dim = latent_dim
        self.device = device
        self.generator_ema = generator_ema
        self.sync_gradients = sync_gradients
        # Fixed for the run: the loop need not look them up each step.
        self._d_params = [p for p in discriminator.parameters() if p.requires_grad]
        self._g_params = [p for p in generator.parameters() if p.requires_grad]

    def __call__(self, real: Tensor, labels: Tensor | None = None,
                 ema_decay: float = 0.0, step: int = 0) -> Tensor:
        """Train on one batch; return [g_loss, d_loss, D(real) mean, D(fake) mean] on the
        device (reading it is the caller's choice of when to sync)."""
        noise, fake_labels = self.draw_noise(real.size(0)), labels
        fake = call(self.generator, noise, fake_labels)

        fake_score = call(self.discriminator, self._seen(fake.detach()), fake_labels)
        d_fake_loss = self.loss.d_fake(fake_score)
        penalise = self.r1 > 0 and step % R1_EVERY == 0
        seen_real = self._seen(real).detach().requires_grad_(penalise)
        real_score = call(self.discriminator, seen_real, labels)
        d_real_loss = self.loss.d_real(real_score)
        d_loss = d_fake_loss + d_real_loss
        if penalise:
            d_loss = d_loss + self._r1_penalty(real_score, seen_real)
        if self.lecam > 0:
            d_loss = d_loss + self._lecam_penalty(real_score, fake_score)
        self.opt_d.zero_grad()
        d_loss.backward()
        if self.sync_gradients is not None:
            self.sync_gradients(self._d_params)
        self.opt_d.step()

        fake_g_score = self._score_with_d_frozen(self._seen(fake), fake_labels)
        g_loss = self.loss.g(fake_g_score)
        self.opt_g.zero_grad()
        g_loss.backward()
        if self.sync_gradients is not None:
            self.sync_gradients(self._g_params)
        self.opt_g.step()
        if self.generator_ema is not None:
            update_ema(self.generator_ema, self.generator, ema_decay)

        with torch.no_grad():
            return torch.stack([g_loss, d_loss, self.loss.probability(real_score).mean(),
                                self.loss.probability(fake_score).mean()])

    def _r1_penalty(self, real_score: Tensor, seen_real: Tensor) -> Tensor:
        """R1 (Mescheder et al. 2018): r1 / 2 * E ||grad_x D(x)||^2 at real digits, taken
        every R1_EVERY steps and weighted as many times ("lazy", as StyleGAN2)."""
        (grad,) = torch.autograd.grad(real_score.sum(), seen_real, create_graph=True)
        return grad.square().flatten(1).sum(1).mean() * (self.r1 / 2 * R1_EVERY)

    def _lecam_penalty(self, real_score: Tensor, fake_score: Tensor) -> Tensor:
        """LeCam (Tseng et al. 2021, "Regularizing Generative Adversarial Networks under
        Limited Data"): lecam * (E (D(x) - a_fake)^2 + E (D(G(z)) - a_real)^2), where
        a_real and a_fake are moving averages of D's mean scores. It keeps D from pulling
        the digits it trains on away from the fakes, which it starts to do by memorising
        them (on 10,000 digits D scores them above held-out real digits late in a run).
        Each rank averages its own batches (under torchrun a resume gives all rank 0's)."""
        anchor_real, anchor_fake = self.lecam_anchors.clone().unbind()
        penalty = ((real_score - anchor_fake).square().mean()
                   + (fake_score - anchor_real).square().mean())
        means = torch.stack([real_score.mean(), fake_score.mean()]).detach()
        self.lecam_anchors.lerp_(means, 1 - LECAM_DECAY)
        return self.lecam * penalty

    def _seen(self, images: Tensor) -> Tensor:
        """The images as D sees them: through DiffAugment where the preset uses it."""
        return images if self.augment is None else self.augment(images)

    def draw_noise(self, size: int) -> Tensor:
        """G's noise for `size` fakes."""
        return torch.randn(size, self.latent_dim, device=self.device)

    def _score_with_d_frozen(self, fake: Tensor, fake_labels: Tensor | None) -> Tensor:
        """D(G(z)) for G's loss.

        G's backward needs D's input gradients only. D's weight gradients from it
        were never read (opt_d.zero_grad() drops them before D's next backward), so
        they are not computed: three fewer matrix products a step, no number changed.
        """
        for p in self._d_params:
            p.requires_grad_(False)
        try:
            return call(self.discriminator, fake, fake_labels)
        finally:
            for p in self._d_params:
                p.requires_grad_(True)
