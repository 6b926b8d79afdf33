"""Re-sampling for long-tailed training. Samplers take the training ``labels``, not a dataset.

:class:`ClassWeightedSampler` is the one class-weighted sampler: fed the per-class weight functions
of :mod:`fbl.class_weights` (the same ones the re-weighting losses use) it gives instance-balanced,
class-balanced, square-root and effective-number sampling. :class:`ClassAwareSampler` is the
class-aware round-robin of Shen et al. (ECCV 2016), as used by Kang et al.'s decoupling code.

Both follow ``torch.utils.data.DistributedSampler``'s convention: call ``set_epoch(epoch)`` at the
start of every epoch. The indices are a pure function of ``(seed, epoch)``, so a resumed run draws
exactly what the uninterrupted run drew; without ``set_epoch`` every epoch repeats epoch 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from fbl.errors import ConfigError
from fbl.seeding import epoch_generator

Labels = Sequence[int] | torch.Tensor | np.ndarray

__all__ = ["ClassWeightedSampler", "ClassAwareSampler"]


def _check_labels(labels: Labels) -> torch.Tensor:
    """The labels as a 1-D int64 CPU tensor of non-negative class indices."""
    if isinstance(labels, torch.Tensor):
        tensor = labels.detach().cpu()
    else:
        tensor = torch.as_tensor(np.asarray(labels))
    if tensor.dim() != 1:
        raise ConfigError(f"Expected a 1-D sequence of labels but got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ConfigError("Expected at least one label but got an empty list: a sampler needs a training set")
    whole_floats = tensor.is_floating_point() and torch.equal(tensor, tensor.round())
    if tensor.dtype == torch.bool or tensor.is_complex() or (tensor.is_floating_point() and not whole_floats):
        raise ConfigError(f"Expected integer class labels but got dtype {tensor.dtype}")
    tensor = tensor.long()
    if (tensor < 0).any():
        raise ConfigError(f"Expected class labels >= 0 but got {int(tensor.min())}")
    return tensor


def _check_num_samples(num_samples: int | None, default: int) -> int:
    if num_samples is None:
        return default
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
        raise ConfigError(f"Expected num_samples to be a positive integer but got {num_samples!r}")
    return int(num_samples)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ConfigError(f"Expected seed to be a non-negative integer but got {seed!r}")
    return int(seed)


class _EpochSampler(Sampler[int]):
    """Shared plumbing: labels, length, seed and the per-epoch generator."""

    def __init__(self, labels: Labels, num_samples: int | None, seed: int):
        self.labels = _check_labels(labels)
        self.num_samples = _check_num_samples(num_samples, default=self.labels.numel())
        self.seed = _check_seed(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of 0-based ``epoch``; the same ``(seed, epoch)`` gives the same indices."""
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
            raise ConfigError(f"Expected a 0-based epoch >= 0 but got {epoch!r}")
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """The ``num_samples`` dataset indices of the current epoch, as an int64 tensor."""
        return self._draw(epoch_generator(self.seed, self.epoch))

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassWeightedSampler(_EpochSampler):
    r"""Draw samples with replacement, each with probability proportional to its class's weight.

    .. math:: P(i) = \frac{w_{y_i}}{\sum_k w_{y_k}}, \qquad P(\text{class } j) \propto n_j w_j

    With ``fbl.class_weights``: ``uniform_weights`` gives instance-balanced sampling,
    ``inverse_frequency_weights(counts, 1)`` class-balanced, ``power=0.5`` square-root sampling and
    ``effective_number_weights`` sampling by effective number (Cui et al., CVPR 2019).

    Args:
        labels: class index of every training sample, in dataset order.
        class_weights: one non-negative weight per class (``max(labels) + 1`` of them).
        num_samples: draws per epoch; defaults to ``len(labels)``.
        seed: base seed; the draws depend only on ``(seed, epoch)``.

    Example:
        >>> from fbl.class_weights import inverse_frequency_weights
        >>> labels = [0, 0, 0, 1]
        >>> sampler = ClassWeightedSampler(labels, inverse_frequency_weights([3, 1]), num_samples=6)
        >>> len(list(sampler))
        6
    """

    def __init__(self, labels: Labels, class_weights, num_samples: int | None = None, seed: int = 0):
        super().__init__(labels, num_samples, seed)
        weights = torch.as_tensor(class_weights, dtype=torch.float64).detach().cpu().reshape(-1)
        num_classes = int(self.labels.max()) + 1
        if weights.numel() != num_classes:
            raise ConfigError(
                f"Expected one weight per class ({num_classes}, from the largest label) but got {weights.numel()}"
            )
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ConfigError(f"Expected finite, non-negative class weights but got {weights.tolist()}")
        self.class_weights = weights
        self.sample_weights = weights[self.labels]
        if self.sample_weights.sum() <= 0:
            raise ConfigError("Expected a positive weight for at least one class present in the labels but all are 0")

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.sample_weights, self.num_samples, replacement=True, generator=generator)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, "
            f"num_classes={self.class_weights.numel()}, seed={self.seed})"
        )


class ClassAwareSampler(_EpochSampler):
    """Class-aware round-robin sampling (Shen et al., ECCV 2016; Kang et al., ICLR 2020).

    Each round visits every class present in ``labels`` once, in a freshly shuffled order, and takes
    the next ``samples_per_class`` (k) indices from that class's own shuffled list; a class's list is
    reshuffled when it runs out, so within a class every sample is used once before any repeats.
    Every full round therefore holds exactly k draws of each class, in runs of k. Drawing stops at
    ``num_samples`` (default ``len(labels)``), which may cut the last round short.

    Example:
        >>> sampler = ClassAwareSampler([0, 0, 0, 1], samples_per_class=2, num_samples=8)
        >>> sorted(int(i > 2) for i in sampler)
        [0, 0, 0, 0, 1, 1, 1, 1]
    """

    def __init__(self, labels: Labels, samples_per_class: int = 4, num_samples: int | None = None, seed: int = 0):
        super().__init__(labels, num_samples, seed)
        k = samples_per_class
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ConfigError(f"Expected samples_per_class to be a positive integer but got {k!r}")
        self.samples_per_class = int(k)
        self.classes = torch.unique(self.labels)
        self._members = [torch.nonzero(self.labels == c).flatten() for c in self.classes.tolist()]

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        k = self.samples_per_class
        queues: list[list[int] | None] = [None] * len(self._members)
        positions = [0] * len(self._members)
        out: list[int] = []
        rounds = math.ceil(self.num_samples / (k * len(self._members)))
        for _ in range(rounds):
            for c in torch.randperm(len(self._members), generator=generator).tolist():
                members = self._members[c]
                for _ in range(k):
                    if queues[c] is None or positions[c] == len(queues[c]):
                        queues[c] = members[torch.randperm(len(members), generator=generator)].tolist()
                        positions[c] = 0
                    out.append(queues[c][positions[c]])
                    positions[c] += 1
        return torch.tensor(out[: self.num_samples], dtype=torch.long)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, num_classes={len(self._members)}, "
            f"samples_per_class={self.samples_per_class}, seed={self.seed})"
        )
