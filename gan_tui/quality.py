"""Sample quality under the shipped classifier (gan_tui.classifier): the digit FID with
its real-vs-real floor, a classifier score (Inception-Score analogue), class coverage
and confidence.

The yardstick is fixed and never trained on: the bundled test split is cut into two
class-balanced halves of 5,000 digits, A and B. Generated digits are compared with B;
the *floor* is A against B at the same count, the FID that real digits themselves get.
A FID means something next to its floor: "FID 31 (real vs real 3.2)". Counts above
5,000 are scored in equal chunks against B (10,000 digits: the mean of two 5,000-digit
FIDs), so a score and its floor always compare the same sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from gan_tui.classifier import classify
from gan_tui.events import floor_note
from gan_tui.process import one_blas_thread

HALF = 5_000  # digits in each reference half of the bundled test split
FLOOR_DRAWS = 4  # disjoint subsets of half A averaged for a small count's floor


@dataclass(frozen=True)
class QualityScores:
    fid: float  # Frechet distance to real half B's features: lower is better
    floor: float  # the same distance for real digits (half A) at the same count
    score: float  # exp(E[KL(p(y|x) || p(y))]): 1 (useless) .. 10 (sharp and balanced)
    coverage: float  # entropy of the predicted-class histogram / log 10: 1 = all classes even
    confidence: float  # mean top-class probability
    histogram: tuple[int, ...]  # predicted-class counts, 0..9
    count: int

    def line(self) -> str:
        return (f"quality: FID {self.fid:.2f}{floor_note(self.floor)} | IS {self.score:.2f} | "
                f"coverage {self.coverage:.3f} | conf {self.confidence:.3f}")


@one_blas_thread
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), without scipy.

    tr((S1 S2)^1/2) equals tr((A S2 A)^1/2) with A = S1^1/2, and A S2 A is symmetric
    positive semi-definite, so two symmetric eigendecompositions give it stably.
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root
    return float(max(value, 0.0))


@one_blas_thread
def feature_stats(feats: Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = feats.double().numpy()
    return x.mean(axis=0), np.cov(x, rowvar=False)


def class_scores(probs: Tensor) -> tuple[float, float, float, tuple[int, ...]]:
    """(classifier score, coverage, mean confidence, histogram) from N x 10 probabilities."""
    probs = probs.double().clamp_min(1e-12)
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.log() - marginal.log())).sum(1)
    counts = torch.bincount(probs.argmax(1), minlength=probs.size(1))
    share = counts.double() / counts.sum()
    entropy = -(share[share > 0] * share[share > 0].log()).sum()
    coverage = float(entropy / math.log(probs.size(1))) + 0.0  # + 0.0: never print -0.000
    return (float(kl.mean().exp()), coverage, float(probs.max(1).values.mean()),
            tuple(int(c) for c in counts))


# ------------------------------------------------------------- the real digits


def half_indices(labels: np.ndarray) -> tuple[Tensor, Tensor]:
    """Indices of halves A and B of a labelled set of 2 x HALF digits: disjoint, every
    class split evenly (to a digit), the same on every machine."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    by_class = order[torch.sort(torch.from_numpy(labels)[order], stable=True).indices]
    # Every other digit of each class to each half, then each half shuffled again, so
    # that any run of it (a small count's floor) is a fair sample of all classes.
    shuffle = torch.randperm(HALF, generator=torch.Generator().manual_seed(1))
    return by_class[0::2][shuffle], by_class[1::2][shuffle]


@lru_cache(maxsize=1)
def real_halves() -> tuple[Tensor, Tensor]:
    """Halves A and B of the bundled test split (images in [-1, 1]), 5,000 each."""
    from gan_tui.data import load_bundled, to_tensor

    digits = load_bundled()
    images = to_tensor(digits.images)
    a, b = half_indices(digits.labels)
    return images[a], images[b]


@lru_cache(maxsize=4)
def _half_features(device: str) -> tuple[Tensor, Tensor]:
    a, b = real_halves()
    return classify(a, device)[0], classify(b, device)[0]


@lru_cache(maxsize=4)
def reference_stats(device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of half B's classifier features (cached)."""
    return feature_stats(_half_features(device)[1])


@lru_cache(maxsize=16)
def fid_floor(count: int, device: str = "cpu") -> float:
    """The FID real digits get at `count` digits: disjoint subsets of half A against B."""
    size = chunk_size(count)
    feats_a = _half_features(device)[0]
    draws = max(1, min(FLOOR_DRAWS, HALF // size))
    mu, sigma = reference_stats(device)
    return float(np.mean([frechet_distance(*feature_stats(feats_a[i * size:(i + 1) * size]),
                                           mu, sigma) for i in range(draws)]))


def chunk_size(count: int) -> int:
    """Digits per FID chunk: all of them up to a half's size, else equal chunks of <= 5,000."""
    return count // math.ceil(count / HALF)


def fid_to_reference(feats: Tensor, device: str = "cpu") -> float:
    """Mean FID of equal chunks of `feats` against half B (a remainder under one digit per
    chunk is left out)."""
    size = chunk_size(len(feats))
    mu, sigma = reference_stats(device)
    chunks = [feats[i:i + size] for i in range(0, len(feats) - size + 1, size)]
    return float(np.mean([frechet_distance(*feature_stats(c), mu, sigma) for c in chunks]))


@lru_cache(maxsize=4)
def real_scores(device: str = "cpu") -> QualityScores:
    """The scores of all 10,000 real test digits (their FID is half A's against B)."""
    a, b = real_halves()
    _, probs = classify(torch.cat([a, b]), device)
    score, coverage, confidence, histogram = class_scores(probs)
    floor = fid_floor(HALF, device)
    return QualityScores(fid=floor, floor=floor, score=score, coverage=coverage,
                         confidence=confidence, histogram=histogram, count=2 * HALF)


# ------------------------------------------------------------------ scoring


def prepare_scoring(device: str | torch.device = "cpu", count: int = HALF) -> None:
    """Load the classifier, the reference statistics and the floor for `count` digits now
    (all cached), so the first scoring does not pause whoever calls it."""
    fid_floor(count, str(torch.device(device)))


def score_digits(images: Tensor | np.ndarray, device: str | torch.device | None = None
                 ) -> QualityScores:
    """All quality scores for N generated digits in [-1, 1] (N x 28 x 28 or N x 1 x 28 x 28).

    Needs at least two digits (a covariance); a few thousand give stable FIDs.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if len(images) < 2:
        raise ValueError("scoring needs at least 2 digits")
    # A diverging generator's NaN pixels still get (bad) finite scores, not a crash.
    images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=-1.0)
    device = str(torch.device(device) if device is not None else images.device)
    feats, probs = classify(images, device)
    score, coverage, confidence, histogram = class_scores(probs)
    return QualityScores(fid=fid_to_reference(feats, device), floor=fid_floor(len(images), device),
                         score=score, coverage=coverage, confidence=confidence,
                         histogram=histogram, count=len(images))


def histogram_bars(histogram: Sequence[int], width: int = 24) -> list[str]:
    """One text bar per class, scaled to the largest: `3 ████████▌  104`."""
    eighths = " ▏▎▍▌▋▊▉█"
    top = max(max(histogram), 1)
    lines = []
    for digit, count in enumerate(histogram):
        units = round(count / top * width * 8)
        bar = "█" * (units // 8) + (eighths[units % 8] if units % 8 else "")
        lines.append(f"{digit} {bar:<{width}} {count:>6,}")
    return lines
