"""Process-wide settings for a training run (the CLI's runners call these, tests do not)."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Hide everything alive after start-up (torch, the models, the data, the dashboard)
    from the garbage collector.

    Each full collection otherwise walks all of it: 0.15-0.2 s with the GIL held, a few
    times a minute, which stalls training and freezes the dashboard mid key press
    (the responsiveness benchmark's worst presses). Objects made later are collected as
    usual; call once per process, after the trainer is built.
    """
    gc.collect()
    gc.freeze()
