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


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str
    conditional: bool = False
    # TrainConfig values this preset was tuned with; explicit CLI flags still win.
    defaults: dict[str, Any] = field(default_factory=dict)


PRESET_INFO: dict[str, PresetInfo] = {
    "seed": PresetInfo("seed", "the tutorial's MLP GAN, unchanged"),
    "dcgan": PresetInfo("dcgan", "convolutional GAN for 28 x 28 (DCGAN-style), EMA samples",
                        defaults=DCGAN_DEFAULTS),
    "cgan": PresetInfo("cgan", "conditional DCGAN: draws the digit you ask for (keys 0-9)",
                       conditional=True, defaults=DCGAN_DEFAULTS),
}


def is_conditional(preset: str) -> bool:
    info = PRESET_INFO.get(preset)
    return bool(info and info.conditional)
