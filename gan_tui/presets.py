"""What each preset is, without torch: names, descriptions, tuned defaults.

The CLI, the config and the TUI read this before torch is imported, so the app can
draw its first frame while torch loads; gan_tui.models adds how to build each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The usual DCGAN recipe (Radford et al.): Adam 2e-4 for both, beta1 0.5; EMA samples.
# Batch 32: twice the updates per epoch at about the same cost per image on a CPU, which
# in 400 s of CPU training lowered dcgan's digit FID from 182 to 120 (benchmarks.quality).
DCGAN_DEFAULTS: dict[str, Any] = {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "batch_size": 32,
                                  "epochs": 30, "ema": 0.999}

# Adam (0, 0.9) and two time-scales (D twice G) as SNGAN / BigGAN, but rates 8x SNGAN's
# usual 2e-4 / 4e-4: spectral norm keeps D stable there, and in 150 s of CPU training
# that lowered the digit FID from 39.8 to 4.3 (README, "Ablation"). Batch 64 with R1
# (below): batch 32 without R1 flattens out after ~30 epochs at FID ~2.6; batch 64 + R1
# kept improving to its 100th epoch (2.25 at 60, 1.97 at 100: README, bench-quality).
SNGAN_DEFAULTS: dict[str, Any] = {"lr_g": 1.6e-3, "lr_d": 3.2e-3, "beta1": 0.0, "beta2": 0.9,
                                  "batch_size": 64, "epochs": 100, "ema": 0.999}


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str
    conditional: bool = False
    # TrainConfig values this preset was tuned with; explicit CLI flags still win.
    defaults: dict[str, Any] = field(default_factory=dict)
    loss: str = "bce"  # "bce" on D's probabilities (Sigmoid last), "hinge" on raw scores
    augment: str = ""  # DiffAugment policy for D's inputs, e.g. "translation,cutout"
    r1: float = 0.0  # R1 penalty weight (Mescheder et al. 2018); 0 = none
    # LeCam regularisation weight (Tseng et al. 2021); 0 = none (no preset: the ablation's)
    lecam: float = 0.0


PRESET_INFO: dict[str, PresetInfo] = {
    "seed": PresetInfo("seed", "the tutorial's MLP GAN, unchanged"),
    "dcgan": PresetInfo("dcgan", "convolutional GAN for 28 x 28 (DCGAN-style), EMA samples",
                        defaults=DCGAN_DEFAULTS),
    "cgan": PresetInfo("cgan", "conditional DCGAN: draws the digit you ask for (keys 0-9)",
                       conditional=True, defaults=DCGAN_DEFAULTS),
    "sngan": PresetInfo("sngan", "conditional SNGAN (spectral norm, hinge loss, projection D, "
                        "R1): the best digits, keys 0-9",
                        conditional=True, defaults=SNGAN_DEFAULTS, loss="hinge", r1=1.0),
}


def presets_help() -> str:
    """The presets, one line each, for `gan-tui train --help`."""
    width = max(len(name) for name in PRESET_INFO)
    lines = [f"  {name:<{width}}  {info.description}" for name, info in PRESET_INFO.items()]
    return ("presets (--preset NAME; its tuned defaults apply under your own flags):\n"
            + "\n".join(lines))


def is_conditional(preset: str) -> bool:
    info = PRESET_INFO.get(preset)
    return bool(info and info.conditional)
