"""Does our FID rank runs the way a differently built classifier does?

    python -m benchmarks.quality --checkpoint-every 5 --runs-root runs-q   # checkpoints
    python -m benchmarks.ranking runs-q                                     # then this

Scores kept checkpoints of every run under the folder (by default three per run: the
first kept copy, one from the middle and the last) on N digits each, by:

- ours: gan_tui.quality's digit FID (a small CNN trained on 5,000 MNIST *training*
  digits with strong augmentation; reference: half B of the test split);
- check: a differently built and differently trained classifier, made here: an MLP
  784-512-256-10 with BatchNorm, trained with SGD and no augmentation on half A of the
  test split; FID of its 256 penultimate features against half B, same chunks;
- old (with --old-weights PATH): round 1's classifier (the same CNN trained on 8,000
  test digits) against all 10,000 test digits, as round 1 scored.

Prints each checkpoint's FIDs and ranks and Spearman's rank correlation of ours (and
old) with the check. The issue's target: Spearman >= 0.9.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from gan_tui.checkpoint import load_sampler
from gan_tui.classifier import DigitClassifier
from gan_tui.quality import (
    chunk_size,
    feature_stats,
    frechet_distance,
    half_indices,
    real_halves,
    score_digits,
)
from gan_tui.sample import generate

Embed = Callable[[Tensor], Tensor]


@dataclass
class Scored:
    name: str
    ours: float
    check: float
    old: float | None = None


# ------------------------------------------------------------- the check classifier


class CheckMlp(nn.Module):
    """784 -> 512 -> 256 (the features) -> 10, BatchNorm and ReLU: no convolution at all."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.BatchNorm1d(512),
                                  nn.ReLU(), nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU())
        self.head = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def train_check(epochs: int = 20, seed: int = 0) -> CheckMlp:
    """SGD with momentum, no augmentation, on half A's 5,000 digits and their labels."""
    torch.manual_seed(seed)
    x, y = _half_a_labelled()
    model = CheckMlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(100):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def _half_a_labelled() -> tuple[Tensor, Tensor]:
    return _half_labelled(0)


def _half_labelled(which: int) -> tuple[Tensor, Tensor]:
    from gan_tui.data import load_bundled, to_tensor

    digits = load_bundled()
    half = half_indices(digits.labels)[which]
    return to_tensor(digits.images)[half], torch.from_numpy(digits.labels).long()[half]


def check_accuracy(model: CheckMlp) -> float:
    x, y = _half_labelled(1)
    return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------ scoring


def chunked_fid(feats: Tensor, reference: tuple[np.ndarray, np.ndarray]) -> float:
    """As gan_tui.quality: mean FID of equal chunks of <= 5,000 against the reference."""
    size = chunk_size(len(feats))
    chunks = [feats[i:i + size] for i in range(0, len(feats) - size + 1, size)]
    return float(np.mean([frechet_distance(*feature_stats(c), *reference) for c in chunks]))


def embed_with(body: nn.Module) -> Embed:
    """Features of N images by `body`, 1,000 at a time, float64, no autograd."""

    @torch.no_grad()
    def embed(x: Tensor) -> Tensor:
        return torch.cat([body(c.float()).double() for c in x.split(1000)])

    return embed


def pick_checkpoints(run: Path, per_run: int) -> list[Path]:
    """`per_run` kept copies spread from first to last (0: all), by epoch."""
    kept = sorted(run.glob("checkpoints/epoch_*.pt"), key=_epoch_of)
    last = run / "checkpoints" / "last.pt"
    if last.is_file() and (not kept or _epoch_of(kept[-1]) < _saved_epoch(last)):
        kept.append(last)
    if per_run <= 0 or len(kept) <= per_run:
        return kept
    spots = np.linspace(0, len(kept) - 1, per_run).round().astype(int)
    return [kept[i] for i in sorted(set(spots))]


def _epoch_of(path: Path) -> int:
    match = re.search(r"epoch_(\d+)", path.name)
    return int(match.group(1)) if match else 10**9


