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
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table

from gan_tui.config import DEVICES
from gan_tui.errors import GanTuiError
from gan_tui.sample import SEED_LIMIT, int_at_least, parse_seed

if TYPE_CHECKING:  # torch loads only when the command runs: `gan-tui --help` stays quick
    from gan_tui.quality import QualityScores

DEFAULT_COUNT = 10_000


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
    p.add_argument("-n", type=int_at_least(2, "a covariance"), default=DEFAULT_COUNT, metavar="N",
                   help=f"digits to score (default {DEFAULT_COUNT:,}; at least 2)")
    p.add_argument("--seed", type=parse_seed, metavar="S",
                   help="noise seed: the same seed gives the same scores (default: random)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the generator and classifier run (default auto)")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run `gan-tui eval`; known failures raise GanTuiError (one line in the CLI)."""
    import torch

    from gan_tui.checkpoint import find_checkpoint, load_sampler
    from gan_tui.quality import real_scores, score_digits
    from gan_tui.sample import generate
    from gan_tui.train import resolve_device

    device = resolve_device(args.device)
    path = find_checkpoint(args.checkpoint)
    sampler = load_sampler(path, device)
    config = sampler.config
    seed = secrets.randbelow(SEED_LIMIT) if args.seed is None else args.seed
    labels = sampler.score_labels(args.n)  # classes in their data's mix, as real digits
    began = time.monotonic()
    images = generate(sampler.generator, args.n, config.latent_dim, seed, device, labels)
    if not np.isfinite(images).all():
        raise EvalError(f"{path}: the generator produces NaN or infinite pixels")
    scores = score_digits(torch.from_numpy(images), device)
    print_scores(Console(highlight=False), scores, real_scores(str(device)), path,
                 config.preset, seed, time.monotonic() - began)
    return 0


def print_scores(console: Console, scores: QualityScores, real: QualityScores, path: Path,
                 preset: str, seed: int, seconds: float) -> None:
    """The scores beside real digits' own: the FID real digits get at the same count (the
    floor), and the IS, coverage and confidence of the 10,000 real test digits."""
    console.print(f"{path}: {preset} preset, {scores.count:,} digits, seed {seed}",
                  soft_wrap=True)
    table = Table()
    table.add_column("score")
    table.add_column("value", justify="right")
    table.add_column("real digits", justify="right")
    table.add_column("meaning")
    table.add_row("digit FID", f"{scores.fid:.2f}", f"{scores.floor:.2f}",
                  "distance to real digits' features (lower is better)")
    table.add_row("classifier score", f"{scores.score:.2f}", f"{real.score:.2f}",
                  "IS analogue, 1..10 (higher is better)")
    table.add_row("class coverage", f"{scores.coverage:.3f}", f"{real.coverage:.3f}",
                  "class entropy / log 10 (1 = all digits equally often)")
    table.add_row("mean confidence", f"{scores.confidence:.3f}", f"{real.confidence:.3f}",
                  "top-class probability")
    console.print(table)
    from gan_tui.quality import histogram_bars

    console.print("predicted classes:\n" + "\n".join(histogram_bars(scores.histogram)))
    console.print(f"scored in {seconds:.1f}s")
