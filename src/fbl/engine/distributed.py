"""torch.distributed data parallelism, launched by ``torchrun`` (one process per device, one or many nodes).

``fbl train`` runs distributed when ``torchrun`` set ``RANK`` / ``WORLD_SIZE`` (as nanoGPT and
torchvision's reference scripts detect it); otherwise it is a single process, unchanged. NCCL on
GPUs, gloo on CPUs. ``--batch_size`` is the global batch: every rank takes an interleaved,
equal share of each global batch, drawn from one epoch order that all ranks derive from
(seed, epoch), so the same global batches are seen whatever the number of processes. Evaluation
shards the split without padding and all-reduces the per-class sums, so its numbers equal a
single-process evaluation. Only rank 0 writes the run folder.

:func:`distributed_session` owns the process group: it joins the job's group on entry and
destroys it on exit. Every collective of the group gives up after ``timeout_s`` seconds, so a
frozen rank stops the job in minutes instead of PyTorch's 30; :meth:`Distributed.check_same` stops
ranks launched with different flags with one line. With gradient accumulation,
:func:`gradient_sync` lets DDP all-reduce once per optimizer step instead of once per micro-batch.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fbl.data.sharding import eval_share, shard_order
from fbl.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Distributed",
    "distributed_session",
    "eval_share",
    "find_ddp",
    "gradient_sync",
    "init_distributed",
    "launched_by_torchrun",
    "shard_order",
]

logger = logging.getLogger(__name__)

# One timeout governs every collective of the group, and some legitimately wait: the first
# training step waits for the slowest rank's torch.compile (a whole compile when another node hits
# a warm cache: minutes for a ResNet-50), each epoch's first step waits for rank 0 to write its
# checkpoint, start-up waits for the slowest rank to load its data. 5 minutes covers those and
# still ends a frozen rank's hang 6x sooner than PyTorch's 30 minutes (gloo; 10 for NCCL).
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks (in place; returned for convenience); a no-op alone."""
        if self.enabled:
            # gloo reduces CPU tensors; NCCL wants them on this rank's GPU.
            on_device = tensor.to(self.device) if self.device.type == "cuda" else tensor
            dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
            tensor.copy_(on_device)
        return tensor

    def broadcast(self, value: str) -> str:
        """Rank 0's ``value`` on every rank (a short string, e.g. the run folder)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (so every rank stops at the same step)."""
        if not self.enabled:
            return flag
        return bool(self.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64)).item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def check_same(self, config: Mapping, ignore: Iterable[str] = ()) -> None:
        """Raise :class:`ConfigError` on every rank unless every rank resolved the same ``config``.

        Ranks launched with different flags would otherwise train on mismatched settings or die in a
        collective with a traceback. Each rank sends a digest of its configuration; only when the
        digests differ are the configurations gathered, to name the first differing key. Keys in
        ``ignore`` may differ between ranks.
        """
        if not self.enabled:
            return
        ignored = set(ignore)
        mine = {key: value for key, value in config.items() if key not in ignored}
        digests = _gather(_digest(mine), self.world_size)
        if len(set(digests)) > 1:
            raise ConfigError(_first_difference(_gather(mine, self.world_size)))

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed (gradients averaged over ranks)."""
        if not self.enabled or not any(p.requires_grad for p in model.parameters()):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)


def _gather(value, world_size: int) -> list:
    gathered = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


def _canonical(value) -> str:
    # JSON with sorted keys: the same text for the same value on every rank (1 and 1.0 differ).
    return json.dumps(value, sort_keys=True, default=repr)


def _digest(config: Mapping) -> str:
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def _first_difference(configs: list[Mapping]) -> str:
    """'rank 1 resolved lr=0.5 but rank 0 lr=0.1' for the first rank and key that differ from rank 0."""
    reference = configs[0]
    for rank, other in enumerate(configs[1:], start=1):
        keys = [*reference, *(key for key in other if key not in reference)]
        for key in keys:
            if (key in reference) != (key in other) or _canonical(reference[key]) != _canonical(other[key]):
                return (
                    f"rank {rank} resolved {_setting(other, key)} but rank 0 {_setting(reference, key)}: "
                    "launch every rank with the same configuration"
                )
    return "the ranks resolved different configurations"  # digests differ but no value does: unreachable


def _setting(config: Mapping, key: str) -> str:
    return f"{key}={config[key]!r}" if key in config else f"no {key}"


def find_ddp(model: torch.nn.Module) -> DistributedDataParallel | None:
    """The :class:`DistributedDataParallel` module inside ``model``, or None.

    The loops get what they call: DDP itself, or DDP inside a ``torch.compile`` wrapper
    (``_orig_mod``) or the project's compile-or-eager fallback; all of them register it as a
    submodule, and ``modules()`` lists the wrappers before what they wrap.
    """
    return next((module for module in model.modules() if isinstance(module, DistributedDataParallel)), None)


def gradient_sync(ddp: DistributedDataParallel | None, sync: bool) -> AbstractContextManager:
    """Context for one micro-batch's forward and backward: gradients are all-reduced only if ``sync``.

    With K accumulated micro-batches, DDP would all-reduce after each backward; under
    ``ddp.no_sync()`` gradients accumulate locally and the first backward outside it all-reduces
    their sum, so one optimizer step costs one all-reduce. ``nullcontext`` without DDP.
    """
    return nullcontext() if sync or ddp is None else ddp.no_sync()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(
    device: torch.device, sync_bn: bool = False, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Distributed:
    """Join the process group ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_*``).

    On CUDA each process takes ``cuda:LOCAL_RANK``. Without torchrun this is a single process on
    ``device``. Collectives fail after ``timeout_s`` seconds (NCCL aborts the process) instead of
    waiting for a frozen rank. Prefer :func:`distributed_session`, which also leaves the group.
    """
    if not timeout_s > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {timeout_s}")
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed(0, 1, device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    logger.debug("rank %d of %d on %s", rank, world, device)
    return Distributed(rank, world, device)


@contextmanager
def distributed_session(
    device: torch.device, *, sync_bn: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[Distributed]:
    """This process's :class:`Distributed` for the ``with`` block.

    Under ``torchrun`` the first session joins the process group and later ones reuse it; the group is
    destroyed once, when the process exits (normally or by an exception). Joining again after a
    destroy is not reliable under torchrun's rendezvous store (gloo can dial the previous group's
    ports), and ``fbl compare`` trains run after run in one process. Otherwise it is a single process
    on ``device`` and touches nothing:

    >>> with distributed_session(torch.device("cpu")) as job:
    ...     (job.rank, job.world_size, job.enabled)
    (0, 1, False)
    """
    joining = launched_by_torchrun() and not (dist.is_available() and dist.is_initialized())
    job = init_distributed(device, sync_bn, timeout_s=timeout_s)
    if joining and dist.is_initialized():
        atexit.register(_leave_process_group)
    yield job


def _leave_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
