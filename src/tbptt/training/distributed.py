"""Data parallel training over ``torch.distributed``, one process per device (torchrun).

The global batch of B streams is split by columns: rank r of W owns streams
``[r * B / W, (r + 1) * B / W)`` and carries their state, so W processes together run
exactly the streams one process would::

    streams:  0 1 2 3 | 4 5 6 7        B = 8, W = 2
              rank 0  | rank 1         each rank: batches (T, 4, ...), state (4, ...)

Each window's loss on a rank is its masked mean ``sum(l * m) / count_r``. To make the
update that of the global masked mean ``sum over ranks of sum(l * m) / count``, every
rank's loss is weighted by ``count_r / count`` (the counts are all-reduced before
backward) and the gradients are summed across ranks. The gradients are all-reduced
in one flat buffer after backward: DistributedDataParallel's bucketed overlap buys
nothing for a recurrent network (every weight is used at the first step, so no
gradient is complete before backward ends), and a plain all-reduce works whatever
number of forward calls a window makes (the engine splits at resets and where the
next window starts).

Without a process group (a single process) every function here is a no-op, so the
trainer calls them unconditionally.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch import distributed as dist

from tbptt.data.streams import Batch, Streams
from tbptt.errors import TBPTTError


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 alone)."""
    return dist.get_rank() if active() else 0


def get_world_size() -> int:
    """The number of processes W (1 alone)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process logs and writes checkpoints (rank 0)."""
    return get_rank() == 0


@contextmanager
def launched(backend: str | None = None) -> Iterator[None]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) for the duration of the block,
    and leave it at the end; a process not started by torchrun runs alone.

    ``backend``: ``"nccl"`` on GPUs, ``"gloo"`` on CPUs (default: by
    ``torch.cuda.is_available()``).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    if not dist.is_available():
        raise TBPTTError("this PyTorch build has no torch.distributed: run one process")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torch.distributed.nn.functional's collectives take ``group=group.WORLD`` as a
    # default argument. Imported while the group exists (torch._dynamo imports it, and
    # the first optimizer imports torch._dynamo), it would keep the group alive after
    # destroy_process_group, its gloo threads running into interpreter exit, where
    # a rank could abort ("terminate called without an active exception"). Imported
    # first, its defaults are None and destroy_process_group joins the threads.
    importlib.import_module("torch.distributed.nn")

    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def device(name: str) -> torch.device:
    """The device ``name`` for this process: ``"cuda"`` is its own GPU
    (``cuda:LOCAL_RANK``) when several processes share a machine."""
    if name == "cuda" and active():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


class Shard(Streams):
    """Rank ``rank``'s share of ``streams``: columns ``[rank * B / W, (rank + 1) * B / W)``
    of every batch. Lengths, offsets and epochs are those of the whole layout;
    ``batch_size`` stays the global B, and batches hold ``B / W`` streams."""

    def __init__(self, streams: Streams, rank: int, world_size: int) -> None:
        torch.utils.data.IterableDataset.__init__(self)
        global_size = streams.batch_size
        if global_size % world_size:
            raise TBPTTError(
                f"batch_size {global_size} is not divisible by the world size {world_size}: "
                f"each rank takes batch_size / world_size streams; make it a multiple"
            )
        if not 0 <= rank < world_size:
            raise TBPTTError(f"rank must lie in [0, {world_size}), got {rank}")
        self.__dict__.update(vars(streams))
        share = global_size // world_size
        self.columns = slice(rank * share, (rank + 1) * share)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's columns of the batches of ``epoch``, from batch ``start`` on."""
        for positions, fresh in self.positions(epoch, start):
            yield self.gather(np.ascontiguousarray(positions[:, self.columns]), fresh)


def shard(streams: Streams, rank: int | None = None, world_size: int | None = None) -> Streams:
    """``rank``'s share of ``streams`` among ``world_size`` processes (default: this
    process's; all of ``streams`` alone); see :class:`Shard`."""
    world = get_world_size() if world_size is None else world_size
    if world == 1:
        return streams
    return Shard(streams, get_rank() if rank is None else rank, world)


def global_window(
    loss: Tensor, count: Tensor, reported: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """A window's loss across ranks, from this rank's masked mean ``loss`` over
    ``count`` valid elements.

    Returns the loss to backpropagate (``loss * count / global_count``, whose
    gradients summed over ranks are those of the global masked mean), the global
    masked mean (detached, the same on every rank) and the global count. One
    all-reduce of two numbers, before backward; alone: ``loss``, itself, ``count``.
    ``reported``: the mean to report when ``loss`` also holds a penalty (AR, TAR);
    the global mean returned is then that of ``reported``.
    """
    reported = loss if reported is None else reported
    if not active():
        return loss, reported.detach(), count
    local = torch.stack([reported.detach().double() * count, count.double()])
    dist.all_reduce(local)  # a CPU-GPU sync point on NCCL
    total, global_count = local[0], local[1].clamp(min=1)
    weight = (count / global_count).to(loss.dtype)
    return loss * weight, (total / global_count).to(loss.dtype), local[1].to(count.dtype)


def sum_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Sum every parameter's gradient across ranks in place (one flat all-reduce)."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([grad.flatten() for grad in grads])
    dist.all_reduce(flat)
    for grad, summed in zip(grads, flat.split([grad.numel() for grad in grads]), strict=True):
        grad.copy_(summed.view_as(grad))


def sum_values(values: dict[str, float]) -> dict[str, float]:
    """Each value summed across ranks (metric totals), in float64."""
    if not active():
        return values
    summed = torch.tensor(list(values.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        summed = summed.cuda()
    dist.all_reduce(summed)
    return dict(zip(values, summed.tolist(), strict=True))


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on some rank (so that all ranks stop at the same batch)."""
    if not active():
        return flag
    return sum_values({"flag": float(flag)})["flag"] > 0


def broadcast_parameters(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not active():
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (plain data and CPU tensors), in rank order."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait until every rank gets here."""
    if active():
        dist.barrier()


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (in dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def own_share(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's ``runner`` and ``rng`` in a trainer checkpoint; refuses one written
    by a different number of processes (the streams would not match)."""
    ranks = state.get("ranks")
    saved, world = 1 if ranks is None else len(ranks), get_world_size()
    if saved != world:
        raise TBPTTError(
            f"the checkpoint was written by {saved} process(es) and this run has {world}: "
            f"resume with the same world size (torchrun --nproc_per_node {saved})"
        )
    return state if ranks is None else ranks[get_rank()]
