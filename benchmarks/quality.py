"""Quality benchmark: the seed after its 100 epochs, the other presets after the same
wall-clock budget, all scored the same way.

    python -m benchmarks.quality                 # seed: 100 epochs; others: 400 s each
    python -m benchmarks.quality --budget 200    # a shorter budget for the others
    python -m benchmarks.quality --seed-epochs 0 # the seed gets the budget too
    python -m benchmarks.quality --quick         # smoke run: 10 s each, 1,000 digits

Every preset trains on the bundled MNIST digits with its own defaults (Preset.defaults).
The seed trains its tutorial's 100 epochs (the baseline the issue names: on a 2-core
CPU that is about the 400 s the others get); the others train until the budget of
training time runs out (checked between steps; the per-epoch quality scoring is off so
it costs no budget). Then the last checkpoint (the EMA generator where the preset keeps
one) is scored on N digits with the MNIST classifier (gan_tui.quality). The table
sets each FID beside the floor (real digits' FID at the same count), each IS beside
real digits' IS, and gives each FID as a ratio to the seed's. The issue's targets for
the best preset: FID <= 2x the floor, IS >= 97 % of real digits', coverage >= 0.995.

    python -m benchmarks.quality --checkpoint-every 5 --runs-root runs-q
        # keep a checkpoint every 5 epochs for benchmarks.ranking
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gan_tui.checkpoint import load_sampler
from gan_tui.config import TrainConfig
from gan_tui.events import Event, Finished, StepStats
from gan_tui.models import PRESETS
from gan_tui.quality import fid_floor, real_scores, score_digits
from gan_tui.sample import generate
from gan_tui.train import Trainer

DEFAULT_BUDGET_S = 400.0
QUICK_BUDGET_S = 10.0
BASELINE = "seed"
SEED_EPOCHS = 100  # the tutorial's run


@dataclass
class Result:
    preset: str
    budget_s: float  # 0: no time budget, the preset trained its `epochs` in full
    epochs: float  # completed epochs plus the fraction of the one the budget cut short
    steps: int
    train_s: float
    fid: float
    score: float
    coverage: float
    confidence: float
    samples: int
    threads: int
    device: str
    floor: float = 0.0  # real digits' FID at the same count (0: not measured)


class BudgetSink:
    """Stops the trainer once its training time (StepStats.elapsed_s) reaches the budget."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.trainer: Trainer | None = None
        self.last: StepStats | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStats):
            self.last = event
            if event.elapsed_s >= self.budget_s and self.trainer is not None:
                self.trainer.request_stop("budget")


def bench_preset(preset: str, budget_s: float, samples: int, seed: int, device: str,
                 runs_root: Path, epochs: int = 0, checkpoint_every: int = 1_000_000,
                 overrides: dict | None = None, name: str | None = None) -> Result:
    """Train `preset` for `budget_s` seconds (or, given `epochs`, for that many epochs,
    however long they take), then score its checkpoint on `samples` digits.
    `overrides`: config values over the preset's defaults; `name`: the run's (and the
    result's) name, the preset's by default."""
    budget_s = 0.0 if epochs else budget_s
    name = name or preset
    config = TrainConfig.from_dict({
        **PRESETS[preset].defaults, **(overrides or {}), "preset": preset,
        "epochs": epochs or 1_000_000, "seed": seed, "device": device,
        "run_dir": str(runs_root / name), "quality_samples": 0,
        "checkpoint_every": checkpoint_every, "stats_interval_ms": 200})
    sink = BudgetSink(budget_s or float("inf"))
    trainer = Trainer(config, sink)
    sink.trainer = trainer
    finished: Finished = trainer.run()
    last = sink.last
    epochs = trainer.epoch + trainer.batch / trainer.steps_per_epoch
    sampler = load_sampler(finished.checkpoint or "", trainer.device)
    labels = sampler.score_labels(samples)
    images = generate(sampler.generator, samples, sampler.config.latent_dim, seed + 1000,
                      trainer.device, labels)
    scores = score_digits(torch.from_numpy(images), trainer.device)
    return Result(preset=name, budget_s=budget_s, epochs=round(epochs, 2),
                  steps=trainer.global_step, train_s=round(last.elapsed_s if last else 0.0, 1),
                  fid=scores.fid, score=scores.score, coverage=scores.coverage,
                  confidence=scores.confidence, samples=samples,
                  threads=torch.get_num_threads(), device=str(trainer.device),
                  floor=scores.floor)


