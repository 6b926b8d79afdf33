import pytest
import torch

from fbl.errors import ConfigError
from fbl.losses import (
    BalancedSoftmaxLoss,
    BalPoELoss,
    CrossEntropyLoss,
    FBLExpertsLoss,
    FeatureBalancedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    RIDELoss,
    RIDERouterLoss,
    SADELoss,
    create_loss,
    list_losses,
    loss_class,
    loss_weighting,
    register_loss,
    register_variant,
    resolve_loss_name,
)

from ._helpers import COUNTS, EXPLICIT_WEIGHT, batch

EXPECTED = {
    "balanced-softmax": BalancedSoftmaxLoss,
    "balpoe": BalPoELoss,
    "cb-ce": CrossEntropyLoss,
    "cb-fbl": FeatureBalancedLoss,
    "cb-focal": FocalLoss,
    "ce": CrossEntropyLoss,
    "fbl": FeatureBalancedLoss,
    "fbl-experts": FBLExpertsLoss,
    "focal": FocalLoss,
    "ldam": LDAMLoss,
    "logit-adjusted": LogitAdjustedLoss,
    "ride": RIDELoss,
    "ride-router": RIDERouterLoss,
    "sade": SADELoss,
}
# The ensemble losses read every expert's outputs: their contract is tested in test_ensemble_losses.py.
SINGLE_MODEL = sorted(name for name, cls in EXPECTED.items() if not cls.needs_experts)


def test_list_losses():
    assert list_losses() == sorted(EXPECTED)
    for name, cls in EXPECTED.items():
        assert loss_class(name) is cls


@pytest.mark.parametrize(
    "name, cls",
    [
        ("FeaBal", FeatureBalancedLoss),
        ("CE", CrossEntropyLoss),
        ("Focal", FocalLoss),
        ("LDAM", LDAMLoss),
        (" fbl ", FeatureBalancedLoss),
    ],
)
def test_seed_names_are_accepted(name, cls):
    assert type(create_loss(name, COUNTS)) is cls


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        create_loss("LDAM-DRWX", COUNTS)
    message = str(info.value)
    assert message.startswith("Unknown loss 'LDAM-DRWX'") and "; choose one of: " in message
    for name in EXPECTED:
        assert name in message
    assert "\n" not in message


def test_variants_fix_their_arguments():
    assert resolve_loss_name("CB_Focal") == "cb-focal"
    crit = create_loss("cb-focal", COUNTS, gamma=2.0)
    assert crit.weight is not None and crit.gamma == 2.0
    assert loss_weighting("cb-focal") == "effective-number" and loss_weighting("focal") is None


def test_duplicate_names_are_refused_and_leave_the_registry_unchanged():
    before = list_losses()

    class Dummy(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register_loss("brand-new-name", "CE")(Dummy)
    with pytest.raises(ValueError, match="registered twice"):
        register_variant("cb-ce", "effective-number")(CrossEntropyLoss)
    assert list_losses() == before
    with pytest.raises(ConfigError, match="Unknown loss 'brand-new-name'"):
        resolve_loss_name("brand-new-name")


def test_a_variant_decorates_a_registered_loss_with_a_known_weighting():
    class Unregistered(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="must decorate a registered loss"):
        register_variant("cb-unregistered", "effective-number")(Unregistered)

    class Subclass(FocalLoss):  # inherits registry_name "focal" but is not what "focal" builds
        pass

    with pytest.raises(ValueError, match="must decorate a registered loss"):
        register_variant("cb-subclass", "effective-number")(Subclass)
    with pytest.raises(ValueError, match="unknown weighting 'effective'"):
        register_variant("cb-typo", "effective")
    assert "cb-unregistered" not in list_losses() and "cb-subclass" not in list_losses()


def test_a_variant_weight_is_the_effective_number_weighting_of_the_counts():
    # w_j = (1 - beta) / (1 - beta^n_j), normalised to sum C, written out for COUNTS.
    raw = [(1 - 0.99) / (1 - 0.99**n) for n in COUNTS]
    want = torch.tensor([w / sum(raw) * len(raw) for w in raw], dtype=torch.float64)
    crit = create_loss("cb-ce", COUNTS, beta=0.99)
    torch.testing.assert_close(crit.weight.to(torch.float64), want, rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="weights classes by effective-number; give no weight"):
        create_loss("cb-ce", COUNTS, weight=torch.ones(len(COUNTS)))


def _build(name, **kwargs):
    if loss_class(name) is FeatureBalancedLoss:
        kwargs.setdefault("total_epochs", 10)
    return create_loss(name, COUNTS, **kwargs)


@pytest.mark.parametrize("name", SINGLE_MODEL)
def test_every_loss_follows_the_contract(name):
    z, y, f = batch()
    crit = _build(name)
    for epoch in (0, 3, 9):
        crit.set_epoch(epoch)
        out = crit(z.float(), y, features=f.float())
        assert out.shape == () and torch.isfinite(out)
    per_sample = _build(name, reduction="none")(z.float(), y, features=f.float())
    assert per_sample.shape == (len(y),)
    assert set(dict(crit.named_buffers())) >= {"class_counts"}
    assert not list(crit.parameters())


@pytest.mark.parametrize("name", SINGLE_MODEL)
def test_every_loss_converts_with_to_float64(name):
    z, y, f = batch()
    crit = _build(name, weight=None if name.startswith("cb-") else EXPLICIT_WEIGHT).to(torch.float64)
    assert all(b.dtype == torch.float64 for b in crit.buffers())
    out = crit(z, y, features=f)
    assert out.dtype == torch.float64
    reference = _build(name, weight=None if name.startswith("cb-") else EXPLICIT_WEIGHT)(
        z.float(), y, features=f.float()
    )
    torch.testing.assert_close(out.float(), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", SINGLE_MODEL)
def test_every_loss_runs_on_the_meta_device(name):
    z, y, f = batch()
    crit = _build(name, weight=None if name.startswith("cb-") else EXPLICIT_WEIGHT).to("meta")
    out = crit(z.to("meta"), y.to("meta"), features=f.to("meta"))
    assert out.device.type == "meta" and out.shape == ()


@pytest.mark.parametrize("name", SINGLE_MODEL)
def test_buffers_follow_half_precision_inputs(name):
    z, y, f = batch()
    out = _build(name)(z.to(torch.bfloat16), y, features=f.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)
