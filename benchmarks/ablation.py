"""What each part of the `sngan` preset brings: train variants that drop one part each
for the same budget, score them the same way (benchmarks.quality).

    python -m benchmarks.ablation                      # every variant, 400 s each
    python -m benchmarks.ablation --only full,no-augment --budget 150 --parallel 2

`--parallel 2` trains two variants at a time with one thread each: on a 2-core box the
pair shares the machine evenly, so variants compare fairly, but every figure is lower
than one preset alone on both cores gets (the README says which was used).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.quality import Result, bench_preset, machine_line, markdown_table, results_table

BASE = "sngan"


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig values
    preset: dict[str, Any] = field(default_factory=dict)  # PresetInfo fields (loss, augment)
    discriminator: dict[str, Any] = field(default_factory=dict)  # ProjectionDiscriminator args
    generator: dict[str, Any] = field(default_factory=dict)  # SnGenerator args
    width: int | None = None  # channel width of G and D (the preset's: DCGAN_WIDTH)
    # Train this many epochs instead of for the budget (a schedule such as --lr-decay
    # needs to know where the run ends): pick about what the budget holds.
    epochs: int = 0


VARIANTS = [
    Variant("full", "the preset as shipped"),
    Variant("no-spectral-norm", "no spectral normalisation in D",
            discriminator={"spectral": False}),
    Variant("bce", "cross-entropy (on logits) instead of hinge", preset={"loss": "bce-logits"}),
    Variant("no-projection", "class as an input plane of D (as cgan), not projection",
            discriminator={"projection": False}),
    Variant("one-lr", "one learning rate for both, G's (no two time-scales)",
            config={"lr_d": 1.6e-3}),
    Variant("sngan-lr", "SNGAN's usual rates, 2e-4 / 4e-4 (8x lower)",
            config={"lr_g": 2e-4, "lr_d": 4e-4}),
    Variant("no-ema", "samples from G itself, no EMA", config={"ema": 0.0}),
    Variant("ema-0.9995", "a longer EMA of G (0.9995)", config={"ema": 0.9995}),
    Variant("diffaugment", "DiffAugment on (translation, cutout)",
            preset={"augment": "translation,cutout"}),
    Variant("translation", "DiffAugment's translation alone", preset={"augment": "translation"}),
    Variant("lr-decay-15", "rates down to 0 over the last half, 15 epochs",
            config={"lr_decay": 0.5}, epochs=15),
    Variant("width-48", "wider networks (48 channels, not 32)", width=48),
    Variant("batch-64", "batch 64 (not 32) at the same rates", config={"batch_size": 64}),
    Variant("beta2-0.99", "Adam beta2 0.99 (not 0.9)", config={"beta2": 0.99}),
    Variant("refine", "a deeper G: one more 3 x 3 convolution at 14 x 14",
            generator={"refine": True}),
    Variant("wide-d", "a wider D (64 channels; G keeps 32)", discriminator={"width": 64}),
    Variant("batch-16", "batch 16 (not 32) at the same rates", config={"batch_size": 16}),
    Variant("width-24", "narrower networks (24 channels, not 32)", width=24),
]


def register(variant: Variant) -> str:
    """Add the variant as a preset of this process; return its preset name."""
    from gan_tui.models import DCGAN_WIDTH, PRESETS
    from gan_tui.presets import PRESET_INFO
    from gan_tui.sngan import ProjectionDiscriminator, SnGenerator

    name = f"{BASE}-{variant.name}"
    info = dataclasses.replace(PRESET_INFO[BASE], name=name, **variant.preset)
    PRESET_INFO[name] = info
    base = PRESETS[BASE]
    width = variant.width or DCGAN_WIDTH

    def make_g(latent_dim: int) -> Any:
        return SnGenerator(latent_dim, width, **variant.generator)

    def make_d() -> Any:
        return ProjectionDiscriminator(**{"width": width, **variant.discriminator})

    PRESETS[name] = dataclasses.replace(base, name=name, make_generator=make_g,
                                        make_discriminator=make_d, loss=info.loss,
                                        augment=info.augment)
    return name


def run_variant(variant: Variant, budget: float, samples: int, seed: int, root: Path,
                threads: int | None) -> Result:
    import torch

    if threads:
        torch.set_num_threads(threads)
    preset = register(variant)
    overrides = {**variant.config, **({"threads": threads} if threads else {})}
    return bench_preset(preset, budget, samples, seed, "cpu", root, epochs=variant.epochs,
                        overrides=overrides, name=variant.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated variants (default: all): "
                   + ", ".join(v.name for v in VARIANTS))
    p.add_argument("--budget", type=float, default=400.0)
    p.add_argument("-n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1, help="variants at a time (1 thread each)")
    p.add_argument("--runs-root", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only.split(",")]
    console = Console(highlight=False)
    console.print(f"machine: {machine_line()}")
    threads = 1 if args.parallel > 1 else None
    with tempfile.TemporaryDirectory(prefix="gan-tui-ablation-") as tmp:
        root = args.runs_root or Path(tmp)
        # spawn, not fork: a forked child inherits torch's thread pools half set up.
        with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_variant, v, args.budget, args.n, args.seed, root, threads)
                       for v in chosen]
            results = [f.result() for f in futures]
    for v in chosen:
        console.print(f"{v.name}: {v.what}")
    console.print(results_table(results))
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
