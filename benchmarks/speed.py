"""Engine vs the seed's own loop: images per second, same device, data and maths."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.common import BATCH, Row, alternate, interval_text, median
from benchmarks.seed_loop import SeedLoop
from gan_tui.config import TrainConfig
from gan_tui.events import EpochEnd, Event, Started
from gan_tui.train import Trainer

MAX_STEPS = 10_000 // BATCH  # one epoch of the bundled 10,000 digits: 156 full batches


def engine_seconds(steps: int, device: str, seed: int = 0) -> float:
    """Wall time of `steps` engine steps: a fresh Trainer runs one epoch of exactly
    `steps` full batches (the first steps * 64 digits), with the product's defaults
    (stats every 100 ms, a metrics line every 100 steps). Timed from its Started
    event to its EpochEnd event, so the whole training loop counts (commands, stats,
    logging) but not building the Trainer nor the end-of-epoch samples and save."""
    marks: dict[type, float] = {}

    def sink(event: Event) -> None:
        if isinstance(event, (Started, EpochEnd)):
            marks[type(event)] = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        config = TrainConfig(epochs=1, seed=seed, device=device, run_dir=tmp,
                             limit=steps * BATCH)
        Trainer(config, sink).run()
    return marks[EpochEnd] - marks[Started]


def bench_engine_vs_seed(device: str, steps: int, repeats: int, warmup: int,
                         log: Callable[[str], None]) -> Row:
    steps = max(2, min(steps, MAX_STEPS))
    dev = torch.device(device)
    log(f"engine vs seed loop: {repeats} x {steps} steps each on {device}, "
        f"after {warmup} warm-up steps")
    seed = SeedLoop(dev)
    seed.run(warmup)
    engine_seconds(max(warmup, 2), device)
    images = steps * BATCH
    runs = {
        "seed": lambda rep: images / seed.run(steps),
        "engine": lambda rep: images / engine_seconds(steps, device, seed=rep),
    }
    results = alternate(runs, repeats, log)
    ratios = [e / s for e, s in zip(results["engine"], results["seed"], strict=True)]
    ratio = median(ratios)
    target = 1.8 if dev.type == "cpu" else None
    return Row(
        name=f"engine vs seed loop ({dev.type})", baseline_label="seed loop",
        baseline=median(results["seed"]), ours=median(results["engine"]), unit="img/s",
        ratio=ratio, target=">= 1.80x" if target else "faster (no CPU target)",
        passed=ratio >= target if target else ratio > 1.0,
        note=f"{repeats} alternating repeats of {steps} steps; ratio = median of the "
             f"per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}"
             f"{interval_text(ratios)}",
        samples={**results, "ratio": ratios},
    )
