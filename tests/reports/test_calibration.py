import math

import pytest
import torch

from fbl.metrics import ClassMetrics
from fbl.reports.calibration import add_bins, bin_accuracy_confidence, expected_calibration_error


def _longhand_bins(confidences, hits, bins=15):
    samples, conf_sums, hit_sums = [0.0] * bins, [0.0] * bins, [0.0] * bins
    for conf, hit in zip(confidences, hits, strict=False):
        k = min(max(math.ceil(conf * bins), 1), bins) - 1  # bin k holds (k/B, (k+1)/B]
        samples[k] += 1
        conf_sums[k] += conf
        hit_sums[k] += hit
    return {"bin_samples": samples, "bin_confidence": conf_sums, "bin_hits": hit_sums}


def _longhand_ece(confidences, hits, bins=15):
    total = len(confidences)
    ece = 0.0
    for k in range(bins):
        members = [i for i, c in enumerate(confidences) if k / bins < c <= (k + 1) / bins]
        if members:
            accuracy = sum(hits[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            ece += len(members) / total * abs(accuracy - confidence)
    return 100.0 * ece


def test_ece_from_bins_equals_longhand_definition():
    confidences = [0.95, 0.91, 0.85, 0.72, 0.66, 0.5, 0.34, 0.99, 0.12, 0.8]
    hits = [1, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    bins = _longhand_bins(confidences, hits)
    assert expected_calibration_error(bins) == pytest.approx(_longhand_ece(confidences, hits), abs=1e-12)


def test_ece_from_bins_matches_training_metric():
    torch.manual_seed(0)
    logits, target = torch.randn(200, 10) * 3, torch.randint(0, 10, (200,))
    metric = ClassMetrics(10)
    metric.update(logits, target)
    bins = {
        "bin_samples": metric.bin_samples.tolist(),
        "bin_confidence": metric.bin_confidence.tolist(),
        "bin_hits": metric.bin_hits.tolist(),
    }
    confidences = logits.double().softmax(1).max(1).values.tolist()
    hits = (logits.argmax(1) == target).tolist()
    assert expected_calibration_error(bins) == pytest.approx(_longhand_ece(confidences, hits), abs=1e-9)
    assert expected_calibration_error(bins) == pytest.approx(metric.expected_calibration_error(), abs=1e-9)


def test_add_bins_sums_seeds_and_empty_bins_have_no_accuracy():
    a = {"bin_samples": [2, 0, 4], "bin_confidence": [0.5, 0.0, 3.0], "bin_hits": [1, 0, 3]}
    b = {"bin_samples": [2, 0, 1], "bin_confidence": [0.6, 0.0, 0.9], "bin_hits": [0, 0, 1]}
    total = add_bins([a, b])
    assert total == {"bin_samples": [4, 0, 5], "bin_confidence": [1.1, 0.0, 3.9], "bin_hits": [1, 0, 4]}
    accuracy, confidence = bin_accuracy_confidence(total)
    assert accuracy == [1 / 4, None, 4 / 5]
    assert confidence[1] is None
    assert confidence[0] == pytest.approx(1.1 / 4) and confidence[2] == pytest.approx(3.9 / 5)


def test_ece_without_samples_is_none():
    assert expected_calibration_error({"bin_samples": [0, 0], "bin_confidence": [0, 0], "bin_hits": [0, 0]}) is None
