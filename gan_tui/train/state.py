"""Checkpoint <-> trainer state: what a checkpoint holds to continue bit-for-bit, and
putting it back. Everything is stored in weights_only-safe types (see gan_tui.checkpoint)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gan_tui import checkpoint as ckpt
from gan_tui.config import TrainConfig, check_resume
from gan_tui.errors import CheckpointError, first_line

if TYPE_CHECKING:
    from gan_tui.train.loop import Trainer

# What a checkpoint that does not fit raises while it is put back.
_LOAD_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, AttributeError)


def read_resume(resume: str | Path, config: TrainConfig,
                force: bool) -> tuple[dict[str, Any], TrainConfig]:
    """The checkpoint to resume and the config to run it under: `config`, with the
    checkpoint's seed if it has none. A different setup needs `force`."""
    state = ckpt.load_checkpoint(resume)
    saved = ckpt.config_of(state, resume)
    check_resume(saved, config, resume, force)
    if config.seed is None:
        config = dataclasses.replace(config, seed=saved.seed)
    return state, config


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to continue bit-for-bit, in weights_only-safe types."""
    mid_epoch = trainer.permutation is not None and trainer.batch > 0
    ema = trainer.generator_ema
    return {
        "format": ckpt.FORMAT,
        "config": trainer.config.to_dict(),
        "generator": trainer.generator.state_dict(),
        "discriminator": trainer.discriminator.state_dict(),
        **({"generator_ema": ema.state_dict()} if ema is not None else {}),
        "opt_g": trainer.opt_g.state_dict(),
        "opt_d": trainer.opt_d.state_dict(),
        "epoch": trainer.epoch,
        "batch": trainer.batch if mid_epoch else 0,
        "global_step": trainer.global_step,
        "permutation": trainer.permutation.cpu() if mid_epoch else None,  # type: ignore[union-attr]
        "epoch_stats": trainer.stats.epoch_state() if mid_epoch else None,
        "epoch_seconds": trainer.epoch_seconds if mid_epoch else 0.0,
        "fixed_noise": trainer.fixed_noise,
        "sample_rng": trainer.sample_rng.get_state(),
        "rng": ckpt.capture_rng(),
        "history": list(trainer.history),
        **({"class_counts": list(trainer.class_counts)} if trainer.class_counts else {}),
        **({"lecam_anchors": trainer.gan_step.lecam_anchors.detach().cpu().clone()}
           if trainer.gan_step.lecam > 0 else {}),
        "torch_version": str(torch.__version__),
        "saved_at": datetime.now().isoformat(timespec="seconds"),
    }


def load_trainer_state(trainer: Trainer, state: dict[str, Any], source: str) -> None:
    """Put a checkpoint read by `read_resume` back into a freshly built trainer; a file
    that does not fit is a CheckpointError naming `source`."""
    try:
        _load_weights(trainer, state)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(_unfit_weights(trainer, state, source, exc)) from None
    try:
        _load_progress(trainer, state)
    except (*_LOAD_ERRORS, IndexError) as exc:
        raise CheckpointError(f"{source}: damaged checkpoint ({first_line(exc)})") from None
    # Adam keeps lr and betas in the state just loaded; the config decides them, so
    # `--resume X --lr-g 5e-5` really trains on with the lower rate.
    config = trainer.config
    betas = (config.beta1, config.beta2)
    for optimizer, lr in ((trainer.opt_g, config.lr_g), (trainer.opt_d, config.lr_d)):
        for group in optimizer.param_groups:
            group["lr"], group["betas"] = lr, betas


def _unfit_weights(trainer: Trainer, state: dict[str, Any], source: str,
                   exc: BaseException) -> str:
    """Why a checkpoint's weights do not fit, in one line. A G that fits beside a D that
    does not is a run of an older version of the preset (sngan's D grew in round 5):
    its digits can still be drawn, only the training cannot go on."""
    unfit = f"{source}: weights do not fit this preset ({first_line(exc)})"
    try:
        trainer.generator.load_state_dict(state["generator"])
    except _LOAD_ERRORS:
        return unfit
    try:
        trainer.discriminator.load_state_dict(state["discriminator"])
    except _LOAD_ERRORS:
        preset = trainer.config.preset
        return (f"{source}: its discriminator is not the {preset} preset's of this version "
                "(saved by an older gan-tui?), so it cannot be resumed; `gan-tui sample` "
                "and `gan-tui eval` still draw from it")
    return unfit


def _load_weights(trainer: Trainer, state: dict[str, Any]) -> None:
    trainer.generator.load_state_dict(state["generator"])
    trainer.discriminator.load_state_dict(state["discriminator"])
    trainer.opt_g.load_state_dict(state["opt_g"])
    trainer.opt_d.load_state_dict(state["opt_d"])
    if trainer.generator_ema is not None:  # a run that had no EMA starts it from G
        trainer.generator_ema.load_state_dict(state.get("generator_ema")
                                              or trainer.generator.state_dict())


def _load_progress(trainer: Trainer, state: dict[str, Any]) -> None:
    trainer.epoch = int(state["epoch"])
    trainer.batch = int(state.get("batch", 0))
    trainer.global_step = int(state["global_step"])
    trainer.fixed_noise = state["fixed_noise"]
    if trainer.fixed_noise.ndim != 2 or trainer.fixed_noise.shape[1] != trainer.config.latent_dim:
        raise ValueError(f"fixed noise of shape {tuple(trainer.fixed_noise.shape)}")
    trainer.history = list(state["history"])
    permutation = state.get("permutation")
    if permutation is not None and len(permutation) != len(trainer.data):
        trainer.batch = 0  # the data changed (--force): the epoch starts over on the new data
    elif permutation is not None:
        trainer.permutation = permutation.to(trainer.device)
        trainer.stats.load_epoch_state(state["epoch_stats"])
        trainer.epoch_seconds = float(state.get("epoch_seconds", 0.0))
    if state.get("sample_rng") is not None:
        trainer.sample_rng.set_state(state["sample_rng"])
    anchors = state.get("lecam_anchors")  # none: a run from before LeCam starts them at 0
    if anchors is not None:
        trainer.gan_step.lecam_anchors.copy_(anchors.reshape(2))
    ckpt.restore_rng(state["rng"])
