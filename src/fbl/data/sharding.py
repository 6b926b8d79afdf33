"""How one epoch's samples are split between the processes of a distributed job.

Every process derives the same global epoch order from (seed, epoch); these functions pick its
share, so the global batches are the same whatever the number of processes.
"""

from __future__ import annotations

import torch

from fbl.errors import ConfigError


def shard_order(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of an epoch order, batch by global batch.

    The order is padded (by repeating its start) to whole global batches of ``batch_size``; rank
    ``r`` takes positions ``r, r + W, r + 2W, ...`` of each, so every rank gets ``batch_size / W``
    samples per batch and the ranks' shares of a batch are disjoint. Padding repeats at most
    ``batch_size - 1`` samples per epoch, in training only.
    """
    if world_size == 1:
        return order
    if batch_size % world_size:
        raise ConfigError(f"--batch_size {batch_size} must be a multiple of the {world_size} processes")
    padded = -(-len(order) // batch_size) * batch_size
    order = torch.cat([order, order[: padded - len(order)]]) if padded > len(order) else order
    return order.view(-1, world_size)[:, rank].contiguous()


def eval_share(size: int, rank: int, world_size: int) -> torch.Tensor:
    """Indices ``rank, rank + W, ...`` of an evaluation split: disjoint, no padding, so sums are exact."""
    return torch.arange(rank, size, world_size)
