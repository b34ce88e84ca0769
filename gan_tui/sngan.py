"""The `sngan` preset's networks: a conditional GAN in the style of SNGAN with a
projection discriminator (Miyato et al. 2018; Miyato & Koyama 2018), sized for CPUs.

G: z -> 2w x 7 x 7 -> w x 14 x 14 -> 1 x 28 x 28, transposed convolutions as the
dcgan preset, but the class enters through conditional BatchNorm (a per-class gain
and bias after every normalisation) rather than a concatenated embedding.
D: two stride-2 convolutions, each followed by a 3 x 3 one (as SNGAN's CNN D; with
only the strided ones D was what held the digits back: README, round 5), every
weight spectrally normalised (its largest singular value held at 1: D stays
Lipschitz, so the hinge loss cannot blow up), and the class enters by projection:
score = psi(phi(x)) + <embed(y), phi(x)>, which asks D "is this a real image *of
this class*" directly. D's output is a raw score for the hinge loss (no Sigmoid).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_tui.models import NUM_CLASSES, need_labels


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then a gain and a bias looked up by class."""

    def __init__(self, features: int, num_classes: int, dims: int = 2) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.norm = norm(features, affine=False)
        self.gain = nn.Embedding(num_classes, features)
        self.bias = nn.Embedding(num_classes, features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        shape = (-1, x.size(1)) + (1,) * (x.dim() - 2)
        return self.norm(x) * self.gain(labels).view(shape) + self.bias(labels).view(shape)


class SnGenerator(nn.Module):
    """Conditional G: forward(z, labels) -> N x 1 x 28 x 28 in [-1, 1]."""

    def __init__(self, latent_dim: int = 100, width: int = 32,
                 num_classes: int = NUM_CLASSES, refine: bool = False) -> None:
        """`refine`: one more 3 x 3 convolution at 14 x 14 (for the ablation)."""
        super().__init__()
        self.latent_dim = latent_dim
        self.width = width
        self.project = nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False)
        self.norm0 = ConditionalBatchNorm(2 * width * 7 * 7, num_classes, dims=1)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)
        self.norm1 = ConditionalBatchNorm(width, num_classes)
        self.refine = nn.Conv2d(width, width, 3, padding=1, bias=False) if refine else None
        self.norm2 = ConditionalBatchNorm(width, num_classes) if refine else None
        self.up2 = nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        labels = need_labels(labels)
        h = torch.relu(self.norm0(self.project(z), labels)).view(-1, 2 * self.width, 7, 7)
        h = torch.relu(self.norm1(self.up1(h), labels))
        if self.refine is not None and self.norm2 is not None:
            h = torch.relu(self.norm2(self.refine(h), labels))
        return torch.tanh(self.up2(h))


class ProjectionDiscriminator(nn.Module):
    """Spectrally normalised conditional D: forward(x, labels) -> N x 1 raw scores."""

    def __init__(self, width: int = 32, num_classes: int = NUM_CLASSES,
                 spectral: bool = True, projection: bool = True,
                 batch_spread: bool = False, deep: bool = False) -> None:
        """`spectral`, `projection` False: for the ablation (benchmarks.ablation); without
        projection the class enters as a learned input plane, as in the cgan preset.
        `batch_spread`: D also sees how much the batch's features vary (minibatch
        standard deviation, Karras et al. 2018), so a G short of variety shows.
        `deep`: a 3 x 3 convolution after each strided one (as SNGAN's CNN D; the
        sngan preset's since round 5, whose checkpoints need it: without it, round 4's)."""
        super().__init__()
        norm = spectral_norm if spectral else (lambda module: module)
        self.batch_spread = batch_spread
        features = 2 * width * 7 * 7 + int(batch_spread)
        self.plane = None if projection else nn.Embedding(num_classes, 28 * 28)

        def block(into: int, out: int) -> list[nn.Module]:
            layers = [norm(nn.Conv2d(into, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.1)]
            if deep:
                layers += [norm(nn.Conv2d(out, out, 3, padding=1)), nn.LeakyReLU(0.1)]
            return layers

        self.features = nn.Sequential(*block(1 if projection else 2, width),
                                      *block(width, 2 * width), nn.Flatten())
        self.score = norm(nn.Linear(features, 1))
        self.embed = norm(nn.Embedding(num_classes, features)) if projection else None

    def phi(self, x: Tensor) -> Tensor:
        """The features D scores: its convolutions' (and the batch's spread)."""
        h = self.features(x)
        if not self.batch_spread:
            return h
        spread = h.std(dim=0, unbiased=False).mean() if h.size(0) > 1 else h.new_zeros(())
        return torch.cat([h, spread.expand(h.size(0), 1)], dim=1)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.plane is not None:
            x = torch.cat([x, self.plane(need_labels(labels)).view(-1, 1, 28, 28)], dim=1)
        h = self.phi(x)
        out = self.score(h)
        if self.embed is not None:
            out = out + (self.embed(need_labels(labels)) * h).sum(1, keepdim=True)
        return out
