"""RIDE's router: its decision against the formula written out longhand, routing against RIDE's sequential
procedure, and the wrapped experts frozen."""

import math

import pytest
import torch

from fbl.errors import ConfigError
from fbl.models import create_model
from fbl.models.expert_router import ExpertRouter, RoutedExperts, experts_used, routed_logits

G = torch.Generator().manual_seed(0)


def _longhand_router(router, logits, features):
    n, k, _ = logits.shape
    out = torch.zeros(n, k - 1, dtype=torch.float64)
    for s in range(n):
        for i in range(k - 1):
            mean = [sum(float(logits[s, e, c]) for e in range(i + 1)) / (i + 1) for c in range(logits.shape[2])]
            top = sorted(mean, reverse=True)[: router.top_k]
            f = features[s, i].tolist()
            norm = math.sqrt(sum(v * v for v in f))
            w, b = router.hidden[i].weight.detach(), router.hidden[i].bias.detach()
            seen = [max(0.0, sum(float(w[h, d]) * f[d] / norm for d in range(len(f))) + float(b[h])) for h in range(16)]
            inputs = top + seen
            dw, db = router.decide.weight.detach()[0], float(router.decide.bias.detach())
            out[s, i] = sum(float(dw[j]) * inputs[j] for j in range(len(inputs))) + db
    return out


@pytest.mark.parametrize("num_classes, top_k", [(7, 5), (4, 30)])
def test_router_is_the_formula_written_out(num_classes, top_k):
    torch.manual_seed(1)
    router = ExpertRouter(3, 6, num_classes, top_k=top_k).double()
    assert router.top_k == min(top_k, num_classes)
    logits = torch.randn(5, 3, num_classes, generator=G, dtype=torch.float64) * 30
    features = torch.rand(5, 3, 6, generator=G, dtype=torch.float64)
    torch.testing.assert_close(
        router(logits, features), _longhand_router(router, logits, features), rtol=1e-10, atol=1e-9
    )


def _rides_sequential_prediction(logits, router_logits):
    # RIDE's test-time loop: expert 1 always; after expert i, go on while sigmoid(r_i) > 0.5.
    out, used = logits[0].clone(), 1
    for i in range(1, logits.shape[0]):
        if not 1 / (1 + math.exp(-float(router_logits[i - 1]))) > 0.5:
            break
        out, used = out + logits[i], used + 1
    return out / used, used


def test_routing_follows_rides_sequential_procedure():
    logits = torch.randn(64, 4, 5, generator=G, dtype=torch.float64)
    router_logits = torch.randn(64, 3, generator=G, dtype=torch.float64)
    predicted, used = routed_logits(logits, router_logits), experts_used(router_logits)
    for s in range(64):
        expected, count = _rides_sequential_prediction(logits[s], router_logits[s])
        torch.testing.assert_close(predicted[s], expected, rtol=0, atol=1e-12)
        assert int(used[s]) == count
    assert set(used.tolist()) == {1, 2, 3, 4}  # every depth occurs


def test_routed_experts_freeze_the_experts_and_train_only_the_router():
    torch.manual_seed(2)
    experts = create_model("digits-experts", num_classes=10)
    routed = RoutedExperts(experts, logit_scale=30.0, top_k=30).train()
    trainable = {name for name, p in routed.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("router.") for name in trainable)
    assert not experts.training  # BatchNorm statistics stay the trained ones
    images = torch.randn(8, 1, 8, 8, generator=G)
    logits, features, outputs = routed(images, return_experts=True)
    with torch.no_grad():
        as_trained = experts(images, return_experts=True)[2].logits * 30.0
    torch.testing.assert_close(outputs.logits, as_trained)
    torch.testing.assert_close(logits, as_trained.mean(1))  # training: every expert's mean, as RIDE's
    routed.eval()
    torch.testing.assert_close(routed(images), routed_logits(as_trained, outputs.router_logits))


def test_a_router_needs_several_experts():
    with pytest.raises(ConfigError, match="multi-expert"):
        RoutedExperts(create_model("digits-cnn", num_classes=10))
    with pytest.raises(ConfigError, match="chooses between experts"):
        ExpertRouter(1, 4, 10)


def test_under_bf16_autocast_the_heads_and_router_run_in_float32():
    torch.manual_seed(3)
    experts = create_model("digits-experts", num_classes=10).eval()
    routed = RoutedExperts(experts, logit_scale=30.0, top_k=30).eval()
    images = torch.randn(8, 1, 8, 8, generator=G)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features, outputs = experts(images, return_experts=True)
        routed_out, _, routed_outputs = routed(images, return_experts=True)
    per_expert = outputs.features.float()
    with torch.no_grad():
        heads = experts.get_classifier()(per_expert)  # float32 outside autocast: the longhand
    for tensor in (logits, outputs.logits, routed_out, routed_outputs.logits, routed_outputs.router_logits):
        assert tensor.dtype == torch.float32
    torch.testing.assert_close(outputs.logits, heads, rtol=0, atol=0)
    torch.testing.assert_close(logits, heads.mean(1), rtol=1e-6, atol=1e-6)
