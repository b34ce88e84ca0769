"""`gan-tui train --nproc-per-node N`: several training processes through torch's own
launcher, `python -m torch.distributed.run` (torchrun; as gan_tui.torchrun runs it, so a
failed rank ends it in one line), each running `gan-tui train --headless` as a rank
(train/dist.py).

Without --headless the launcher runs detached, as `train --detach` does (detach.py: a new
session, stdin closed, its output and the ranks' in the run folder's train.log) and
this prints how to attach. With --headless it stays in the foreground: the ranks other
than 0 print nothing, so the lines are rank 0's; Ctrl-C or a signal to this process
is passed on to the launcher once, which passes it to every rank (save and stop).

One node picks a free port by itself (--standalone); several nodes pass torchrun's own
flags through (--nnodes, --node-rank, --rdzv-backend, --rdzv-endpoint, --rdzv-id,
--master-addr, --master-port). A failed rank ends the job: --max-restarts 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from gan_tui.config import TrainConfig
from gan_tui.errors import ConfigError, UsageError

# torchrun's multi-node flags, passed through as given (argparse dest names).
NODE_FLAGS = ("nnodes", "node_rank", "rdzv_backend", "rdzv_endpoint", "rdzv_id",
              "master_addr", "master_port")
FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                          if hasattr(signal, name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several processes (torch's launcher, torchrun; see README: Scaling out)")
    group.add_argument("--nproc-per-node", type=int, metavar="N",
                       help="train with N processes on this machine (one per GPU, or CPU "
                       "processes with gloo) under python -m torch.distributed.run; "
                       "--batch-size stays the global batch")
    group.add_argument("--sync-bn", action="store_true",
                       help="BatchNorm statistics over the global batch (nccl, CUDA only)")
    group.add_argument("--nnodes", metavar="N[:M]", help="torchrun: number of machines")
    group.add_argument("--node-rank", type=int, metavar="K", help="torchrun: this machine's rank")
    group.add_argument("--rdzv-backend", metavar="NAME", help="torchrun: e.g. c10d")
    group.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="torchrun: where the machines meet")
    group.add_argument("--rdzv-id", metavar="ID", help="torchrun: the job's id")
    group.add_argument("--master-addr", metavar="HOST", help="torchrun: static rendezvous host")
    group.add_argument("--master-port", type=int, metavar="PORT",
                       help="torchrun: static rendezvous port")


def check(args: argparse.Namespace, in_torchrun: bool) -> None:
    """UsageError for launcher flags that cannot work together."""
    nproc = getattr(args, "nproc_per_node", None)
    given = [f"--{name.replace('_', '-')}" for name in NODE_FLAGS
             if getattr(args, name, None) is not None]
    if nproc is None:
        if given:
            raise UsageError(f"{given[0]} is a flag of torch's launcher: give "
                             "--nproc-per-node N with it")
        return
    if in_torchrun:
        raise UsageError("--nproc-per-node starts torch's launcher; this process already "
                         "is a torchrun rank: leave it out")
    if nproc < 1:
        raise UsageError(f"--nproc-per-node must be at least 1, got {nproc}")
    if args.detach:
        raise UsageError("--nproc-per-node runs in the background already (or in the "
                         "foreground with --headless): leave out --detach")


def launcher_command(args: argparse.Namespace, run_dir: Path,
                     resume: str | None) -> list[str]:
    """python -m gan_tui.torchrun ... -m gan_tui train --headless FLAGS."""
    from gan_tui.detach import child_argv

    command = [sys.executable, "-m", "gan_tui.torchrun",
               "--nproc-per-node", str(args.nproc_per_node), "--max-restarts", "0"]
    nodes = [(name, getattr(args, name)) for name in NODE_FLAGS
             if getattr(args, name, None) is not None]
    if not nodes:
        command.append("--standalone")  # one machine: a free port, no clash with another job
    for name, value in nodes:
        command += [f"--{name.replace('_', '-')}", str(value)]
    return [*command, "-m", "gan_tui", "train", "--headless",
            *child_argv(args, run_dir, resume)]


def launcher_env(nproc: int) -> dict[str, str]:
    """The environment for the ranks: each gets its share of this machine's cores as its
    thread count unless OMP_NUM_THREADS says otherwise (torchrun would set 1 and print a
    warning box)."""
    from gan_tui.process import available_cores, fair_share

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(fair_share(available_cores(), 1, nproc)))
    return env


def launch(args: argparse.Namespace, config: TrainConfig, resume: str | None) -> int:
    """Start the ranks; detached (say how to attach, return 0) or, --headless, in the
    foreground (return the launcher's exit code)."""
    from gan_tui.detach import print_handles, spawn
    from gan_tui.paths import display_path
    from gan_tui.train.rundir import choose_run_dir

    _check_devices(config.device, args.nproc_per_node)
    run_dir = choose_run_dir(config)
    command = launcher_command(args, run_dir, resume)
    env = launcher_env(args.nproc_per_node)
    if args.headless:
        return _foreground(command, env)
    pid = spawn(run_dir, command, env, resuming=bool(resume))
    print(f"Training with {args.nproc_per_node} processes in the background (torch's "
          f"launcher, pid {pid}): {display_path(run_dir)}")
    print_handles(run_dir)
    return 0


def _foreground(command: list[str], env: dict[str, str]) -> int:
    """Run the launcher in a session of its own and pass each stop signal to it once (a
    terminal's Ctrl-C would otherwise reach it twice: from the terminal and from us)."""
    process = subprocess.Popen(command, env=env, start_new_session=True)

    def forward(signum: int, _frame: Any) -> None:
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        code = process.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return code if code >= 0 else 128 - code


def _check_devices(device: str, nproc: int) -> None:
    """More CUDA processes than GPUs would fail on some ranks only: say so once, here."""
    if device not in ("auto", "cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and nproc > count:
        raise ConfigError(f"--nproc-per-node {nproc} but this machine has {count} CUDA "
                          f"GPU(s): one process per GPU, so at most {count} (or --device cpu)")
