"""Scaling out: images per second with N torchrun ranks against one process, the same
global batch (64), and what one control round (the per-step all-reduce that carries
pause/stop decisions, train/control.py) costs.

On the CPU the ranks share the machine's cores (gloo): each gets cores / N threads, so
N ranks do the same arithmetic on smaller matrices plus a gradient all-reduce per
network per step. Expect no gain there; the figure is for GPUs, one per rank.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Row, median
from benchmarks.procs import child_env, epoch_records, gan_tui_command, steady_img_per_s

ROUNDS = 2000


def run_img_per_s(device: str, nproc: int, limit: int, epochs: int,
                  threads: int | None) -> float:
    """Steady img/s (the engine's step time, epochs after the first) of one headless run."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        args = ["train", "--headless", "--epochs", str(epochs), "--limit", str(limit),
                "--seed", "0", "--device", device, "--quality-samples", "0",
                "--run-dir", str(run_dir)]
        if nproc > 1:
            args += ["--nproc-per-node", str(nproc)]
        subprocess.run(gan_tui_command() + args, env=child_env(threads), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        return steady_img_per_s(epoch_records(run_dir))


def _round_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch
    import torch.distributed as tdist

    from gan_tui.train.dist import Dist, Ranks

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                             world_size=world)
    dist = Dist(Ranks(rank, world, rank, world), torch.device("cpu"), "gloo")
    for _ in range(100):
        dist.agree(0)
    began = time.perf_counter()
    for _ in range(ROUNDS):
        dist.agree(0)
    if rank == 0:
        Path(out).write_text(str((time.perf_counter() - began) / ROUNDS))
    dist.close()


def control_round_us(world: int = 2) -> float:
    """Microseconds per control round between `world` gloo processes on this machine."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        out = Path(tmp) / "seconds"
        mp.spawn(_round_worker, args=(world, str(Path(tmp) / "init"), str(out)), nprocs=world)
        return float(out.read_text()) * 1e6


def bench_scaling(device: str, nproc: int, limit: int, epochs: int, repeats: int,
                  threads: int | None, log: Callable[[str], None]) -> list[Row]:
    log(f"scaling: {nproc} torchrun ranks vs 1 process on {device}, global batch 64, "
        f"{limit:,} digits, {epochs} epochs x {repeats}")
    one, many = [], []
    for rep in range(repeats):
        one.append(run_img_per_s(device, 1, limit, epochs, threads))
        many.append(run_img_per_s(device, nproc, limit, epochs, threads))
        log(f"  repeat {rep + 1}/{repeats}: 1 process {one[-1]:,.0f} img/s, "
            f"{nproc} ranks {many[-1]:,.0f} img/s")
    rounds = control_round_us()
    step_us = 64 / median(many) * 1e6
    log(f"  control round: {rounds:.0f} us ({100 * rounds / step_us:.1f}% of a "
        f"{nproc}-rank step of {step_us / 1000:.1f} ms)")
    return [
        Row(name=f"scaling, {nproc} ranks", baseline_label="1 process",
            baseline=median(one), ours=median(many), unit="img/s",
            target="report (no target)", passed=None,
            note="the same global batch; on CPU cores shared by the ranks no gain is "
                 "expected (README: Scaling out)",
            samples={"1 process": one, f"{nproc} ranks": many}),
        Row(name="control round per step", baseline_label=f"{nproc}-rank step",
            baseline=step_us / 1000, ours=rounds / 1000, unit="ms",
            target="report (no target)",
            passed=None, note=f"an all-reduce MAX of one int64 between 2 gloo processes, "
                              f"mean of {ROUNDS}; not in the img/s above (the engine times "
                              f"its steps, the round comes before each)"),
    ]
