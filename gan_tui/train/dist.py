"""Training under torchrun: the ranks' environment, the process group, the data shard,
the gradient all-reduce, the control rounds, and the teardown.

torchrun (or `python -m torch.distributed.run`) starts one process per device and sets
RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. Every rank runs the same `Trainer`
on its share of each global batch; the networks stay replicas because every optimizer
step first averages the gradients over all ranks (one flat all-reduce per network per
step, as NVlabs/stylegan3 does, rather than a DDP wrapper: see the README's "Scaling
out"). Rank 0 alone writes the run folder and serves the control socket; what it
decides reaches the others through `agree`, a tiny all-reduce at each step boundary.

A process without WORLD_SIZE > 1 gets `Dist.local()`: no process group, and every
method below is exactly what the single-process trainer did before (same random
draws, same maths), so resume and faithfulness stay bit for bit.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gan_tui.errors import ConfigError, UsageError
from gan_tui.train.setup import resolve_device

# How long a collective may wait for a missing rank before it fails. A rank that dies
# closes its sockets, which fails the others at once, and torchrun stops the job when a
# worker exits; this bounds the rest (a node that vanishes from the network). Long waits
# that are not failures (rank 0 saving or scoring at an epoch's end, a pause) stay far
# below it: paused ranks meet every PAUSE_POLL_S (train/control.py). A slow network may
# need more: $GAN_TUI_COLLECTIVE_TIMEOUT_S.
COLLECTIVE_TIMEOUT_S = 60.0
TIMEOUT_ENV = "GAN_TUI_COLLECTIVE_TIMEOUT_S"
# Ranks > 0 draw their noise from seed + RANK_SEED_STRIDE * rank (+ the step on resume),
# so no two ranks draw the same fakes; rank 0 keeps the run's own stream.
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in the job (torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


def ranks_from_env(environ: Mapping[str, str] | None = None) -> Ranks:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; one process without."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return Ranks()
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole "
                          "numbers (torchrun sets them)") from None
    if not (world >= 1 and 0 <= rank < world and 0 <= local_rank < local_world):
        raise ConfigError(f"inconsistent torchrun environment: RANK {rank}, WORLD_SIZE "
                          f"{world}, LOCAL_RANK {local_rank}, LOCAL_WORLD_SIZE {local_world}")
    return Ranks(rank, world, local_rank, local_world)


def rank_zero() -> bool:
    """True unless this process is a torchrun rank other than 0 (for printing once)."""
    try:
        return ranks_from_env().is_zero
    except ConfigError:
        return True


class Dist:
    """This process's part in a run: its device and, under torchrun, the process group."""

    def __init__(self, ranks: Ranks, device: torch.device, backend: str | None) -> None:
        self.ranks = ranks
        self.device = device
        self.backend = backend
        # This rank's share of the current global batch (set per step by `shard`).
        self._weight = 1.0
        self._control_group = None

    # ------------------------------------------------------------ set-up

    @classmethod
    def local(cls, device_name: str) -> Dist:
        return cls(Ranks(), resolve_device(device_name), None)

    @classmethod
    def setup(cls, device_name: str, batch_size: int, sync_bn: bool,
              ranks: Ranks | None = None) -> Dist:
        """Join the job (torchrun's env:// rendezvous) or, outside torchrun, `local`.

        nccl with one GPU per local rank (cuda:LOCAL_RANK) on CUDA, gloo on the CPU;
        every problem is a one-line error, the same on every rank.
        """
        ranks = ranks or ranks_from_env()
        if not ranks.distributed:
            if sync_bn:
                raise UsageError("--sync-bn needs several CUDA processes (torchrun with "
                                 "--nproc-per-node > 1 on GPUs)")
            return cls.local(device_name)
        world = ranks.world_size
        if batch_size % world:
            raise UsageError(f"--batch-size {batch_size} is the global batch and must divide "
                             f"evenly among {world} processes; choose a multiple of {world}")
        if batch_size // world < 2:
            raise UsageError(f"--batch-size {batch_size} gives each of {world} processes "
                             f"fewer than 2 images (BatchNorm needs two); use at least "
                             f"{2 * world}")
        device = _rank_device(device_name, ranks)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if sync_bn and backend != "nccl":
            raise UsageError("--sync-bn needs nccl, i.e. CUDA GPUs; on the CPU (gloo) each "
                             "process keeps its own BatchNorm statistics: leave it out")
        import torch.distributed as tdist

        timeout = datetime.timedelta(seconds=_timeout_s())
        kwargs = {"device_id": device} if backend == "nccl" else {}
        tdist.init_process_group(backend, timeout=timeout, **kwargs)
        made = cls(ranks, device, backend)
        # Control rounds run on the CPU (gloo) even beside nccl: no device sync per step.
        made._control_group = (tdist.new_group(backend="gloo", timeout=timeout)
                               if backend == "nccl" else None)
        return made

    @property
    def distributed(self) -> bool:
        return self.ranks.distributed

    @property
    def is_zero(self) -> bool:
        return self.ranks.is_zero

    def describe(self) -> str:
        """'cpu' alone, or 'cuda:1, rank 1 of 4 (nccl)'."""
        if not self.distributed:
            return str(self.device)
        return f"{self.device}, {self.ranks.world_size} processes ({self.backend})"

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if self.backend is None:
            return
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()
        self.backend = None

    # ------------------------------------------------------------ models

    def prepare_models(self, *models: nn.Module, sync_bn: bool) -> list[nn.Module]:
        """SyncBatchNorm when asked (nccl only, checked in setup); the models otherwise."""
        if not sync_bn:
            return list(models)
        return [nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in models]

    def broadcast_state(self, *models: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank: the replicas start equal."""
        if not self.distributed:
            return
        import torch.distributed as tdist

        with torch.no_grad():
            for model in models:
                for tensor in (*model.parameters(), *model.buffers()):
                    tdist.broadcast(tensor.data, src=0)

    def seed_noise(self, seed: int, global_step: int) -> None:
        """Ranks > 0 draw their own noise (rank 0 keeps the run's stream, restored from a
        checkpoint when resuming): the global batch's fakes are all different."""
        if self.distributed and not self.is_zero:
            torch.manual_seed((seed + RANK_SEED_STRIDE * self.ranks.rank + global_step)
                              % 2**63)

    # ------------------------------------------------------------ data

    def permutation(self, count: int) -> Tensor:
        """This epoch's order of the data: rank 0 draws it (as one process does), every
        rank gets the same."""
        order = torch.randperm(count, device=self.device) if self.is_zero else \
            torch.empty(count, dtype=torch.long, device=self.device)
        if self.distributed:
            import torch.distributed as tdist

            tdist.broadcast(order, src=0)
        return order

    def shard(self, indices: Tensor) -> Tensor:
        """This rank's part of a global batch's indices (contiguous; a partial last batch
        splits unevenly), and its weight in the gradient average (its share of images)."""
        if not self.distributed:
            return indices
        mine = indices.tensor_split(self.ranks.world_size)[self.ranks.rank]
        self._weight = len(mine) / len(indices)
        return mine

    # ------------------------------------------------------------ gradients

    def average_gradients(self, params: list[Tensor]) -> None:
        """Replace each rank's gradients by the global batch's: the sum over ranks of
        share x gradient, in one flat all-reduce (each rank's loss is a mean over its
        own images, so this is the mean over the global batch, uneven shards included)."""
        import torch.distributed as tdist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        flat.mul_(self._weight)
        tdist.all_reduce(flat)
        for p, grad, piece in zip(params, grads, flat.split([g.numel() for g in grads]),
                                  strict=True):
            if p.grad is None:
                p.grad = grad
            grad.copy_(piece.view_as(grad))

    def gradient_sync(self):  # noqa: ANN201 (a callable or None)
        """What GanStep calls between backward and the optimizer step: None alone."""
        return self.average_gradients if self.distributed else None

    # ------------------------------------------------------------ control

    def agree(self, code: int) -> int:
        """Every rank's `code` -> the largest of them, on every rank (a CPU all-reduce:
        one small message a step, no device sync)."""
        if not self.distributed:
            return code
        import torch.distributed as tdist

        value = torch.tensor([code], dtype=torch.int64)
        tdist.all_reduce(value, op=tdist.ReduceOp.MAX, group=self._control_group)
        return int(value.item())

    def same_on_all(self, value: int) -> int:
        """Rank 0's `value` (e.g. the seed it chose) on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as tdist

        shared = torch.tensor([value], dtype=torch.int64)
        tdist.broadcast(shared, src=0, group=self._control_group)
        return int(shared.item())

    def barrier(self) -> None:
        """Wait for every rank (the others wait for rank 0's last save before exiting)."""
        if self.distributed:
            import torch.distributed as tdist

            tdist.barrier(group=self._control_group)


def _rank_device(name: str, ranks: Ranks) -> torch.device:
    """One device per local rank: cuda:LOCAL_RANK, or the CPU."""
    device = resolve_device(name)
    if device.type == "mps":
        raise UsageError("Apple's MPS cannot train with several processes; use --device cpu")
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if ranks.local_rank >= count:
        raise ConfigError(f"{ranks.local_world_size} processes on this machine but "
                          f"{count} CUDA GPU(s): --nproc-per-node must be at most {count}")
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


def _timeout_s() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else COLLECTIVE_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds above 0, got {text!r}")
    return value
