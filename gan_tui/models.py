"""The seed tutorial's MLP Generator and Discriminator, and a registry of presets.

Layer for layer and name for name as in the seed (`self.mean = nn.Sequential(...)`),
so a state dict saved by the seed's own script loads into these classes as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gan_tui.presets import PRESET_INFO

IMAGE_PIXELS = 28 * 28


def _block(in_feat: int, out_feat: int, normalize: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(in_feat, out_feat)]
    if normalize:
        # The seed writes BatchNorm1d(out_feat, 0.8) meaning momentum=0.8, but the
        # second positional argument is `eps`: this is the well-known PyTorch-GAN
        # quirk. The preset keeps eps=0.8 (momentum stays 0.1) to stay faithful.
        layers.append(nn.BatchNorm1d(out_feat, 0.8))
    layers.append(nn.LeakyReLU(0.2))
    return layers


class Generator(nn.Module):
    """Noise (latent_dim) -> 256 -> 512 -> 1024 -> 784 pixels in [-1, 1]."""

    def __init__(self, latent_dim: int = 100) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.mean = nn.Sequential(
            *_block(latent_dim, 256, normalize=False),
            *_block(256, 512),
            *_block(512, 1024),
            nn.Linear(1024, IMAGE_PIXELS),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.mean(z).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """784 pixels -> 512 -> 256 -> 1 probability that the image is real."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Sequential(
            nn.Linear(IMAGE_PIXELS, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mean(x.view(-1, IMAGE_PIXELS))


NUM_CLASSES = 10


class ConvGenerator(nn.Module):
    """DCGAN for 28 x 28: z (+ label embedding) -> 2w x 7 x 7 -> w x 14 x 14 -> 1 x 28 x 28.

    BatchNorm + ReLU between layers, Tanh out. With `num_classes` it is conditional:
    forward(z, labels) concatenates a learned label embedding to the noise.
    """

    def __init__(self, latent_dim: int = 100, width: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        self.project = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7),
            nn.ReLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(need_labels(labels))], dim=1)
        return self.upsample(self.project(z).view(-1, 2 * self.width, 7, 7))


class ConvDiscriminator(nn.Module):
    """Two stride-2 convs with LeakyReLU and dropout -> one Sigmoid probability (BCE as the
    seed). With `num_classes`, forward(x, labels) adds the label as a learned 28 x 28 plane."""

    def __init__(self, width: int = 64, num_classes: int = 0, dropout: float = 0.3) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, IMAGE_PIXELS) if num_classes else None
        channels = 2 if num_classes else 1
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            plane = self.embed(need_labels(labels)).view(-1, 1, 28, 28)
            x = torch.cat([x, plane], dim=1)
        return self.features(x)


def cycle_labels(count: int) -> Tensor:
    """0, 1, ..., 9, 0, 1, ...: every class equally often (the fixed digits on screen)."""
    return torch.arange(count) % NUM_CLASSES


def prior_labels(count: int, class_counts: Sequence[int] | None) -> Tensor:
    """`count` labels in the proportions of `class_counts` (the training data's classes),
    interleaved so that every prefix is within one of each class's share; None (a model
    saved before its classes were recorded): every class equally often, as cycle_labels.

    Scores draw classes this way because the data's mix is part of the distribution a
    conditional model learns: MNIST's test split has 1,135 ones but 892 fives, and
    drawing them evenly costs real digits themselves 0.4 FID (README, quality).
    """
    weights = torch.ones(NUM_CLASSES) if class_counts is None else torch.tensor(
        [float(c) for c in class_counts])
    share = weights / weights.sum()
    # The k-th label of class c is due at (k + 1/2) / share_c (Sainte-Lague's divisors):
    # taking labels in order of their due times keeps every prefix proportional.
    per_class = int(count * share.max()) + 2
    due = (torch.arange(per_class).unsqueeze(0) + 0.5) / share.clamp_min(1e-12).unsqueeze(1)
    order = torch.argsort(due.flatten(), stable=True)[:count]
    return order // per_class


def need_labels(labels: Tensor | None) -> Tensor:
    if labels is None:
        raise ValueError("a conditional model needs class labels: call model(x, labels)")
    return labels


@dataclass(frozen=True)
class Preset:
    """A named pair of networks with the defaults it was tuned for."""

    name: str
    description: str
    make_generator: Callable[[int], nn.Module]
    make_discriminator: Callable[[], nn.Module]
    conditional: bool = False
    # TrainConfig values this preset was tuned with; explicit CLI flags still win.
    defaults: dict[str, Any] = field(default_factory=dict)
    loss: str = "bce"  # gan_tui.train.losses
    augment: str = ""  # DiffAugment policy (gan_tui.train.augment); "" = none
    r1: float = 0.0  # R1 penalty weight on D's gradients at real digits (GanStep); 0 = none
    lecam: float = 0.0  # LeCam weight on D's scores (GanStep); 0 = none


# Channel width of the convolutional presets: small enough for CPU training.
DCGAN_WIDTH = 32
# sngan's D: a 3 x 3 convolution after each strided one (round 5; README).
SNGAN_DISCRIMINATOR = {"deep": True}


def _preset(name: str, make_generator: Callable[[int], nn.Module],
            make_discriminator: Callable[[], nn.Module]) -> Preset:
    info = PRESET_INFO[name]
    return Preset(name, info.description, make_generator, make_discriminator,
                  info.conditional, dict(info.defaults), info.loss, info.augment, info.r1,
                  info.lecam)


PRESETS: dict[str, Preset] = {
    "seed": _preset("seed", Generator, Discriminator),
    "dcgan": _preset("dcgan", lambda latent_dim: ConvGenerator(latent_dim, width=DCGAN_WIDTH),
                     lambda: ConvDiscriminator(width=DCGAN_WIDTH)),
    "cgan": _preset("cgan",
                    lambda latent_dim: ConvGenerator(latent_dim, width=DCGAN_WIDTH,
                                                     num_classes=NUM_CLASSES),
                    lambda: ConvDiscriminator(width=DCGAN_WIDTH, num_classes=NUM_CLASSES)),
    "sngan": _preset("sngan", lambda latent_dim: _sngan().SnGenerator(latent_dim, DCGAN_WIDTH),
                     lambda: _sngan().ProjectionDiscriminator(DCGAN_WIDTH, **SNGAN_DISCRIMINATOR)),
}


def _sngan():  # noqa: ANN202 - the module; imported late, as it imports this one
    import gan_tui.sngan

    return gan_tui.sngan


def build_models(preset: str, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """Fresh (generator, discriminator) for a preset, with PyTorch's default init as the seed."""
    spec = PRESETS[preset]
    return spec.make_generator(latent_dim), spec.make_discriminator()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
