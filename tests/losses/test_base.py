"""The LongTailLoss contract: class weighting (Cui et al.) and deferred re-weighting (Cao et al.)."""
import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import CrossEntropyLoss, FeatureBalancedLoss, LongTailLoss, create_loss, list_losses

from ._helpers import COUNTS, EXPLICIT_WEIGHT, batch, effective_number_longhand, inverse_frequency_longhand


def as64(values):
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number_weights_match_cui_et_al(beta):
    crit = CrossEntropyLoss(COUNTS, weighting="effective-number", beta=beta)
    want = effective_number_longhand(COUNTS, beta)
    torch.testing.assert_close(crit.weight.double(), as64(want), rtol=1e-6, atol=0)
    assert crit.weight.sum().item() == pytest.approx(len(COUNTS), rel=1e-6)
    assert crit.weight[-1] > crit.weight[0]  # the rarest class weighs most


def test_inverse_frequency_weights():
    crit = CrossEntropyLoss(COUNTS, weighting="Inverse_Frequency")
    assert crit.weighting == "inverse-frequency"
    torch.testing.assert_close(crit.weight.double(), as64(inverse_frequency_longhand(COUNTS)), rtol=1e-6, atol=0)


@pytest.mark.parametrize("weighting", [None, "none", "None"])
def test_no_weighting(weighting):
    crit = CrossEntropyLoss(COUNTS, weighting=weighting)
    assert crit.weighting == "none" and crit.weight is None and crit.class_weight is None


def test_drw_without_a_weight_defers_effective_number_weights():
    crit = CrossEntropyLoss(COUNTS, drw_epoch=3, beta=0.999)
    assert crit.weighting == "effective-number"
    assert crit.weight is None
    crit.set_epoch(2)
    assert crit.weight is None
    crit.set_epoch(3)
    torch.testing.assert_close(crit.weight.double(), as64(effective_number_longhand(COUNTS, 0.999)), rtol=1e-6, atol=0)


def test_drw_defers_an_explicit_weight_and_can_switch_back():
    crit = CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT, drw_epoch=1)
    assert crit.weight is None
    crit.set_epoch(1)
    assert crit.weight.tolist() == EXPLICIT_WEIGHT
    crit.set_epoch(0)  # e.g. a trainer that re-evaluates an early epoch
    assert crit.weight is None


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_takes_the_weighting_options(name):
    z, y, f = batch()
    kwargs = dict(drw_epoch=2)
    if name in ("fbl", "cb-fbl"):
        kwargs["total_epochs"] = 10
    crit = create_loss(name, COUNTS, **kwargs)
    crit.set_epoch(1)
    before = crit(z.float(), y, features=f.float())
    assert crit.weight is None
    crit.set_epoch(2)
    after = crit(z.float(), y, features=f.float())
    assert crit.weight is not None and not torch.allclose(before, after)
    if not name.startswith("cb-"):
        inverse = create_loss(name, COUNTS, weighting="inverse-frequency", **({"total_epochs": 10} if "fbl" in name else {}))
        torch.testing.assert_close(inverse.weight.double(), as64(inverse_frequency_longhand(COUNTS)), rtol=1e-6, atol=0)


def test_weight_follows_module_conversion():
    crit = CrossEntropyLoss(COUNTS, weighting="effective-number", drw_epoch=1).to(torch.float64)
    crit.set_epoch(1)
    assert crit.weight.dtype == torch.float64 and crit.class_counts.dtype == torch.float64


def test_state_dict_round_trip_keeps_the_weight_and_drw_state_is_the_epoch():
    source = CrossEntropyLoss(COUNTS, weighting="effective-number", drw_epoch=4)
    target = CrossEntropyLoss(COUNTS, weighting="effective-number", drw_epoch=4)
    target.load_state_dict(source.state_dict())
    assert set(source.state_dict()) == {"class_counts", "class_weight"}
    target.set_epoch(4)
    torch.testing.assert_close(target.weight, source.class_weight)


def test_weight_setter_validates():
    crit = CrossEntropyLoss(COUNTS)
    crit.weight = EXPLICIT_WEIGHT
    assert crit.weight.tolist() == EXPLICIT_WEIGHT
    with pytest.raises(ConfigError, match="Expected 5 per-class weights but got 2"):
        crit.weight = [1.0, 2.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weighting="class-balanced"), r"Expected weighting in \('none', 'effective-number', 'inverse-frequency'\)"),
        (dict(weighting="effective-number", beta=1.0), r"Expected beta in the open interval \(0, 1\) but got 1.0"),
        (dict(beta=0), r"Expected beta in the open interval \(0, 1\) but got 0"),
        (dict(drw_epoch=-1), r"Expected drw_epoch to be a 0-based epoch \(an integer >= 0\) but got -1"),
        (dict(drw_epoch=2.5), r"Expected drw_epoch to be a 0-based epoch \(an integer >= 0\) but got 2.5"),
        (dict(drw_epoch=True), r"Expected drw_epoch to be a 0-based epoch"),
        (dict(weight=EXPLICIT_WEIGHT, weighting="inverse-frequency"), "Expected either an explicit weight or weighting='inverse-frequency'"),
        (dict(weight=[1.0, -1.0, 1.0, 1.0, 1.0]), "Expected finite, non-negative per-class weights"),
        (dict(weight=[1.0, 1.0]), "Expected 5 per-class weights but got 2"),
        (dict(reduction="batchmean"), r"Expected reduction in \('mean', 'sum', 'none'\) but got 'batchmean'"),
    ],
)
def test_bad_weighting_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CrossEntropyLoss(COUNTS, **kwargs)


def test_set_epoch_checks_its_argument():
    with pytest.raises(ConfigError, match="Expected epoch to be a 0-based epoch"):
        CrossEntropyLoss(COUNTS).set_epoch(-3)


def test_subclasses_keep_the_base_epoch_bookkeeping():
    crit = FeatureBalancedLoss(COUNTS, total_epochs=20, drw_epoch=5)
    crit.set_epoch(5)
    assert crit.epoch == 5 and crit.weight is not None and crit.alpha == pytest.approx((5 / 10) ** 2)
    assert isinstance(crit, LongTailLoss)


def test_repr_names_the_weighting():
    text = repr(CrossEntropyLoss(COUNTS, drw_epoch=160))
    assert "weighting='effective-number'" in text and "drw_epoch=160" in text
    assert "weight=explicit" in repr(CrossEntropyLoss(COUNTS, weight=EXPLICIT_WEIGHT))
