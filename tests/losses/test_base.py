"""The LongTailLoss contract: an optional per-class weight (a buffer the trainer assigns) and set_epoch.

Where weights come from and when they switch on (re-weighting, DRW) is the train rules' business,
tested in tests/test_train_rules.py; the cb-* variants build their effective-number weight here.
"""

import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import CrossEntropyLoss, FeatureBalancedLoss, LongTailLoss, create_loss, list_losses, loss_class

from ._helpers import COUNTS, EXPLICIT_WEIGHT, batch, effective_number_longhand


def as64(values):
    return torch.tensor(values, dtype=torch.float64)


def _kwargs(name):
    return {"total_epochs": 10} if "fbl" in name else {}


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
@pytest.mark.parametrize("name", ["cb-ce", "cb-focal", "cb-fbl"])
def test_cb_variants_weight_by_effective_number_as_cui_et_al(name, beta):
    crit = create_loss(name, COUNTS, beta=beta, **_kwargs(name))
    want = effective_number_longhand(COUNTS, beta)
    torch.testing.assert_close(crit.weight.double(), as64(want), rtol=1e-6, atol=0)
    assert crit.weight.sum().item() == pytest.approx(len(COUNTS), rel=1e-6)
    assert crit.weight[-1] > crit.weight[0]  # the rarest class weighs most


def test_a_cb_variant_refuses_a_second_weight():
    with pytest.raises(ConfigError, match="weights classes by effective-number; give no weight"):
        create_loss("cb-ce", COUNTS, weight=EXPLICIT_WEIGHT)


def test_no_weight_by_default():
    crit = CrossEntropyLoss(COUNTS)
    assert crit.weight is None and "weight" not in crit.state_dict()


@pytest.mark.parametrize("name", [n for n in list_losses() if not loss_class(n).needs_experts])
def test_every_loss_applies_the_weight_it_is_given(name):
    z, y, f = batch()
    crit = create_loss(name.removeprefix("cb-"), COUNTS, **_kwargs(name))
    crit.set_epoch(1)
    before = crit(z.float(), y, features=f.float())
    crit.set_weight(EXPLICIT_WEIGHT)
    after = crit(z.float(), y, features=f.float())
    assert crit.weight.tolist() == EXPLICIT_WEIGHT and not torch.allclose(before, after)
    crit.set_weight(None)
    torch.testing.assert_close(crit(z.float(), y, features=f.float()), before)


def test_weight_follows_module_conversion():
    crit = CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT).to(torch.float64)
    assert crit.weight.dtype == torch.float64 and crit.class_counts.dtype == torch.float64
    crit.set_weight(EXPLICIT_WEIGHT)  # a new weight lands where the buffers are
    assert crit.weight.device == crit.class_counts.device


def test_state_dict_round_trip_keeps_the_weight():
    source = CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT)
    target = CrossEntropyLoss(COUNTS, weight=[1.0] * len(COUNTS))
    target.load_state_dict(source.state_dict())
    assert set(source.state_dict()) == {"class_counts", "weight"}
    torch.testing.assert_close(target.weight, source.weight)


def test_set_weight_validates():
    crit = CrossEntropyLoss(COUNTS)
    with pytest.raises(ConfigError, match="Expected 5 per-class weights but got 2"):
        crit.set_weight([1.0, 2.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weight=[1.0, -1.0, 1.0, 1.0, 1.0]), "Expected finite, non-negative per-class weights"),
        (dict(weight=[1.0, 1.0]), "Expected 5 per-class weights but got 2"),
        (dict(reduction="batchmean"), r"Expected reduction in \('mean', 'sum', 'none'\) but got 'batchmean'"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CrossEntropyLoss(COUNTS, **kwargs)


@pytest.mark.parametrize("beta", [1.0, 0, "x"])
def test_bad_beta_of_a_variant(beta):
    with pytest.raises(ConfigError, match=r"Expected beta in the open interval \(0, 1\)"):
        create_loss("cb-ce", COUNTS, beta=beta)


def test_set_epoch_checks_its_argument():
    with pytest.raises(ConfigError, match="Expected epoch to be a 0-based epoch"):
        CrossEntropyLoss(COUNTS).set_epoch(-3)


def test_subclasses_keep_the_base_epoch_bookkeeping():
    crit = FeatureBalancedLoss(COUNTS, total_epochs=20)
    crit.set_epoch(5)
    assert crit.epoch == 5 and crit.alpha == pytest.approx((5 / 19) ** 2)  # (e / (0.95 E))^2, E = 20
    assert isinstance(crit, LongTailLoss)


def test_repr_says_whether_weighted():
    assert "weighted" not in repr(CrossEntropyLoss(COUNTS))
    assert "weighted" in repr(CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT))
