"""Running training statistics and the metrics.jsonl log."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gan_tui.process import one_blas_thread

STAT_NAMES = ("g_loss", "d_loss", "d_real", "d_fake")
# Rows of RunningStats: the live-event window, the metrics.jsonl step window, the epoch.
WINDOW, LOG, EPOCH = 0, 1, 2
ROWS = 3


class RunningStats:
    """Sums of the four step statistics over two windows and over the epoch.

    They stay on the training device and are added with one in-place op per step,
    so a GPU never waits for the host; values are read only when an event is due.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(ROWS, len(STAT_NAMES), dtype=torch.float64, device=device)
        self.steps = [0] * ROWS
        self.images = [0] * ROWS

    def add(self, values: Tensor, images: int) -> None:
        self.sums.add_(values.to(torch.float64))  # broadcasts the step into every row
        for row in range(ROWS):
            self.steps[row] += 1
            self.images[row] += images

    def means(self, row: int) -> dict[str, float]:
        steps = max(self.steps[row], 1)
        values = (self.sums[row] / steps).tolist()
        return dict(zip(STAT_NAMES, values, strict=True))

    def reset(self, row: int) -> None:
        self.sums[row].zero_()
        self.steps[row] = 0
        self.images[row] = 0

    # The epoch row is saved in mid-epoch checkpoints so a resumed epoch reports
    # the same means as an uninterrupted one.
    def epoch_state(self) -> dict[str, Any]:
        return {"sums": self.sums[EPOCH].cpu(), "steps": self.steps[EPOCH],
                "images": self.images[EPOCH]}

    def load_epoch_state(self, state: dict[str, Any]) -> None:
        self.sums[EPOCH].copy_(state["sums"])
        self.steps[EPOCH] = int(state["steps"])
        self.images[EPOCH] = int(state["images"])


class MetricsLog:
    """Appends one JSON object per line and flushes, so `tail -f` follows a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> OSError | None:
        """Append a record; a failed write (disk full) is returned, not raised: a lost log
        line must not stop training. Lines still buffered go out with a later flush."""
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as exc:
            return exc
        return None

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:
            return  # the same full disk: the engine reported it when writing


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite metrics.jsonl without the records past `step`; return how many lines went.

    On resume from a checkpoint at `step`, records written after it (an epoch whose save a
    kill -9 cut short, or the later epochs of a run resumed from an older checkpoint) are
    about to be written again: dropping them first keeps the log one run. A torn last line
    (the kill came mid-write) goes too, unless it is a whole record of a kept step. Lines
    that are not records with a step are kept as they are. The rewrite is atomic (a temp
    file in the same folder, then os.replace); a missing file, or one with nothing to
    drop, is left alone.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0
    *lines, tail = raw.split(b"\n")  # tail: what follows the last newline (b"" if none)
    kept = [line for line in lines if not _past(line, step)]
    dropped = len(lines) - len(kept)
    if tail:
        if _step_of(tail) is not None and not _past(tail, step):
            kept.append(tail)  # a whole record that only lacks its newline
        else:
            dropped += 1
    elif not dropped:
        return 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(line + b"\n" for line in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dropped


def _step_of(line: bytes) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:  # includes a torn line's JSONDecodeError and bad UTF-8
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _past(line: bytes, step: int) -> bool:
    found = _step_of(line)
    return found is not None and found > step


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (for tools and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ------------------------------------------------------------- sample quality
# Scores for a batch of generated digits, measured with the shipped MNIST classifier
# (gan_tui.classifier): its penultimate features for a Frechet distance to the real
# digits ("digit FID"), its softmax for an Inception-Score analogue, class coverage
# and confidence.


@dataclass(frozen=True)
class QualityScores:
    fid: float  # Frechet distance to the real digits' features: lower is better
    score: float  # exp(E[KL(p(y|x) || p(y))]): 1 (useless) .. 10 (sharp and balanced)
    coverage: float  # entropy of the predicted-class histogram / log 10: 1 = all classes even
    confidence: float  # mean top-class probability
    histogram: tuple[int, ...]  # predicted-class counts, 0..9
    count: int

    def line(self) -> str:
        return (f"quality: FID {self.fid:.2f} | IS {self.score:.2f} | "
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


def prepare_scoring(device: str | torch.device = "cpu") -> None:
    """Load the classifier and the real digits' feature statistics now (both cached), so
    the first scoring does not pause whoever calls it."""
    from gan_tui.classifier import real_feature_stats

    real_feature_stats(str(torch.device(device)))


def score_digits(images: Tensor | np.ndarray, device: str | torch.device | None = None
                 ) -> QualityScores:
    """All quality scores for N generated digits in [-1, 1] (N x 28 x 28 or N x 1 x 28 x 28).

    Needs at least two digits (a covariance); a few thousand give stable FIDs.
    """
    from gan_tui.classifier import classify, feature_stats, real_feature_stats

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if len(images) < 2:
        raise ValueError("scoring needs at least 2 digits")
    # A diverging generator's NaN pixels still get (bad) finite scores, not a crash.
    images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=-1.0)
    device = torch.device(device) if device is not None else images.device
    feats, probs = classify(images, device)
    mu, sigma = feature_stats(feats)
    real_mu, real_sigma = real_feature_stats(str(device))
    score, coverage, confidence, histogram = class_scores(probs)
    return QualityScores(fid=frechet_distance(mu, sigma, real_mu, real_sigma), score=score,
                         coverage=coverage, confidence=confidence, histogram=histogram,
                         count=len(images))


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
