"""The seed preset must be the tutorial's networks, layer for layer and name for name."""

import torch
from torch import nn

from gan_tui.models import Discriminator, Generator, build_models, count_parameters

SEED_G_NAMES = ["mean.0.weight", "mean.0.bias", "mean.2.weight", "mean.2.bias",
                "mean.3.weight", "mean.3.bias", "mean.5.weight", "mean.5.bias",
                "mean.6.weight", "mean.6.bias", "mean.8.weight", "mean.8.bias"]
SEED_D_NAMES = ["mean.0.weight", "mean.0.bias", "mean.2.weight", "mean.2.bias",
                "mean.4.weight", "mean.4.bias"]


def test_generator_matches_seed_layers_and_counts():
    g = Generator()
    assert [n for n, _ in g.named_parameters()] == SEED_G_NAMES
    assert count_parameters(g) == 1_489_424
    linears = [m for m in g.mean if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (100, 256), (256, 512), (512, 1024), (1024, 784)]
    norms = [m for m in g.mean if isinstance(m, nn.BatchNorm1d)]
    assert [(m.num_features, m.eps, m.momentum) for m in norms] == [(512, 0.8, 0.1),
                                                                    (1024, 0.8, 0.1)]
    assert all(m.negative_slope == 0.2 for m in g.mean if isinstance(m, nn.LeakyReLU))
    assert isinstance(g.mean[-1], nn.Tanh)


def test_discriminator_matches_seed_layers_and_counts():
    d = Discriminator()
    assert [n for n, _ in d.named_parameters()] == SEED_D_NAMES
    assert count_parameters(d) == 533_505
    assert isinstance(d.mean[-1], nn.Sigmoid)


def test_shapes_and_ranges():
    g, d = build_models("seed", 100)
    images = g(torch.randn(5, 100))
    assert images.shape == (5, 1, 28, 28)
    assert images.abs().max() <= 1
    scores = d(images)
    assert scores.shape == (5, 1)
    assert ((scores > 0) & (scores < 1)).all()


def test_state_dict_from_the_seed_script_loads_as_is():
    """The seed's own classes (copied verbatim) save a state dict ours accepts."""

    class SeedGenerator(nn.Module):
        def __init__(self):
            super().__init__()

            def block(in_feat, out_feat, normalize=True):
                layers = [nn.Linear(in_feat, out_feat)]
                if normalize:
                    layers.append(nn.BatchNorm1d(out_feat, 0.8))
                layers.append(nn.LeakyReLU(0.2))
                return layers

            self.mean = nn.Sequential(*block(100, 256, normalize=False), *block(256, 512),
                                      *block(512, 1024), nn.Linear(1024, 28 * 28), nn.Tanh())

        def forward(self, x):
            return self.mean(x).view(-1, 1, 28, 28)

    seed = SeedGenerator().eval()
    ours = Generator().eval()
    ours.load_state_dict(seed.state_dict())  # strict: every name and shape must match
    z = torch.randn(3, 100)
    assert torch.equal(ours(z), seed(z))
