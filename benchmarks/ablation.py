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
    # Change round 2's sngan (batch 32, no R1, round 4's D) instead of today's: the
    # README's older tables were measured that way.
    round2: bool = False
    # Change round 4's sngan (D without its 3 x 3 convolutions): rounds 3 and 4 measured
    # their variants so.
    round4: bool = False


# What round 3 changed in sngan: round2 variants undo it first.
ROUND2_CONFIG = {"batch_size": 32}
ROUND2_PRESET = {"r1": 0.0}
# What round 5 changed: round2 and round4 variants undo it.
ROUND4_DISCRIMINATOR = {"deep": False}


def _r2(name: str, what: str, **changes: Any) -> Variant:
    return Variant(name, what, round2=True, **changes)


def _r4(name: str, what: str, **changes: Any) -> Variant:
    return Variant(name, what, round4=True, **changes)


VARIANTS = [
    Variant("full", "the preset as shipped (R1, batch 64, D with 3 x 3 convolutions)"),
    # Round 5: D's 3 x 3 convolutions, the change that met the targets.
    Variant("shallow-d", "round 4's D: its two strided convolutions only",
            discriminator=ROUND4_DISCRIMINATOR),
    Variant("no-r1-now", "no R1 penalty", preset={"r1": 0.0}),
    Variant("wide-d-now", "a wider D (48 channels; G keeps 32)", discriminator={"width": 48}),
    # Rounds 3 and 4, on round 4's sngan (D without the 3 x 3 convolutions):
    _r4("round-4", "round 4's sngan as shipped (R1, batch 64)"),
    _r4("no-r1", "no R1 penalty", preset={"r1": 0.0}),
    _r4("batch-128", "batch 128 at the same rates", config={"batch_size": 128}),
    _r4("width-48-now", "wider networks (48 channels, not 32)", width=48),
    _r4("rates-1.4x", "rates x 1.4 (2.26e-3 / 4.5e-3)",
        config={"lr_g": 2.26e-3, "lr_d": 4.52e-3}),
    _r4("beta2-0.99-now", "Adam beta2 0.99 (not 0.9)", config={"beta2": 0.99}),
    _r4("ema-0.9995-now", "a longer EMA of G (0.9995)", config={"ema": 0.9995}),
    # Round 3's second look (at the plateau, 400 s pairs): none of these paid.
    _r4("lr-decay-70", "rates down to 0 over the last half, 70 epochs",
        config={"lr_decay": 0.5}, epochs=70),
    _r4("refine-now", "a deeper G: one more 3 x 3 convolution at 14 x 14",
        generator={"refine": True}),
    _r4("wide-g", "a wider G (48 channels; D keeps 32)", generator={"width": 48}),
    _r4("bce-logits-now", "cross-entropy (on logits) instead of hinge",
        preset={"loss": "bce-logits"}),
    _r4("beta1-0.5", "Adam beta1 0.5 (not 0)", config={"beta1": 0.5}),
    _r4("lr-d-1.5x", "D's rate x 1.5 (4.8e-3; G keeps 1.6e-3)", config={"lr_d": 4.8e-3}),
    _r4("lr-d-2x", "D's rate x 2 (6.4e-3; G keeps 1.6e-3)", config={"lr_d": 6.4e-3}),
    # Round 4: against D memorising the 10,000 digits. Paid at 60 epochs, not at 100.
    _r4("lecam-0.3", "LeCam (weight 0.3) on D's scores", preset={"lecam": 0.3}),
    _r4("lecam-1", "LeCam (weight 1) on D's scores", preset={"lecam": 1.0}),
    # Round 2's preset (batch 32, no R1) and one change to it each:
    _r2("round-2", "round 2's sngan: batch 32, no R1"),
    _r2("no-spectral-norm", "no spectral normalisation in D",
        discriminator={"spectral": False}),
    _r2("bce", "cross-entropy (on logits) instead of hinge", preset={"loss": "bce-logits"}),
    _r2("no-projection", "class as an input plane of D (as cgan), not projection",
        discriminator={"projection": False}),
    _r2("one-lr", "one learning rate for both, G's (no two time-scales)",
        config={"lr_d": 1.6e-3}),
    _r2("sngan-lr", "SNGAN's usual rates, 2e-4 / 4e-4 (8x lower)",
        config={"lr_g": 2e-4, "lr_d": 4e-4}),
    _r2("no-ema", "samples from G itself, no EMA", config={"ema": 0.0}),
    _r2("ema-0.9995", "a longer EMA of G (0.9995)", config={"ema": 0.9995}),
    _r2("ema-0.9998", "a much longer EMA of G (0.9998)", config={"ema": 0.9998}),
    _r2("diffaugment", "DiffAugment on (translation, cutout)",
        preset={"augment": "translation,cutout"}),
    _r2("translation", "DiffAugment's translation alone", preset={"augment": "translation"}),
    _r2("lr-decay-15", "rates down to 0 over the last half, 15 epochs",
        config={"lr_decay": 0.5}, epochs=15),
    _r2("lr-decay-50", "rates down to 0 over the last half, 50 epochs",
        config={"lr_decay": 0.5}, epochs=50),
    _r2("width-48", "wider networks (48 channels, not 32)", width=48),
    _r2("width-24", "narrower networks (24 channels, not 32)", width=24),
    _r2("batch-64", "batch 64 (not 32) at the same rates", config={"batch_size": 64}),
    _r2("batch-16", "batch 16 (not 32) at the same rates", config={"batch_size": 16}),
    _r2("beta2-0.99", "Adam beta2 0.99 (not 0.9)", config={"beta2": 0.99}),
    _r2("refine", "a deeper G: one more 3 x 3 convolution at 14 x 14",
        generator={"refine": True}),
    _r2("wide-d", "a wider D (64 channels; G keeps 32)", discriminator={"width": 64}),
    _r2("deep-d", "a deeper D: a 3 x 3 convolution after each strided one",
        discriminator={"deep": True}),
    _r2("batch-spread", "D also sees the batch's spread (minibatch std)",
        discriminator={"batch_spread": True}),
    _r2("r1", "R1 (weight 1) on real digits besides spectral norm", preset={"r1": 1.0}),
    _r2("r1-5", "R1 (weight 5) on real digits besides spectral norm", preset={"r1": 5.0}),
    _r2("r1-no-sn", "R1 (weight 1) on real digits instead of spectral norm",
        preset={"r1": 1.0}, discriminator={"spectral": False}),
]


