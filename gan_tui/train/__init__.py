"""Training: one run of a preset, steerable and observable, without any UI.

    setup.py    device, optimiser, epoch length, seeding
    step.py     the GAN step: tensors in, a stats tensor out
    loop.py     Trainer: epochs, stat windows, divergence, the order of an epoch's end
    control.py  commands -> decisions at step boundaries (pause, save, stop)
    rundir.py   every file a run writes (the one place for a rank-0 gate and a run lock)
    state.py    checkpoint <-> trainer state
    sampling.py digits for people: the fixed grid, requested samples
    scoring.py  the quality score at each epoch's end
"""

from gan_tui.train.loop import Trainer
from gan_tui.train.setup import make_adam, resolve_device, steps_per_epoch

__all__ = ["Trainer", "resolve_device", "make_adam", "steps_per_epoch"]
