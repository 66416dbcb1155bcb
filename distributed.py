"""Where this process stands in a ``torchrun`` job, and the few collectives featurize and train need.

torchrun (one node or several, through its rendezvous) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE`` for every worker; without them a process is rank 0 of 1 and every helper here is a no-op, so
the single-process path runs the same code. No custom launcher: scale-out is torch.distributed (DESIGN.md).

Featurize coordinates over a **gloo** group whatever the encoders' device: the only messages are counts and skip
lists (a few bytes per item); the vectors travel through the shared cache folder, never the network. Training
builds its own group (NCCL on GPUs, gloo on the CPU) because DDP all-reduces gradients over it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# A rank waits at a collective while the others finish their share; shares are equal in items, not in seconds
# (one rank's notes may be longer), and a day-long featurize run can leave one rank an hour behind. torchrun tears
# the whole group down when a rank dies, so a long timeout only ever matters for a rank that hangs.
FEATURIZE_TIMEOUT = _dt.timedelta(hours=24)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> DistEnv:
        env = os.environ
        world = int(env.get("WORLD_SIZE", 1))
        return cls(
            int(env.get("RANK", 0)),
            world,
            int(env.get("LOCAL_RANK", 0)),
            int(env.get("LOCAL_WORLD_SIZE", world)),
        )

    @property
    def main(self) -> bool:
        return self.rank == 0


def share(items: Sequence[T], env: DistEnv) -> list[T]:
    """This rank's contiguous block of ``items`` (sizes differ by at most one). Deterministic: every rank sees the
    same ``items`` in the same order, so the blocks partition them with nothing computed twice."""
    n = len(items)
    return list(items[env.rank * n // env.world : (env.rank + 1) * n // env.world])


def gather(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` (picklable, small), in rank order; ``[obj]`` alone. Also a barrier."""
    if env.world == 1:
        return [obj]
    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, env: DistEnv) -> T:
    """Rank 0's ``obj`` on every rank (picklable); ``obj`` alone."""
    if env.world == 1:
        return obj
    box = [obj if env.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.world > 1:
        dist.barrier()


@contextlib.contextmanager
def coordination_group() -> Iterator[DistEnv]:
    """The job's process group for featurize: the caller's if one is initialised, else a gloo group opened (and
    closed) here when torchrun started more than one worker."""
    env = DistEnv.from_env()
    if env.world > 1 and torch.cuda.is_available():
        # the worker's own GPU as the current device: a query such as is_bf16_supported() would otherwise open a
        # CUDA context on GPU 0 from every worker of the node
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    own = env.world > 1 and not dist.is_initialized()
    if own:
        dist.init_process_group(backend="gloo", timeout=FEATURIZE_TIMEOUT)
    try:
        yield env
    finally:
        if own:
            dist.destroy_process_group()
