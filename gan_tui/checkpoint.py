"""Checkpoints: atomic writes, safe loads, RNG capture, and finding `latest`.

A checkpoint is one `torch.save` file holding only tensors, numbers, strings,
lists and dicts, so it loads with `torch.load(..., weights_only=True)`: opening a
file someone handed you never runs code from it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import random
import stat
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_tui.config import TrainConfig
from gan_tui.errors import CheckpointError, ConfigError, first_line

FORMAT = "gan-tui/1"
REQUIRED_KEYS = ("format", "config", "generator", "discriminator", "opt_g", "opt_d",
                 "epoch", "global_step", "fixed_noise", "rng", "history")
TEMP_SUFFIX = ".tmp"


# ------------------------------------------------------------------ writing


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A crash or kill at any moment leaves either the old file or the new one,
    never a half-written checkpoint under the real name.
    """
    path = Path(path)
    # Serialise in memory first: torch.save reports a failed write (a full disk) as a bare
    # RuntimeError, while a plain write raises OSError with the real reason (ENOSPC).
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; use normal modes
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        _remove_quietly(Path(tmp_name))
        raise
    _fsync_dir(path.parent)
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _read_umask()


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files a killed process left behind; return what was removed."""
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        _remove_quietly(p)
    return stale


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ reading


def load_file(path: str | Path) -> Any:
    """torch.load with weights_only=True; every failure becomes one CheckpointError line."""
    path = Path(path)
    check_regular_file(path)
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path}: not a gan-tui checkpoint (it is not a PyTorch file)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 179": not for users
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: not a gan-tui checkpoint ({_refusal(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt file ({first_line(exc)})") from None
    except Exception as exc:  # any other failure to parse untrusted bytes: still one line
        raise CheckpointError(f"{path}: truncated or corrupt file "
                              f"({type(exc).__name__}: {first_line(exc)})") from None


def check_regular_file(path: Path) -> None:
    """A CheckpointError unless `path` is a non-empty regular file. Only stat() looks at
    it: a FIFO is never opened (that would block), a device never read."""
    try:
        mode, size = (info := path.stat()).st_mode, info.st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: is {_kind_of(mode)}, not a regular checkpoint file")
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")


def _kind_of(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


# How torch files begin: a zip archive (torch.save since 1.6), or a pickle (protocol 2+:
# the legacy format, or a bare pickle, which the weights-only loader then vets).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _looks_like_torch_file(path: Path) -> bool:
    """Read the first bytes only: a huge file of zeros is refused without torch reading it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return head.startswith(_TORCH_MAGIC)


# What torch's weights-only unpickler says when a file asks for code or custom objects.
_CODE_MARKERS = ("GLOBAL", "Unsupported global", "reduce", "allowlist", "Can only")


