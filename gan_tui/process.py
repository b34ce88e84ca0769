"""How a training run shares the machine: process-wide settings (the CLI's runners call
`freeze_startup_objects`, tests do not) and numpy's BLAS threads."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


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


@functools.cache
def _blas_pools():  # noqa: ANN202 (threadpoolctl's controller)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def one_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` (small numpy linear algebra) with numpy's BLAS on one thread.

    OpenBLAS's worker threads busy-wait for ~0.1 s after every call, on the cores the
    training needs: after each epoch's scores that took ~2% of a core from torch on a
    2-core machine. This maths (N x 64 features, 64 x 64 results) is as fast on one
    thread. The limit holds only during the call, which runs no torch matrix maths, so
    torch's threads are never held back.
    """

    @functools.wraps(func)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with _blas_pools().limit(limits=1):
            return func(*args, **kwargs)

    return limited
