"""TrainConfig: the one source of truth for every training knob.

The CLI builds it, the trainer reads it, and every checkpoint stores it as JSON.
The defaults are the seed tutorial's hyperparameters.
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gan_tui.errors import CheckpointError, ConfigError, UsageError

DATASETS = ("bundled", "mnist", "fashion-mnist", "kmnist")
SPLITS = ("test", "train", "all")
DEVICES = ("auto", "cpu", "cuda", "mps")
INVERT_CHOICES = ("auto", "yes", "no")
MAX_LATENT_DIM = 4096
MAX_SEED = 2**63 - 3  # the trainer seeds torch generators with seed + 1, + 2 and + 3

# Keys that change the shape of the models or the data they learn from: a
# checkpoint resumed under a different value would not be the same run.
IDENTITY_KEYS = ("preset", "latent_dim", "dataset", "split", "limit", "data_dir", "invert")
# Of those, the ones that decide the networks' shapes: saved weights never fit another
# value, so --force cannot help. The others only change the data (--force may).
SHAPE_KEYS = ("preset", "latent_dim")
DATA_KEYS = tuple(k for k in IDENTITY_KEYS if k not in SHAPE_KEYS)
# The settings the command line sets, each by the flag --<key with dashes>.
FLAG_KEYS = ("preset", "epochs", "batch_size", "latent_dim", "lr_g", "lr_d", "dataset",
             "data_dir", "split", "limit", "seed", "device", "run_dir", "log_every",
             "checkpoint_every", "quality_samples", "ema", "lr_decay", "threads", "invert")


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
    # Digits scored by the quality classifier at each epoch end; 0 turns scoring off.
    quality_samples: int = 1000
    # Decay of an exponential moving average of G's weights used for samples, scoring and
    # checkpoints' sample weights; 0 = off (the seed). Training itself never reads it.
    ema: float = 0.0
    # The learning rates fall linearly towards 0 over this last fraction of the run's
    # steps (epochs x steps an epoch); 0 = constant rates (the seed).
    lr_decay: float = 0.0
    # torch's CPU threads: a number, or "auto" (a fair share of the cores among the
    # gan-tui runs on this machine, re-checked while training; see gan_tui.process).
    threads: int | str = "auto"
    # A folder of images: "auto" inverts dark-on-light drawings (judged by each image's
    # border) to MNIST's light-on-dark; "yes" / "no" for all.
    invert: str = "auto"
    # Under torchrun on CUDA (nccl): BatchNorm statistics over the global batch instead of
    # each process's share. A launch choice: set by --sync-bn each time, never resumed.
    sync_bn: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad setting; return self if all is well."""
        _check_types(self)  # a config read from a file may hold anything
        from gan_tui.presets import PRESET_INFO as PRESETS

        choices = ", ".join
        _require(self.preset in PRESETS,
                 f"unknown preset {self.preset!r} (choose from {choices(PRESETS)})")
        _require(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two "
                 f"images), got {self.batch_size}")
        _require(1 <= self.latent_dim <= MAX_LATENT_DIM,
                 f"--latent-dim must lie in 1..{MAX_LATENT_DIM}, got {self.latent_dim}")
        _require(0 < self.lr_g < math.inf,
                 f"--lr-g must be greater than 0 and finite, got {self.lr_g}")
        _require(0 < self.lr_d < math.inf,
                 f"--lr-d must be greater than 0 and finite, got {self.lr_d}")
        _require(self.seed is None or 0 <= self.seed <= MAX_SEED,
                 f"--seed must lie in 0..{MAX_SEED}, got {self.seed}")
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
        _require(self.quality_samples == 0 or self.quality_samples >= 2,
                 f"--quality-samples must be 0 (off) or at least 2, got {self.quality_samples}")
        _require(0 <= self.ema < 1, f"--ema must lie in [0, 1) (0 = off), got {self.ema}")
        _require(0 <= self.lr_decay <= 1,
                 f"--lr-decay must lie in [0, 1] (0 = off), got {self.lr_decay}")
        _require(self.invert in INVERT_CHOICES,
                 f"--invert must be one of {choices(INVERT_CHOICES)}, got {self.invert!r}")
        _require(self.threads == "auto" or (isinstance(self.threads, int) and self.threads >= 1),
                 f"--threads must be a whole number at least 1, or auto; got {self.threads!r}")
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


