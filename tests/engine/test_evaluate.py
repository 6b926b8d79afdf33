"""Evaluation sees the logits the loss trained: LDAM's cosine outputs are scaled by its ``s`` before
probabilities (and so calibration) are computed; predictions do not change."""

import pytest
import torch
from torch import nn

from fbl.engine.evaluate import evaluate, evaluate_with_predictions
from fbl.losses import create_loss, list_losses
from fbl.posthoc import logit_adjust

COSINES = torch.tensor([[0.9, 0.1, -0.2], [0.2, 0.3, 0.1], [-0.5, 0.4, 0.6], [0.1, 0.0, -0.1]])
TARGETS = torch.tensor([0, 2, 2, 1])


class _Cosines(nn.Module):
    """Returns its input as the logits (and a constant feature), like a cosine head would."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # evaluate reads the device from the parameters

    def forward(self, x, return_features=False):
        return (x, torch.ones(x.shape[0], 2)) if return_features else x


def _ece_longhand(logits, targets, bins=15):
    total = 0.0
    for k in range(bins):
        rows = []
        for logit, target in zip(logits.tolist(), targets.tolist(), strict=True):
            exps = [2.718281828459045**v for v in logit]
            confidence = max(exps) / sum(exps)
            if k / bins < confidence <= (k + 1) / bins:
                rows.append((confidence, float(logit.index(max(logit)) == target)))
        if rows:
            gap = sum(hit for _, hit in rows) - sum(conf for conf, _ in rows)
            total += abs(gap)
    return 100.0 * total / len(targets)


def test_calibration_uses_the_scaled_logits_and_top1_does_not_change():
    raw = evaluate(_Cosines(), [(COSINES, TARGETS)], [5, 3, 1])
    scaled = evaluate(_Cosines(), [(COSINES, TARGETS)], [5, 3, 1], logit_scale=30.0)
    assert raw["top1"] == scaled["top1"] == 50.0  # rows 0 and 2 are right
    assert abs(raw["ece"] - _ece_longhand(COSINES, TARGETS)) < 1e-9
    assert abs(scaled["ece"] - _ece_longhand(30.0 * COSINES, TARGETS)) < 1e-9
    assert abs(raw["ece"] - scaled["ece"]) > 1  # the two calibrations differ


def test_only_cosine_classifier_losses_rescale_their_logits():
    # LDAM and RIDE / SADE / BalPoE (cosine expert heads, as their CIFAR code) train cosine logits times
    # s = 30; every other loss, FBL experts included (linear heads: FBL needs the raw norm), takes them as they are.
    assert create_loss("ldam", [5, 3, 1], s=12.0).logit_scale == 12.0
    cosine = {"ldam", "ride", "sade", "balpoe"}
    assert {name: create_loss(name, [5, 3, 1]).logit_scale for name in list_losses()} == {
        name: 30.0 if name in cosine else 1.0 for name in list_losses()
    }


def test_predictions_are_kept_per_image_in_split_order():
    metrics, predictions = evaluate_with_predictions(
        _Cosines(), [(COSINES[:3], TARGETS[:3]), (COSINES[3:], TARGETS[3:])], [5, 3, 1]
    )
    assert predictions.index.tolist() == [0, 1, 2, 3]
    assert predictions.label.tolist() == [0, 2, 2, 1]
    assert predictions.prediction.tolist() == [0, 1, 2, 0]  # argmax of each row of COSINES
    assert metrics["top1"] == evaluate(_Cosines(), [(COSINES, TARGETS)], [5, 3, 1])["top1"] == 50.0


def test_prior_correction_starts_from_the_model_logits_not_a_post_hoc_adjustment():
    counts = [5, 3, 1]
    plain = evaluate(_Cosines(), [(COSINES, TARGETS)], counts)
    adjusted = evaluate(_Cosines(), [(COSINES, TARGETS)], counts, logit_transform=lambda z: logit_adjust(z, counts))
    assert {k: v["corrected"] for k, v in plain["test_priors"].items()} == {
        k: v["corrected"] for k, v in adjusted["test_priors"].items()
    }
    # uniform test prior: z + log(1/3) - log(n_c / 9), i.e. z - log n_c + const, is logit adjustment with tau = 1
    la = evaluate(_Cosines(), [(COSINES, TARGETS)], counts, logit_transform=lambda z: logit_adjust(z, counts))
    per_class = la["per_class_acc"]
    assert plain["test_priors"]["uniform"]["corrected"] == pytest.approx(sum(per_class) / 3)
