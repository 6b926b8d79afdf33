"""Per-class evaluation state kept as sums, and the numbers derived from it.

Keeping counts (not running means) makes results exact however the test set is batched or
sharded. From the sums come top-1/top-5, per-class accuracy, many/medium/few-shot accuracy
(mean of the per-class accuracies in each group, the standard protocol), the per-class mean
feature norm ``||f||`` that FBL is designed to raise for tail classes, and the expected
calibration error over equal-width confidence bins (Guo et al., ICML 2017).
"""

from __future__ import annotations

import math

import torch

from fbl.data.shot_groups import shot_groups


def _mean_or_none(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


class ClassMetrics:
    """Accumulates per-class sample counts, top-1/top-5 hits and feature-norm sums, and per
    confidence bin the sample count, confidence sum and hit count (for ECE)."""

    #: Confusion matrices are kept (and reported) up to this many classes.
    MAX_CONFUSION_CLASSES = 100

    def __init__(self, num_classes: int, calibration_bins: int = 15):
        self.num_classes = num_classes
        self.calibration_bins = calibration_bins
        self.reset()

    def reset(self) -> None:
        zeros = lambda n: torch.zeros(n, dtype=torch.float64)  # noqa: E731
        c, b = self.num_classes, self.calibration_bins
        self.samples, self.top1_hits, self.top5_hits, self.norm_sums = zeros(c), zeros(c), zeros(c), zeros(c)
        self.bin_samples, self.bin_confidence, self.bin_hits = zeros(b), zeros(b), zeros(b)
        self.confusion = zeros(c * c) if c <= self.MAX_CONFUSION_CLASSES else zeros(0)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor | None = None) -> None:
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        target = target.to(topk.device)
        hit1 = (topk[:, 0] == target).to(torch.float64).cpu()
        hit5 = (topk == target[:, None]).any(dim=1).to(torch.float64).cpu()
        target = target.cpu()
        ones = torch.ones_like(hit1)
        self.samples.index_add_(0, target, ones)
        self.top1_hits.index_add_(0, target, hit1)
        self.top5_hits.index_add_(0, target, hit5)
        if features is not None:
            norms = torch.linalg.vector_norm(features.detach().to(torch.float64), dim=1).cpu()
            self.norm_sums.index_add_(0, target, norms)
        confidence = logits.detach().double().softmax(dim=1).max(dim=1).values.cpu()
        # Bin k holds confidences in (k/B, (k+1)/B]; a confidence of exactly 0 cannot occur.
        bins = (confidence * self.calibration_bins).ceil().long().clamp(1, self.calibration_bins) - 1
        self.bin_samples.index_add_(0, bins, ones)
        self.bin_confidence.index_add_(0, bins, confidence)
        self.bin_hits.index_add_(0, bins, hit1)
        if self.confusion.numel():
            cells = target * self.num_classes + topk[:, 0].cpu()
            self.confusion.index_add_(0, cells, ones)

    #: The sums, in the order :meth:`state_tensor` concatenates them.
    SUMS = ("samples", "top1_hits", "top5_hits", "norm_sums", "bin_samples", "bin_confidence", "bin_hits", "confusion")

    def state_tensor(self) -> torch.Tensor:
        """All sums in one flat tensor: what a distributed all-reduce would sum."""
        return torch.cat([getattr(self, name) for name in self.SUMS])

    def load_state_tensor(self, state: torch.Tensor) -> None:
        sizes = [getattr(self, name).numel() for name in self.SUMS]
        for name, part in zip(self.SUMS, state.to(torch.float64).cpu().clone().split(sizes), strict=True):
            setattr(self, name, part)

    def expected_calibration_error(self) -> float | None:
        """ECE in percent: sum over bins of (n_b / N) * |accuracy_b - confidence_b|."""
        total = self.bin_samples.sum().item()
        if not total:
            return None
        gaps = (self.bin_hits - self.bin_confidence).abs()  # n_b * |acc_b - conf_b|
        return 100.0 * gaps.sum().item() / total

    def compute(self, class_counts: list[int]) -> dict:
        """Accuracies in percent; a class without test samples gives ``None`` in per-class lists."""
        total = self.samples.sum().item()
        per_class_acc, per_class_norm = [], []
        for c in range(self.num_classes):
            n = self.samples[c].item()
            per_class_acc.append(100.0 * self.top1_hits[c].item() / n if n else None)
            per_class_norm.append(self.norm_sums[c].item() / n if n else None)
        groups = shot_groups(class_counts)
        result = {
            "top1": 100.0 * self.top1_hits.sum().item() / total if total else None,
            "top5": 100.0 * self.top5_hits.sum().item() / total if total else None,
            "ece": self.expected_calibration_error(),
        }
        for name, members in groups.items():
            result[name] = _mean_or_none([per_class_acc[c] for c in members])
        result["per_class_acc"] = per_class_acc
        result["per_class_feature_norm"] = per_class_norm
        result["calibration"] = {
            "bin_samples": self.bin_samples.tolist(),
            "bin_confidence": self.bin_confidence.tolist(),
            "bin_hits": self.bin_hits.tolist(),
        }
        if self.confusion.numel():
            c = self.num_classes
            result["confusion"] = [[int(v) for v in row] for row in self.confusion.view(c, c).tolist()]
        return result
