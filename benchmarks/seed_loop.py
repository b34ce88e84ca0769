"""The seed tutorial's training loop, reproduced as the seed writes it.

The one change: the seed builds `datasets.MNIST(root, train=False, download=False)`
from files on disk, which needs the network (or the full training set) here. So
`SeedMNIST` is torchvision's own `datasets.MNIST` class with its file loading
replaced by the bundled test split: the per-item code path (`__getitem__`: a PIL
image made with `mode="L"`, then the transforms) is torchvision's, unchanged.
Models are gan_tui's seed preset (layer for layer the seed's), Adam is the default
(not fused), and every step ends with the seed's two `.item()` calls.

`python -m benchmarks.seed_loop --steps N` runs the loop alone (the memory baseline).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
import torchvision.transforms as transforms
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.datasets.vision import VisionDataset

from gan_tui.data import load_digits
from gan_tui.models import Discriminator, Generator

BATCH_SIZE = 64  # the seed's DataLoader(batch_size=64, shuffle=True)


def seed_transform() -> transforms.Compose:
    """Exactly the seed's transform pipeline."""
    return transforms.Compose([
        transforms.Resize((28, 28)),
        transforms.ToTensor(),
        transforms.Normalize([0.5], [0.5]),
    ])


class SeedMNIST(datasets.MNIST):
    """torchvision's MNIST over the bundled test split (the seed's train=False)."""

    def __init__(self, limit: int | None = None, transform=None) -> None:
        VisionDataset.__init__(self, root="", transform=transform)
        digits = load_digits(limit=limit)
        self.train = False
        self.data = torch.from_numpy(digits.images.copy())
        self.targets = torch.from_numpy(digits.labels.copy())


@dataclass
class SeedLoop:
    """The seed's objects, built once; `run(steps)` trains like one seed epoch does."""

    device: torch.device
    limit: int | None = None

    def __post_init__(self) -> None:
        mnist = SeedMNIST(limit=self.limit, transform=seed_transform())
        self.dataloader = DataLoader(dataset=mnist, batch_size=BATCH_SIZE, shuffle=True)
        self.generator = Generator().to(self.device)
        self.discriminator = Discriminator().to(self.device)
        self.G_Apim = torch.optim.Adam(self.generator.parameters(), lr=0.0001)
        self.D_Apim = torch.optim.Adam(self.discriminator.parameters(), lr=0.0002)
        self.criterion = nn.BCELoss()

    def run(self, steps: int) -> float:
        """Train `steps` batches (new epochs as needed); return the wall seconds taken.

        The body is the seed's loop, line for line; on a GPU the batch and the noise
        are put on the device (the seed itself is CPU-only).
        """
        generator, discriminator = self.generator, self.discriminator
        G_Apim, D_Apim, criterion = self.G_Apim, self.D_Apim, self.criterion  # noqa: N806
        device = self.device
        G_epoch_loss = 0  # noqa: N806
        D_epoch_loss = 0  # noqa: N806
        done = 0
        began = time.perf_counter()
        while done < steps:
            for _i, (img, _) in enumerate(self.dataloader):
                img = img.to(device)
                size = img.size(0)
                fake_img = torch.randn(size, 100, device=device)
                output_fake = generator(fake_img)
                fake_score = discriminator(output_fake.detach())
                D_fake_loss = criterion(fake_score, torch.zeros_like(fake_score))  # noqa: N806
                real_score = discriminator(img)
                D_real_loss = criterion(real_score, torch.ones_like(real_score))  # noqa: N806
                D_loss = D_fake_loss + D_real_loss  # noqa: N806
                D_Apim.zero_grad()
                D_loss.backward()
                D_Apim.step()

                fake_G_score = discriminator(output_fake)  # noqa: N806
                G_fake_loss = criterion(fake_G_score, torch.ones_like(fake_G_score))  # noqa: N806
                G_Apim.zero_grad()
                G_fake_loss.backward()
                G_Apim.step()

                with torch.no_grad():
                    G_epoch_loss += G_fake_loss.item()  # noqa: N806
                    D_epoch_loss += D_loss.item()  # noqa: N806
                done += 1
                if done == steps:
                    break
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description="the seed's loop alone (memory baseline)")
    parser.add_argument("--steps", type=int, default=157)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loop = SeedLoop(torch.device(args.device))
    seconds = loop.run(args.steps)
    print(f"seed loop: {args.steps} steps in {seconds:.2f} s")


if __name__ == "__main__":
    main()