def _saved_epoch(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return int(state.get("epoch", 0))


def label(path: Path) -> str:
    epoch = _epoch_of(path) if path.name != "last.pt" else _saved_epoch(path)
    return f"{path.parent.parent.name} @ epoch {epoch}"


def samples_of(path: Path, n: int, seed: int) -> Tensor:
    sampler = load_sampler(path, "cpu")
    config = sampler.config
    labels = sampler.score_labels(n)
    images = generate(sampler.generator, n, config.latent_dim, seed, "cpu", labels)
    return torch.nan_to_num(torch.from_numpy(images), nan=0.0).clamp(-1, 1)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties are unlikely in FIDs)."""
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def old_embedder(weights: Path) -> tuple[Embed, tuple[np.ndarray, np.ndarray]]:
    model = DigitClassifier()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    embed = embed_with(model.embed)
    a, b = real_halves()
    return embed, feature_stats(embed(torch.cat([a, b])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, help="a folder of runs (benchmarks.quality --runs-root)")
    p.add_argument("--per-run", type=int, default=3, help="checkpoints per run (0: all kept)")
    p.add_argument("-n", type=int, default=5_000, help="digits per checkpoint (default 5,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--old-weights", type=Path, help="round 1's classifier.pt, to compare")
    p.add_argument("--check-epochs", type=int, default=20, help="the check MLP's epochs")
    args = p.parse_args(argv)
    console = Console(highlight=False)
    paths = [c for run in sorted(args.runs.iterdir()) if (run / "checkpoints").is_dir()
             for c in pick_checkpoints(run, args.per_run)]
    if len(paths) < 3:
        console.print(f"{args.runs}: fewer than 3 checkpoints to rank")
        return 2
    check = train_check(args.check_epochs, seed=args.seed)
    with torch.no_grad():
        rank(paths, check, args, console)
    return 0


def rank(paths: list[Path], check: CheckMlp, args: argparse.Namespace,
         console: Console) -> None:
    """Score every checkpoint three (or two) ways; print the table and the correlations."""
    check_embed = embed_with(check.body)
    _, b = real_halves()
    check_reference = feature_stats(check_embed(b))
    old = old_embedder(args.old_weights) if args.old_weights else None
    scored = []
    for path in paths:
        images = samples_of(path, args.n, args.seed + 1000)
        row = Scored(label(path), ours=score_digits(images).fid,
                     check=chunked_fid(check_embed(images), check_reference))
        if old is not None:
            row.old = chunked_fid(old[0](images), old[1])
        console.print(f"{row.name}: ours {row.ours:.2f}, check {row.check:.2f}"
                      + (f", old {row.old:.2f}" if row.old is not None else ""))
        scored.append(row)
    console.print(ranking_table(scored))
    console.print(f"check classifier: {check_accuracy(check):.2%} on half B (never trained on)")
    rho = spearman([s.ours for s in scored], [s.check for s in scored])
    console.print(f"Spearman rank correlation, ours vs check: {rho:.3f} over {len(scored)} "
                  f"checkpoints (target >= 0.9)")
    if old is not None:
        rho_old = spearman([s.old for s in scored], [s.check for s in scored])
        console.print(f"Spearman rank correlation, old vs check: {rho_old:.3f}")


def ranking_table(scored: list[Scored]) -> Table:
    table = Table(title="digit FID by three classifiers (rank in brackets, 1 = best)",
                  title_justify="left")
    columns = ["checkpoint", "ours", "check"] + (["old"] if scored[0].old is not None else [])
    for name in columns:
        table.add_column(name, justify="left" if name == "checkpoint" else "right")
    ranks = {key: np.argsort(np.argsort([getattr(s, key) for s in scored])) + 1
             for key in columns[1:]}
    for i, s in enumerate(scored):
        table.add_row(s.name, *(f"{getattr(s, k):.2f} ({ranks[k][i]})" for k in columns[1:]))
    return table


if __name__ == "__main__":
    sys.exit(main())
