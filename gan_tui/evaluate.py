"""`gan-tui eval`: score a trained generator with the MNIST quality classifier.

Draws N digits from seeded noise (conditional presets: every class equally often),
then prints the digit FID, classifier score, coverage, confidence and the class
histogram as a table. See gan_tui.metrics for what each number means.
"""

from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from gan_tui.checkpoint import load_generator, resolve
from gan_tui.config import DEVICES
from gan_tui.engine import resolve_device
from gan_tui.errors import CheckpointError, GanTuiError
from gan_tui.metrics import QualityScores, histogram_bars, score_digits
from gan_tui.models import PRESETS, cycle_labels

BATCH = 1000  # digits per forward pass: bounded memory for large -n
DEFAULT_COUNT = 10_000
SEED_LIMIT = 2**63


class EvalError(GanTuiError):
    """`gan-tui eval` was asked for something it cannot do."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `eval` subcommand to the CLI's subparsers."""
    p = commands.add_parser(
        "eval", help="score a trained generator: digit FID, IS, class coverage, confidence",
        description="Draw N digits from a trained generator and score them with the bundled "
        "MNIST classifier: digit FID (lower is better), classifier score (IS analogue, up "
        "to 10), class coverage (1 = every digit equally often) and mean confidence.")
    p.add_argument("--checkpoint", metavar="PATH", default="latest",
                   help="a gan-tui checkpoint, a run folder, or 'latest' (default)")
    p.add_argument("-n", type=_count, default=DEFAULT_COUNT, metavar="N",
                   help=f"digits to score (default {DEFAULT_COUNT:,}; at least 2)")
    p.add_argument("--seed", type=_seed, metavar="S",
                   help="noise seed: the same seed gives the same scores (default: random)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the generator and classifier run (default auto)")
    p.set_defaults(func=run_eval)


def _count(text: str) -> int:
    value = _int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a covariance), got {value}")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must lie in 0..2**63-1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def run_eval(args: argparse.Namespace) -> int:
    """Run `gan-tui eval`; known failures raise GanTuiError (one line in the CLI)."""
    device = resolve_device(args.device)
    path = find_checkpoint(args.checkpoint)
    generator, config = load_generator(path, device)
    seed = secrets.randbelow(SEED_LIMIT) if args.seed is None else args.seed
    conditional = PRESETS[config.preset].conditional
    began = time.monotonic()
    images = generate(generator, args.n, config.latent_dim, seed, device, conditional)
    if not np.isfinite(images).all():
        raise EvalError(f"{path}: the generator produces NaN or infinite pixels")
    scores = score_digits(torch.from_numpy(images), device)
    print_scores(Console(highlight=False), scores, path, config.preset, seed,
                 time.monotonic() - began)
    return 0


def find_checkpoint(path_or_latest: str, runs_root: str = "runs") -> Path:
    """`latest`, a run folder or a file -> the file to load (checked by the loader)."""
    if path_or_latest == "latest":
        try:
            return resolve("latest", runs_root)
        except CheckpointError:
            raise CheckpointError(f"no {runs_root}/*/checkpoints/last.pt under {Path.cwd()} "
                                  "(train first, or pass --checkpoint PATH)") from None
    path = Path(path_or_latest)
    in_run = path / "checkpoints" / "last.pt"
    return in_run if path.is_dir() and in_run.is_file() else path


@torch.no_grad()
def generate(generator: nn.Module, count: int, latent_dim: int, seed: int,
             device: torch.device | str = "cpu", conditional: bool = False) -> np.ndarray:
    """`count` digits (float32 N x 28 x 28); conditional models cycle through 0-9."""
    generator.eval()
    rng = torch.Generator().manual_seed(seed)
    labels = cycle_labels(count) if conditional else None
    parts = []
    for start in range(0, count, BATCH):
        stop = min(start + BATCH, count)
        z = torch.randn(stop - start, latent_dim, generator=rng).to(device)
        out = generator(z) if labels is None else generator(z, labels[start:stop].to(device))
        parts.append(out.float().cpu().reshape(stop - start, 28, 28).numpy())
    return np.concatenate(parts)


def print_scores(console: Console, scores: QualityScores, path: Path, preset: str, seed: int,
                 seconds: float) -> None:
    console.print(f"{path}: {preset} preset, {scores.count:,} digits, seed {seed}",
                  soft_wrap=True)
    table = Table()
    table.add_column("score")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    table.add_row("digit FID", f"{scores.fid:.2f}", "distance to real digits' features (lower "
                  "is better; real digits ~0)")
    table.add_row("classifier score", f"{scores.score:.2f}", "IS analogue, 1..10 (higher is "
                  "better)")
    table.add_row("class coverage", f"{scores.coverage:.3f}", "class entropy / log 10 (1 = all "
                  "digits equally often)")
    table.add_row("mean confidence", f"{scores.confidence:.3f}", "top-class probability")
    console.print(table)
    console.print("predicted classes:\n" + "\n".join(histogram_bars(scores.histogram)))
    console.print(f"scored in {seconds:.1f}s")
