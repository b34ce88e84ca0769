"""The seed tutorial's MLP Generator and Discriminator, and a registry of presets.

Layer for layer and name for name as in the seed (`self.mean = nn.Sequential(...)`),
so a state dict saved by the seed's own script loads into these classes as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

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


PRESETS: dict[str, Preset] = {
    "seed": Preset(
        name="seed",
        description="the tutorial's MLP GAN, unchanged",
        make_generator=Generator,
        make_discriminator=Discriminator,
    ),
}


def build_models(preset: str, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """Fresh (generator, discriminator) for a preset, with PyTorch's default init as the seed."""
    spec = PRESETS[preset]
    return spec.make_generator(latent_dim), spec.make_discriminator()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