def register(variant: Variant) -> str:
    """Add the variant as a preset of this process; return its preset name."""
    from gan_tui.models import DCGAN_WIDTH, PRESETS, SNGAN_DISCRIMINATOR
    from gan_tui.presets import PRESET_INFO
    from gan_tui.sngan import ProjectionDiscriminator, SnGenerator

    name = f"{BASE}-{variant.name}"
    undo = ROUND2_PRESET if variant.round2 else {}
    info = dataclasses.replace(PRESET_INFO[BASE], name=name, **{**undo, **variant.preset})
    PRESET_INFO[name] = info
    base = PRESETS[BASE]
    width = variant.width or DCGAN_WIDTH

    def make_g(latent_dim: int) -> Any:
        return SnGenerator(latent_dim, **{"width": width, **variant.generator})

    older = ROUND4_DISCRIMINATOR if variant.round2 or variant.round4 else {}

    def make_d() -> Any:
        return ProjectionDiscriminator(**{"width": width, **SNGAN_DISCRIMINATOR, **older,
                                          **variant.discriminator})

    PRESETS[name] = dataclasses.replace(base, name=name, make_generator=make_g,
                                        make_discriminator=make_d, loss=info.loss,
                                        augment=info.augment, r1=info.r1, lecam=info.lecam)
    return name


def run_variant(variant: Variant, budget: float, samples: int, seed: int, root: Path,
                threads: int | None) -> Result:
    import torch

    if threads:
        torch.set_num_threads(threads)
    preset = register(variant)
    overrides = {**(ROUND2_CONFIG if variant.round2 else {}), **variant.config,
                 **({"threads": threads} if threads else {})}
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
