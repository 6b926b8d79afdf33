import doctest

import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import functional

from ._helpers import COUNTS, batch


def test_doctests():
    result = doctest.testmod(functional, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda z, y, f, c: functional.feature_balanced_loss(z, y, f, c, 60.0, 1.0),
        lambda z, y, f, c: functional.ldam_loss(z, y, c),
        lambda z, y, f, c: functional.balanced_softmax_loss(z, y, c),
        lambda z, y, f, c: functional.logit_adjusted_loss(z, y, c),
    ],
    ids=["fbl", "ldam", "balanced-softmax", "logit-adjusted"],
)
def test_functions_taking_counts_check_them_whether_list_or_tensor(call):
    z, y, f = batch()
    bad = list(COUNTS)
    bad[3] = 0
    for counts in (bad, torch.tensor(bad)):
        with pytest.raises(ConfigError, match="positive count for class 3"):
            call(z, y, f, counts)
    with pytest.raises(ValueError, match="Expected logits with 4 classes"):
        call(z, y, f, COUNTS[:4])


@pytest.mark.parametrize(
    "call",
    [
        lambda z, y: functional.cross_entropy(z, y, reduction="avg"),
        lambda z, y: functional.focal_loss(z, y, reduction="avg"),
        lambda z, y: functional.ldam_loss(z, y, COUNTS, reduction="avg"),
        lambda z, y: functional.balanced_softmax_loss(z, y, COUNTS, reduction="avg"),
        lambda z, y: functional.logit_adjusted_loss(z, y, COUNTS, reduction="avg"),
    ],
)
def test_functions_reject_unknown_reductions(call):
    z, y, _ = batch()
    with pytest.raises(ConfigError, match=r"Expected reduction in \('mean', 'sum', 'none'\) but got 'avg'"):
        call(z, y)


def test_target_shape_is_checked():
    z, y, _ = batch()
    with pytest.raises(ValueError, match=r"Expected target of shape \(7,\)"):
        functional.focal_loss(z, y[:3])
