"""Reliability of confidence from per-bin sums (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017).

Training stores, per equal-width confidence bin ``b`` (bin ``k`` of ``B`` holds confidences in
``(k/B, (k+1)/B]``), the sample count ``n_b``, the sum of top-1 confidences and the number of
top-1 hits. Sums add up exactly over seeds, so a method's bins are the sums of its runs' bins.
"""

from __future__ import annotations

from collections.abc import Sequence

from fbl.errors import ConfigError

BIN_KEYS = ("bin_samples", "bin_confidence", "bin_hits")


def add_bins(calibrations: Sequence[dict]) -> dict:
    """Bin-wise sum of several ``calibration`` dicts (e.g. one per seed)."""
    if not calibrations:
        raise ValueError("Expected at least one calibration dict but got none")
    sizes = {len(c[key]) for c in calibrations for key in BIN_KEYS}
    if len(sizes) != 1:
        raise ConfigError(f"calibration bins differ in number between runs or fields: {sorted(sizes)}")
    (bins,) = sizes
    return {key: [sum(c[key][b] for c in calibrations) for b in range(bins)] for key in BIN_KEYS}


def bin_accuracy_confidence(calibration: dict) -> tuple[list[float | None], list[float | None]]:
    """Per-bin accuracy ``hits_b / n_b`` and mean confidence ``conf_b / n_b`` (``None`` for empty bins), in [0, 1]."""
    accuracy, confidence = [], []
    for n, conf, hits in zip(*(calibration[key] for key in BIN_KEYS), strict=False):
        accuracy.append(hits / n if n else None)
        confidence.append(conf / n if n else None)
    return accuracy, confidence


def expected_calibration_error(calibration: dict) -> float | None:
    r"""ECE in percent from bin sums.

    :math:`100 \sum_b \frac{n_b}{N} |acc_b - conf_b| = \frac{100}{N} \sum_b |hits_b - conf_b|`.
    """
    total = sum(calibration["bin_samples"])
    if not total:
        return None
    pairs = zip(calibration["bin_hits"], calibration["bin_confidence"], strict=True)
    return 100.0 * sum(abs(h - c) for h, c in pairs) / total
