"""GPU only: the engine must not make the host wait for the device on every step.

`torch.cuda.set_sync_debug_mode("warn")` makes PyTorch warn at each synchronizing
CUDA call (`.item()`, `.tolist()`, `.cpu()`, a blocking copy, ...); we count them.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import BATCH, Row
from benchmarks.seed_loop import SeedLoop
from gan_tui.config import TrainConfig
from gan_tui.events import EpochEnd, Event, StepStats
from gan_tui.train import Trainer


class SyncCounter:
    """Counts synchronizing CUDA calls made inside the `with` block (this thread)."""

    def __enter__(self) -> SyncCounter:
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc: object) -> None:
        torch.cuda.set_sync_debug_mode("default")
        self._warnings.__exit__(*exc)

    @property
    def syncs(self) -> list[warnings.WarningMessage]:
        return [w for w in self._caught if "synchroniz" in str(w.message)]

    @property
    def count(self) -> int:
        return len(self.syncs)

    def where(self) -> str:
        """'step.py:70 x2, metrics.py:40 x1': the Python lines that made the syncs."""
        places = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in self.syncs)
        return ", ".join(f"{place} x{n}" for place, n in places.most_common()) or "none"


def count_syncs(work: Callable[[], object]) -> SyncCounter:
    with SyncCounter() as counter:
        work()
    return counter


def bench_sync(device: str, steps: int, log: Callable[[str], None]) -> Row:
    steps = max(2, min(steps, 10_000 // BATCH))
    log(f"host-device syncs: {steps} engine steps, a {steps}-step engine epoch, "
        f"{steps} seed steps on {device}")
    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        trainer = Trainer(TrainConfig(epochs=1, seed=0, device=device, run_dir=tmp + "/a"),
                          lambda event: None)
        order = torch.randperm(len(trainer.data), device=trainer.device)
        batches = [order[i * BATCH:(i + 1) * BATCH] for i in range(steps)]
        for indices in batches[:3]:  # warm-up: kernels chosen, memory pooled
            trainer.step(trainer.data[indices])
        torch.cuda.synchronize()
        step_counter = count_syncs(
            lambda: [trainer.step(trainer.data[indices]) for indices in batches])
        in_step = step_counter.count
        torch.cuda.synchronize()

        # The whole loop as users run it: stats every 100 ms, metrics every 100 steps.
        seen: dict = {"stats": 0, "syncs_at_epoch_end": None, "where": "none"}
        counter = SyncCounter()

        def sink(event: Event) -> None:
            if isinstance(event, StepStats):
                seen["stats"] += 1
            elif isinstance(event, EpochEnd):
                seen["syncs_at_epoch_end"] = counter.count
                seen["where"] = counter.where()

        config = TrainConfig(epochs=1, seed=0, device=device, run_dir=tmp + "/b",
                             limit=steps * BATCH)
        run_trainer = Trainer(config, sink)
        with counter:
            run_trainer.run()
        in_loop = seen["syncs_at_epoch_end"] or 0

    seed = SeedLoop(torch.device(device))
    seed.run(3)
    torch.cuda.synchronize()
    in_seed = count_syncs(lambda: seed.run(steps)).count
    per_step = in_step / steps
    return Row(
        name=f"host-device syncs per step ({device})", baseline_label="seed loop",
        baseline=in_seed / steps, ours=per_step, unit="", target="0 in Trainer.step",
        passed=in_step == 0, ratio=None,
        note=f"sync debug mode: {in_step} syncs in {steps} Trainer.step calls (at "
             f"{step_counter.where()}); the full "
             f"training loop made {in_loop} in a {steps}-step epoch ({seen['stats']} "
             f"StepStats windows, metrics lines every {config.log_every} steps, the epoch-end "
             f"checks; at {seen['where']}); the seed loop made {in_seed} in {steps} steps",
    )
