"""Per-class evaluation state kept as sums, and the numbers derived from it.

Keeping counts (not running means) makes results exact however the test set is batched or
sharded. From the sums come top-1/top-5, per-class accuracy, many/medium/few-shot accuracy
(mean of the per-class accuracies in each group, the standard protocol), the per-class mean
feature norm ``||f||`` that FBL is designed to raise for tail classes, and the expected
calibration error over equal-width confidence bins (Guo et al., ICML 2017).

The summaries long-tail papers report beside them (:func:`metrics_from_sums`) come from three
per-class sums alone (test images ``n_c``, hits ``h_c``, predictions ``p_c``), so they are exact
under sharding too: worst-class accuracy, the harmonic and geometric mean of the per-class
accuracies, and macro-F1. With the training counts given, :class:`ClassMetrics` also counts, for
each test prior of :mod:`fbl.label_shift`, the per-class hits of the prior-corrected predictions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fbl.data.shot_groups import shot_groups
from fbl.label_shift import SADE_PRIORS, LabelPrior, accuracy_under_priors, prior_shifts


def _mean_or_none(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def harmonic_mean(values: np.ndarray) -> float | None:
    r""":math:`k / \sum_i 1/a_i` of non-negative values; 0 when one is 0 (its limit), ``None`` when empty."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return None
    return 0.0 if (values <= 0).any() else float(values.size / np.sum(1.0 / values))


