"""torch.distributed data parallelism, launched by ``torchrun`` (one process per device, one or many nodes).

``fbl train`` runs distributed when ``torchrun`` set ``RANK`` / ``WORLD_SIZE`` (as nanoGPT and
torchvision's reference scripts detect it); otherwise it is a single process, unchanged. NCCL on
GPUs, gloo on CPUs. ``--batch_size`` is the global batch: every rank takes an interleaved,
equal share of each global batch, drawn from one epoch order that all ranks derive from
(seed, epoch), so the same global batches are seen whatever the number of processes. Evaluation
shards the split without padding and all-reduces the per-class sums, so its numbers equal a
single-process evaluation. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fbl.data.sharding import eval_share, shard_order
from fbl.errors import ConfigError

__all__ = ["Distributed", "eval_share", "init_distributed", "launched_by_torchrun", "shard_order"]

logger = logging.getLogger(__name__)


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

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(model)`` when distributed (gradients averaged over ranks)."""
        if not self.enabled or not any(p.requires_grad for p in model.parameters()):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device, sync_bn: bool = False) -> Distributed:
    """Join the process group ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_*``).

    On CUDA each process takes ``cuda:LOCAL_RANK``. Without torchrun this is a single process on ``device``.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed(0, 1, device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only)")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    logger.debug("rank %d of %d on %s", rank, world, device)
    return Distributed(rank, world, device)
