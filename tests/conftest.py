"""Shared fixtures: small real training runs on the bundled MNIST digits."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gan_tui.config import TrainConfig
from gan_tui.events import Event
from gan_tui.train import Trainer

REPO = Path(__file__).resolve().parent.parent

# Tests check behaviour, not speed: one thread per process keeps them steady when the
# suite shares two cores with training subprocesses (no OpenMP spin-wait thrashing).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def small_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """A config for 512 real digits (8 steps per epoch), CPU, fixed seed."""

    def make(**overrides) -> TrainConfig:
        values = {"limit": 512, "epochs": 2, "seed": 0, "device": "cpu",
                  "run_dir": str(tmp_path / "run"), "stats_interval_ms": 0}
        values.update(overrides)
        return TrainConfig(**values)

    return make


class Recorder:
    """A sink that keeps every event, optionally reacting to each one."""

    def __init__(self, react: Callable[[Event], None] | None = None) -> None:
        self.events: list[Event] = []
        self.react = react

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.react:
            self.react(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def train(config: TrainConfig, sink=None, **kwargs) -> tuple[Trainer, Recorder]:
    sink = sink or Recorder()
    trainer = Trainer(config, sink, **kwargs)
    trainer.run()
    return trainer, sink


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m gan_tui ARGS` as a user would, output captured (so not a TTY)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gan_tui", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=full_env)