def geometric_mean(values: np.ndarray) -> float | None:
    r""":math:`(\prod_i a_i)^{1/k}` of non-negative values, computed in log space; 0 when one is 0."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return None
    return 0.0 if (values <= 0).any() else float(np.exp(np.mean(np.log(values))))


def macro_f1(samples: np.ndarray, hits: np.ndarray, predicted: np.ndarray) -> float | None:
    r"""Macro-F1 in percent: the mean over classes of :math:`F_1 = 2 h_c / (n_c + p_c)`.

    :math:`h_c` true positives, :math:`n_c = h_c + FN_c` test images, :math:`p_c = h_c + FP_c`
    predictions of class ``c``. Classes that are neither in the test labels nor predicted are left
    out (as scikit-learn does); a class with test images that is never predicted scores 0.
    """
    samples, hits, predicted = (np.asarray(a, dtype=np.float64) for a in (samples, hits, predicted))
    seen = (samples + predicted) > 0
    if not seen.any():
        return None
    return float(100.0 * np.mean(2.0 * hits[seen] / (samples[seen] + predicted[seen])))


def metrics_from_sums(
    samples: np.ndarray, hits: np.ndarray, predicted: np.ndarray, groups: Mapping[str, Sequence[int]]
) -> dict[str, float | None]:
    """``top1``, each group's mean per-class accuracy, ``worst`` (lowest per-class accuracy), ``hmean``,
    ``gmean`` (of the per-class accuracies) and ``macro_f1``, in percent, from per-class sums.

    Classes without test images have no accuracy and are left out of every mean over classes.
    """
    samples, hits = np.asarray(samples, dtype=np.float64), np.asarray(hits, dtype=np.float64)
    present = samples > 0
    accuracy = np.full(samples.shape, np.nan)
    accuracy[present] = 100.0 * hits[present] / samples[present]
    total = samples.sum()
    result = {"top1": float(100.0 * hits.sum() / total) if total else None}
    for name, members in groups.items():
        chosen = accuracy[np.asarray(members, dtype=np.int64)]
        chosen = chosen[~np.isnan(chosen)]
        result[name] = float(chosen.mean()) if chosen.size else None
    measured = accuracy[present]
    result["worst"] = float(measured.min()) if measured.size else None
    result["hmean"] = harmonic_mean(measured)
    result["gmean"] = geometric_mean(measured)
    result["macro_f1"] = macro_f1(samples, hits, predicted)
    return result


class ClassMetrics:
    """Accumulates per-class sample counts, top-1/top-5 hits, predictions and feature-norm sums, and per
    confidence bin the sample count, confidence sum and hit count (for ECE).

    With ``class_counts`` (the training counts), it also counts for each of ``priors`` the per-class
    top-1 hits after the post-hoc correction for that test prior (:func:`fbl.label_shift.prior_shifts`,
    from ``source``, the prior the logits estimate: the training prior unless given).
    """

    #: Confusion matrices are kept (and reported) up to this many classes.
    MAX_CONFUSION_CLASSES = 100

    def __init__(
        self,
        num_classes: int,
        calibration_bins: int = 15,
        *,
        class_counts: Sequence[int] | None = None,
        priors: Sequence[LabelPrior] = SADE_PRIORS,
        source: Sequence[float] | None = None,
    ):
        self.num_classes = num_classes
        self.calibration_bins = calibration_bins
        self.table_priors = tuple(priors)  # reported uncorrected whatever the counting
        self.priors = self.table_priors if class_counts is not None else ()
        # (P, C) float64; cast to the logits' device and dtype on first use.
        self.shifts = prior_shifts(self.priors, class_counts, source) if self.priors else None
        self.reset()

    def reset(self) -> None:
        zeros = lambda n: torch.zeros(n, dtype=torch.float64)  # noqa: E731
        c, b = self.num_classes, self.calibration_bins
        self.samples, self.top1_hits, self.top5_hits, self.norm_sums = zeros(c), zeros(c), zeros(c), zeros(c)
        self.predicted = zeros(c)
        self.bin_samples, self.bin_confidence, self.bin_hits = zeros(b), zeros(b), zeros(b)
        self.confusion = zeros(c * c) if c <= self.MAX_CONFUSION_CLASSES else zeros(0)
        self.corrected_hits = zeros(len(self.priors) * c)

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        features: torch.Tensor | None = None,
        *,
        correct_from: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add one batch; returns its top-1 predictions (on the CPU). ``correct_from``: the logits the prior
        correction starts from (default ``logits``; evaluation passes the model's own logits, so that a
        post-hoc adjustment is not applied twice)."""
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        target = target.to(topk.device)
        hit1 = (topk[:, 0] == target).to(torch.float64).cpu()
        hit5 = (topk == target[:, None]).any(dim=1).to(torch.float64).cpu()
        self._update_corrected(logits if correct_from is None else correct_from, target)
        target = target.cpu()
        prediction = topk[:, 0].cpu()
        ones = torch.ones_like(hit1)
        self.samples.index_add_(0, target, ones)
        self.top1_hits.index_add_(0, target, hit1)
        self.top5_hits.index_add_(0, target, hit5)
        self.predicted.index_add_(0, prediction, ones)
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
            cells = target * self.num_classes + prediction
            self.confusion.index_add_(0, cells, ones)
        return prediction

    def _update_corrected(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Per prior ``p``: hits of ``argmax(z + shift_p)``, added at ``p * C + target``."""
        if self.shifts is None:
            return
        shifts = self.shifts.to(device=logits.device, dtype=logits.dtype)
        # One prior at a time keeps memory at one batch of logits; one copy to the CPU for all of them.
        hits = torch.stack([(logits.detach() + shift).argmax(dim=1) == target for shift in shifts])
        offsets = torch.arange(len(self.priors))[:, None] * self.num_classes
        cells = (target.cpu()[None, :] + offsets).reshape(-1)
        self.corrected_hits.index_add_(0, cells, hits.cpu().to(torch.float64).reshape(-1))

    #: The sums, in the order :meth:`state_tensor` concatenates them.
    SUMS = (
        "samples", "top1_hits", "top5_hits", "norm_sums", "bin_samples", "bin_confidence", "bin_hits", "confusion",
        "predicted", "corrected_hits",
    )  # fmt: skip

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

    def _per_class(self, sums: torch.Tensor) -> list[float | None]:
        """``sums[c] / n_c`` per class (``None`` without test samples)."""
        return [s / n if n else None for s, n in zip(sums.tolist(), self.samples.tolist(), strict=True)]

    def compute(self, class_counts: list[int]) -> dict:
        """Accuracies in percent; a class without test samples gives ``None`` in per-class lists.

        ``test_priors`` holds, per test prior of :mod:`fbl.label_shift`, the accuracy under it
        (``uncorrected``) and, when this object counted corrected hits, with the prior correction.
        """
        total = self.samples.sum().item()
        groups = shot_groups(class_counts)
        derived = metrics_from_sums(self.samples.numpy(), self.top1_hits.numpy(), self.predicted.numpy(), groups)
        per_class_acc = [None if a is None else 100.0 * a for a in self._per_class(self.top1_hits)]
        result = {
            "top1": derived["top1"],
            "top5": 100.0 * self.top5_hits.sum().item() / total if total else None,
            "ece": self.expected_calibration_error(),
            **{name: derived[name] for name in groups},
            **{name: derived[name] for name in ("worst", "hmean", "gmean", "macro_f1")},
        }
        result["per_class_acc"] = per_class_acc
        result["per_class_feature_norm"] = self._per_class(self.norm_sums)
        corrected = self._corrected_acc()
        result["test_priors"] = accuracy_under_priors(per_class_acc, class_counts, corrected, self.table_priors)
        result["calibration"] = {
            "bin_samples": self.bin_samples.tolist(),
            "bin_confidence": self.bin_confidence.tolist(),
            "bin_hits": self.bin_hits.tolist(),
        }
        if self.confusion.numel():
            c = self.num_classes
            result["confusion"] = [[int(v) for v in row] for row in self.confusion.view(c, c).tolist()]
        return result

    def _corrected_acc(self) -> dict[str, list[float | None]]:
        rows = self.corrected_hits.view(len(self.priors), self.num_classes) if self.priors else []
        return {
            prior.name: [None if a is None else 100.0 * a for a in self._per_class(row)]
            for prior, row in zip(self.priors, rows, strict=True)
        }
