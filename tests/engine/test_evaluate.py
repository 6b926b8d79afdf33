"""Evaluation sees the logits the loss trained: LDAM's cosine outputs are scaled by its ``s`` before
probabilities (and so calibration) are computed; predictions do not change."""

import torch
from torch import nn

from fbl.engine.evaluate import evaluate
from fbl.losses import create_loss, list_losses

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


def test_only_ldam_rescales_its_logits():
    assert create_loss("ldam", [5, 3, 1], s=12.0).logit_scale == 12.0
    assert create_loss("ldam", [5, 3, 1]).logit_scale == 30.0
    assert {name: create_loss(name, [5, 3, 1]).logit_scale for name in list_losses() if name != "ldam"} == {
        name: 1.0 for name in list_losses() if name != "ldam"
    }
