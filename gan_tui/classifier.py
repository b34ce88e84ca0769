"""A small LeNet-style MNIST classifier: the yardstick for sample quality.

Its penultimate layer is the feature space of the "digit FID" and its softmax gives
the classifier score, coverage and confidence (see gan_tui.quality). The weights ship
in the package (assets/classifier.pt, a plain state dict); this module also trains
them, offline:

    python -m gan_tui.classifier --train

It trains on 5,000 digits of MNIST's *training* split (assets/mnist-train-5k), never on
the test split the GANs train on and the scores compare with: features learnt from the
very digits a GAN copies would flatter it. Strong augmentation stands in for the data
it does not have; the whole bundled test split (10,000 digits) is its validation set.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_tui.errors import GanTuiError

WEIGHTS_PATH = Path(__file__).parent / "assets" / "classifier.pt"
NUM_CLASSES = 10
FEATURES = 64
TRAIN_DIR = Path(__file__).parent / "assets" / "mnist-train-5k"
_BATCH = 1_000  # inference batch: bounds memory, big enough to be efficient


class ClassifierError(GanTuiError):
    """The quality classifier's weights are missing or do not fit."""


class DigitClassifier(nn.Module):
    """Conv 5x5/2 (16) -> conv 3x3/2 (32) -> 64 features -> 10 classes.

    Strided convolutions instead of conv + pool: a full-size first feature map costs
    more memory traffic than arithmetic, and scoring must stay cheap (~0.4 MMAC/digit).
    Takes images in [-1, 1] (the GAN's range), shaped N x 28 x 28 or N x 1 x 28 x 28.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),  # 16 x 14 x 14
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 32 x 7 x 7
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)  # training only: a no-op in eval mode
        self.head = nn.Linear(FEATURES, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(x)))

    def embed(self, x: Tensor) -> Tensor:
        """The penultimate (feature) layer: N x FEATURES."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.features(x)


# ------------------------------------------------------------------ inference


@lru_cache(maxsize=4)
def load_classifier(device: str = "cpu") -> DigitClassifier:
    """The shipped classifier in eval mode on `device`, loaded once per process."""
    if not WEIGHTS_PATH.is_file():
        raise ClassifierError(f"quality classifier weights missing ({WEIGHTS_PATH}); "
                              "train them with: python -m gan_tui.classifier --train")
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    # Building a module draws its initial weights from the global RNG: fork it so that
    # scoring during training never shifts the training trajectory.
    with torch.random.fork_rng(devices=[]):
        model = DigitClassifier()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ClassifierError(f"{WEIGHTS_PATH}: weights do not fit the classifier "
                              f"({str(exc).splitlines()[0][:120]})") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


@torch.no_grad()
def classify(images: Tensor, device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
    """(features N x FEATURES, class probabilities N x 10), both float64 on the CPU."""
    device = torch.device(device) if device is not None else images.device
    model = load_classifier(str(device))
    feats, probs = [], []
    for chunk in images.split(_BATCH):
        f = model.embed(chunk.to(device=device, dtype=torch.float32))
        feats.append(f.double().cpu())
        probs.append(F.softmax(model.head(f), dim=1).double().cpu())
    return torch.cat(feats), torch.cat(probs)


# ------------------------------------------------------------------- training


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random affine (+-15 degrees, scale 0.85-1.15, shear +-0.3, shift +-3 px) and stroke
    width (a third of the digits thickened, a third thinned); background stays -1."""
    n = x.size(0)
    angle = _uniform(n, math.radians(15), gen)
    scale = 1 + _uniform(n, 0.15, gen)
    shear = _uniform(n, 0.3, gen)
    shift = _uniform(n, 3 / 14, gen).view(n, 1) * torch.tensor([[1.0, 0.0]]) \
        + _uniform(n, 3 / 14, gen).view(n, 1) * torch.tensor([[0.0, 1.0]])  # 14 px = 1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1),
                         torch.stack([sin, cos + shear * sin, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1
    stroke = torch.randint(0, 3, (n, 1, 1, 1), generator=gen)
    thick = F.max_pool2d(out, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-out, 2, stride=1, padding=1)[..., 1:, 1:]
    return torch.where(stroke == 1, 0.5 * (out + thick), torch.where(stroke == 2, thin, out))


def _uniform(n: int, bound: float, gen: torch.Generator) -> Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * bound


def training_digits() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST training-split digits the classifier learns from (500 per class)."""
    from gan_tui.data import load_idx_dir, to_tensor

    digits = load_idx_dir(TRAIN_DIR, "train")
    return to_tensor(digits.images), torch.from_numpy(digits.labels).long()


def validation_digits() -> tuple[Tensor, Tensor]:
    """The bundled test split, all 10,000: none of it is ever trained on."""
    from gan_tui.data import load_bundled, to_tensor

    digits = load_bundled()
    return to_tensor(digits.images), torch.from_numpy(digits.labels).long()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    hits = sum(int((model(cx).argmax(1) == cy).sum()) for cx, cy in zip(x.split(_BATCH),
                                                                       y.split(_BATCH),
                                                                       strict=True))
    return hits / len(y)


def train_classifier(epochs: int = 60, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                     log=print) -> tuple[DigitClassifier, float]:
    """Train on the 5,000 training digits; return (model, accuracy on the test split)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x, y = training_digits()
    vx, vy = validation_digits()
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        began, total = time.monotonic(), 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1:2d}/{epochs} | loss {total / len(x):.4f} | "
            f"val acc {accuracy(model, vx, vy):.4f} | {time.monotonic() - began:.1f}s")
    return model.eval(), accuracy(model, vx, vy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gan_tui.classifier",
                                     description="Train or check the quality classifier.")
    parser.add_argument("--train", action="store_true", help=f"train and write {WEIGHTS_PATH}")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    if args.train:
        model, acc = train_classifier(epochs=args.epochs, seed=args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.out)
        print(f"accuracy {acc:.4f} on the 10,000 test digits (never trained on); "
              f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
        return 0
    try:
        model = load_classifier("cpu")
    except GanTuiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    vx, vy = validation_digits()
    print(f"accuracy {accuracy(model, vx, vy):.4f} on the 10,000 test digits (never trained on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