COLUMNS = ("preset", "budget", "epochs", "digit FID", "FID / floor", "IS", "IS / real",
           "coverage", "confidence", "seed FID / FID")


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    """One row per result, then real digits' own: the floor (at the first result's count)
    and the IS, coverage and confidence of the 10,000 real test digits."""
    base = next((r.fid for r in results if r.preset == BASELINE), None)
    real = real_scores()
    rows = [(r.preset, _budget(r), f"{r.epochs:.1f}", f"{r.fid:.2f}",
             f"{r.fid / r.floor:.1f}x" if r.floor else "-", f"{r.score:.2f}",
             f"{r.score / real.score:.0%}", f"{r.coverage:.3f}", f"{r.confidence:.3f}",
             _ratio(base, r.fid)) for r in results]
    floor = fid_floor(results[0].samples) if results else real.fid
    rows.append(("real digits", "-", "-", f"{floor:.2f}", "1.0x", f"{real.score:.2f}", "100%",
                 f"{real.coverage:.3f}", f"{real.confidence:.3f}", "-"))
    return rows


def results_table(results: list[Result]) -> Table:
    table = Table(title="digit quality: the seed after its epochs, the others after the budget",
                  title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name == "preset" else "right")
    for row in table_rows(results):
        table.add_row(*row)
    return table


def markdown_table(results: list[Result]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "| --- |" + " ---: |" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def _budget(r: Result) -> str:
    return f"{r.budget_s:.0f} s" if r.budget_s else f"none ({r.train_s:.0f} s)"


def _ratio(base: float | None, fid: float) -> str:
    """How many times lower than the seed's FID (the seed itself: 1.0x)."""
    if base is None or fid <= 0:
        return "-"
    return f"{base / fid:.1f}x"


def machine_line() -> str:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
            f"{torch.__version__} with {torch.get_num_threads()} threads, load average {load}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, help=f"seconds of training per preset "
                   f"(default {DEFAULT_BUDGET_S:.0f}; --quick: {QUICK_BUDGET_S:.0f})")
    p.add_argument("--seed-epochs", type=int,
                   help=f"epochs for the seed preset, whatever time they take (default "
                        f"{SEED_EPOCHS}, the tutorial's; 0: the time budget, as the others)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: short budget for every preset, 1,000 digits")
    p.add_argument("--presets", default=",".join(PRESETS),
                   help="comma-separated presets (default: all)")
    p.add_argument("-n", type=int, help="digits scored per preset (default 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="training device (default cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--runs-root", type=Path, help="keep the runs here (default: a temp dir)")
    p.add_argument("--checkpoint-every", type=int, default=1_000_000, metavar="K",
                   help="keep a checkpoint every K epochs (for benchmarks.ranking; default: "
                        "the last only)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                   help="print one table from result files of earlier runs, train nothing")
    args = p.parse_args(argv)
    args.budget = args.budget or (QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S)
    args.n = args.n or (1_000 if args.quick else 10_000)
    if args.seed_epochs is None:
        args.seed_epochs = 0 if args.quick else SEED_EPOCHS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False)
    if args.combine:
        results = [Result(**r) for f in args.combine for r in json.loads(f.read_text())]
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        unknown = [p for p in args.presets.split(",") if p not in PRESETS]
        if unknown:
            console.print(f"unknown preset(s): {', '.join(unknown)} (choose from "
                          f"{', '.join(PRESETS)})")
            return 2
        console.print(f"machine: {machine_line()}")
        results = run_all(args, console)
        console.print(f"machine afterwards: {machine_line()}")
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    console.print(results_table(results))
    print(markdown_table(results))  # plain, unwrapped: paste-ready for the README
    return 0


def run_all(args: argparse.Namespace, console: Console) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        root = args.runs_root or Path(tmp)
        for preset in args.presets.split(","):
            began = time.monotonic()
            epochs = args.seed_epochs if preset == BASELINE else 0
            console.print(f"{preset}: training for "
                          + (f"{epochs} epochs ..." if epochs else f"{args.budget:.0f} s ..."))
            r = bench_preset(preset, args.budget, args.n, args.seed, args.device, root, epochs,
                             args.checkpoint_every)
            console.print(f"{preset}: {r.epochs:.1f} epochs, FID {r.fid:.2f}, IS {r.score:.2f}, "
                          f"coverage {r.coverage:.3f} ({time.monotonic() - began:.0f} s)")
            results.append(r)
    return results


if __name__ == "__main__":
    sys.exit(main())