def _refusal(exc: pickle.UnpicklingError) -> str:
    text = str(exc)
    if any(marker in text for marker in _CODE_MARKERS):
        return ("it asks to run code or build objects that are not plain weights; "
                "refused, nothing in it was run")
    return "it is not a PyTorch file"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a full gan-tui training checkpoint."""
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gan-tui checkpoint (no '{FORMAT}' format tag)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    wrong = [k for k, kind in _KEY_TYPES.items()
             if not isinstance(state[k], kind) or isinstance(state[k], bool)]
    if wrong:
        raise CheckpointError(f"{path}: damaged checkpoint ({', '.join(wrong)} of the wrong "
                              "type)")
    return state


# The type each required entry must have before anything reads it.
_KEY_TYPES: dict[str, type] = {
    "config": dict, "generator": dict, "discriminator": dict, "opt_g": dict, "opt_d": dict,
    "epoch": int, "global_step": int, "fixed_noise": torch.Tensor, "rng": dict,
    "history": list,
}


def config_of(state: dict[str, Any], path: str | Path) -> TrainConfig:
    """The checkpoint's saved settings, validated; damage is a CheckpointError naming it."""
    try:
        return TrainConfig.from_dict(state["config"]).validate()
    except (ConfigError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise CheckpointError(f"{path}: its saved settings are not valid ({exc})") from None


@dataclass(frozen=True)
class Sampler:
    """A trained generator in eval mode, its settings, and (conditional runs) how often
    each class came in its training data: the mix its scores draw (models.prior_labels)."""

    generator: nn.Module
    config: TrainConfig
    class_counts: tuple[int, ...] | None = None

    def score_labels(self, count: int) -> torch.Tensor | None:
        """Labels for `count` scored draws in the training data's class mix (None for an
        unconditional preset)."""
        from gan_tui.models import prior_labels
        from gan_tui.presets import is_conditional

        if not is_conditional(self.config.preset):
            return None
        return prior_labels(count, self.class_counts)


def load_generator(path: str | Path, device: torch.device | str = "cpu"
                   ) -> tuple[nn.Module, TrainConfig]:
    """A generator in eval mode from a gan-tui checkpoint or a bare seed state dict."""
    sampler = load_sampler(path, device)
    return sampler.generator, sampler.config


def load_sampler(path: str | Path, device: torch.device | str = "cpu") -> Sampler:
    """load_generator's generator and settings, with the training data's class counts
    where the checkpoint recorded them (older ones did not: None)."""
    from gan_tui.models import build_models

    state = load_file(path)
    counts = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        config = config_of(state, path)
        # The EMA generator, where the run kept one, is the one its samples came from.
        weights = state.get("generator_ema") or state["generator"]
        counts = _class_counts_of(state)
    elif _looks_like_state_dict(state):
        weights = state
        config = TrainConfig(latent_dim=_latent_dim_of(state, path))
    else:
        raise CheckpointError(f"{path}: neither a gan-tui checkpoint nor a generator state dict")
    try:
        config.validate()
        generator, _ = build_models(config.preset, config.latent_dim)
        generator.load_state_dict(weights)
    except Exception as exc:
        raise CheckpointError(f"{path}: weights do not fit the {config.preset!r} generator "
                              f"({first_line(exc)})") from None
    return Sampler(generator.to(device).eval(), config, counts)


def _class_counts_of(state: dict[str, Any]) -> tuple[int, ...] | None:
    """The recorded class counts, or None where absent or not a list of counts."""
    counts = state.get("class_counts")
    if (not isinstance(counts, list | tuple) or not counts
            or not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) == 0):
        return None
    return tuple(counts)


def _looks_like_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _latent_dim_of(state: dict[str, torch.Tensor], path: str | Path) -> int:
    first = state.get("mean.0.weight")
    if first is None or first.ndim != 2:
        raise CheckpointError(f"{path}: state dict has no 'mean.0.weight' "
                              "(not the seed's Generator)")
    return int(first.shape[1])


# ------------------------------------------------------------ finding files


def latest_checkpoint(runs_root: str | Path = "runs") -> Path:
    """The newest run's checkpoints/last.pt under `runs_root`."""
    root = Path(runs_root)
    candidates = sorted(root.glob("*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CheckpointError(f"no checkpoints/last.pt under {root}/ to resume (train first)")
    return candidates[-1]


def find_checkpoint(path_or_latest: str, runs_root: str | Path = "runs",
                    flag: str = "--checkpoint") -> Path:
    """`latest`, a run folder or a file -> the file to load (checked by the loader).

    The one resolver for every command that reads a checkpoint (`train --resume`,
    `sample`, `eval`); `flag` names the option in the message when there is no run yet.
    """
    if path_or_latest == "latest":
        try:
            return latest_checkpoint(runs_root)
        except CheckpointError:
            raise CheckpointError(f"no {runs_root}/*/checkpoints/last.pt under {Path.cwd()} "
                                  f"(train first, or pass {flag} PATH)") from None
    path = Path(path_or_latest)
    in_run = path / "checkpoints" / "last.pt"
    return in_run if path.is_dir() and in_run.is_file() else path


def run_dir_of(checkpoint_path: Path) -> Path | None:
    """runs/<name>/checkpoints/x.pt -> runs/<name>; None for a checkpoint kept anywhere
    else (its folder is not a run's: resuming it must not fill that folder)."""
    parent = checkpoint_path.resolve().parent
    return parent.parent if parent.name == "checkpoints" else None


def resume_run_dir(checkpoint_path: Path, runs_root: str | Path) -> tuple[Path, bool]:
    """Where a resume of `checkpoint_path` writes, and whether that is a new run folder:
    the checkpoint's own run, or for a loose checkpoint (./moved.pt) a new folder under
    `runs_root` named after it, runs/moved-resumed, -resumed-2, ... (the first free)."""
    home = run_dir_of(checkpoint_path)
    if home is not None:
        return home, False
    base = Path(runs_root).absolute() / f"{checkpoint_path.stem}-resumed"
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate, True


# ---------------------------------------------------------------- RNG state


def capture_rng() -> dict[str, Any]:
    """Every RNG a run touches, in weights_only-safe types."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [py_version, list(py_internal), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np_state = rng["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