def resume_flags(config: TrainConfig, saved: TrainConfig, checkpoint_home: Path | None,
                 lower_lr: bool = False) -> list[str]:
    """The flags that make `--resume CHECKPOINT` go on as `config` did.

    The rule: a resumed run takes the checkpoint's saved settings, then the flags given.
    So every setting a flag sets whose value in `config` differs from the checkpoint's
    (`saved`) is carried: --epochs above all, since epochs count from the run's start (a
    resume that drops it stops at the checkpoint's own target, training nothing). Learning
    rates are halved with `lower_lr` (after a divergence). --run-dir is carried when the
    run wrote elsewhere than the checkpoint's own run folder (`checkpoint_home`, None for
    a checkpoint kept outside a run), and --force when the data settings differ.
    """
    flags: list[str] = []
    for key in FLAG_KEYS:
        value = getattr(config, key)
        if key in ("lr_g", "lr_d") and lower_lr:
            value = value / 2
        elif key == "run_dir":
            if value is None or (checkpoint_home is not None
                                 and Path(value).absolute() == checkpoint_home):
                continue
        elif value == getattr(saved, key) or value is None:
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    if saved.differences(config, DATA_KEYS):
        flags.append("--force")
    return flags


def check_resume(saved: TrainConfig, wanted: TrainConfig, path: str | Path,
                 force: bool) -> None:
    """CheckpointError when the checkpoint at `path` (trained with `saved`) cannot be
    resumed as `wanted`: a different network shape at once (--force cannot load weights of
    another shape), different data unless forced."""
    shape = wanted.differences(saved, SHAPE_KEYS)
    if shape:
        flags = " and ".join(f"--{k.replace('_', '-')}" for k in SHAPE_KEYS
                             if getattr(saved, k) != getattr(wanted, k))
        raise CheckpointError(
            f"{path} was trained with other networks ({'; '.join(shape)}); --force cannot "
            "help: the preset and latent_dim decide the networks' shapes, and the saved "
            f"weights fit no other; leave out {flags} to resume it, or start a new run")
    data = wanted.differences(saved, DATA_KEYS)
    if data and not force:
        raise CheckpointError(f"{path} was trained with a different setup "
                              f"({'; '.join(data)}); pass --force to resume anyway")


def check_run_dir(run_dir: str | Path) -> None:
    """ConfigError (exit 1: the disk, not the command line) when `run_dir` or a folder
    above it exists as something other than a folder; stat() only, nothing is created."""
    path = Path(run_dir)
    for place in (path, *path.absolute().parents):
        try:
            mode = place.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # missing folders are created when the run starts; a file above: later
        except OSError:
            return  # e.g. no permission: creating it says why
        if stat.S_ISDIR(mode):
            return
        what = "a file, not a folder" if stat.S_ISREG(mode) else "not a folder"
        subject = "it" if place == path else str(place)
        raise ConfigError(f"cannot use run directory {run_dir}: {subject} is {what}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)  # wrapped as a CheckpointError when a file holds the value


# Annotations TrainConfig's fields use -> the types a value may have (bool is no int here).
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,),
                                       "bool": (bool,), "None": (type(None),)}


def _check_types(config: TrainConfig) -> None:
    """Each simple field (int, float, str, bool, optional) holds a value of its type."""
    for f in dataclasses.fields(config):
        names = [name.strip() for name in str(f.type).split("|")]
        if not all(name in _TYPES for name in names):
            continue  # e.g. dict[str, Any]
        value = getattr(config, f.name)
        allowed = tuple(t for name in names for t in _TYPES[name])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"setting {f.name} must be {' or '.join(names)}, "
                              f"got {repr(value)[:60]}")
