"""TrainConfig: the one source of truth for every training knob.

The CLI builds it, the engine reads it, and every checkpoint stores it as JSON.
The defaults are the seed tutorial's hyperparameters.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_tui.errors import ConfigError

DATASETS = ("bundled", "mnist", "fashion-mnist", "kmnist")
SPLITS = ("test", "train", "all")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Keys that change the shape of the models or the data they learn from: a
# checkpoint resumed under a different value would not be the same run.
IDENTITY_KEYS = ("preset", "latent_dim", "dataset", "split", "limit", "data_dir")


@dataclass
class TrainConfig:
    preset: str = "seed"
    epochs: int = 100
    batch_size: int = 64
    latent_dim: int = 100
    lr_g: float = 1e-4
    lr_d: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    dataset: str = "bundled"
    data_dir: str | None = None
    split: str = "test"
    limit: int | None = None
    seed: int | None = None
    device: str = "auto"
    run_dir: str | None = None
    runs_root: str = "runs"
    log_every: int = 100
    checkpoint_every: int = 10
    sample_count: int = 16
    stats_interval_ms: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad setting; return self if all is well."""
        from gan_tui.models import PRESETS  # late import: models imports torch

        choices = ", ".join
        _require(self.preset in PRESETS,
                 f"unknown preset {self.preset!r} (choose from {choices(PRESETS)})")
        _require(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two "
                 f"images), got {self.batch_size}")
        _require(self.latent_dim >= 1, f"--latent-dim must be at least 1, got {self.latent_dim}")
        _require(self.lr_g > 0, f"--lr-g must be greater than 0, got {self.lr_g}")
        _require(self.lr_d > 0, f"--lr-d must be greater than 0, got {self.lr_d}")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "Adam betas must lie in [0, 1)")
        _require(self.dataset in DATASETS,
                 f"unknown dataset {self.dataset!r} (choose from {choices(DATASETS)})")
        _require(self.split in SPLITS,
                 f"unknown split {self.split!r} (choose from {choices(SPLITS)})")
        _require(self.limit is None or self.limit >= 2,
                 f"--limit must be at least 2, got {self.limit}")
        _require(self.device in DEVICES,
                 f"unknown device {self.device!r} (choose from {choices(DEVICES)})")
        _require(self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}")
        _require(self.checkpoint_every >= 1,
                 f"--checkpoint-every must be at least 1, got {self.checkpoint_every}")
        _require(1 <= self.sample_count <= 256,
                 f"sample count must lie in 1..256, got {self.sample_count}")
        _require(self.stats_interval_ms >= 0, "stats interval must not be negative")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys so older/newer checkpoints still load."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    def differences(self, other: TrainConfig, keys: tuple[str, ...] = IDENTITY_KEYS) -> list[str]:
        """Human-readable list of `key: mine != theirs` for the given keys."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {theirs[k]!r} != {mine[k]!r}" for k in keys if mine[k] != theirs[k]]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
