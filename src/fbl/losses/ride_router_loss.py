from __future__ import annotations

import torch
import torch.nn.functional as F

from fbl.losses._validation import Counts, check_positive
from fbl.losses.ensemble_loss import EnsembleLoss
from fbl.losses.registry import register_loss


@register_loss("ride-router")
class RIDERouterLoss(EnsembleLoss):
    r"""The loss of RIDE's expert-assignment routers (Wang et al., ICLR 2021), on frozen experts.

    With :math:`c_j` whether the mean logits of the first :math:`j` experts predict the label, router
    :math:`i` (after expert :math:`i`) should say "go on" exactly when that helps: its target is

    .. math:: t_i = \neg c_i \wedge (c_{i+1} \vee \dots \vee c_K)

    and the loss is the mean over the :math:`K - 1` routers of the binary cross-entropy of
    :math:`\sigma(r_i)` against :math:`t_i` with the positive class weighted by ``pos_weight``
    (RIDE's 100: continuing wrongly costs compute, stopping wrongly costs accuracy). With a class weight
    :math:`w` (a train rule's), each image counts :math:`w_y` in a weighted mean. The model is a
    :class:`~fbl.models.expert_router.RoutedExperts` (``--decoupled router``), whose outputs carry the
    routers' logits.

    Args:
        class_counts: training samples per class.
        pos_weight: weight of the "go on" targets (100).
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    def __init__(self, class_counts: Counts, pos_weight: float = 100.0, weight=None, reduction: str = "mean"):
        super().__init__(class_counts, weight, reduction)
        self.pos_weight = check_positive(pos_weight, "pos_weight", " (weight of the go-on targets)")

    def expert_loss(self, experts, target: torch.Tensor) -> torch.Tensor:
        router_logits = getattr(experts, "router_logits", None)
        if router_logits is None:
            raise ValueError("The ride-router loss trains RIDE's router: the model must be --decoupled router")
        k = experts.logits.shape[1]
        steps = torch.arange(1, k + 1, device=target.device, dtype=experts.logits.dtype).view(1, k, 1)
        correct = (experts.logits.cumsum(dim=1) / steps).argmax(dim=2) == target[:, None]  # (N, K)
        later = correct.flip(1).cummax(dim=1).values.flip(1)  # later[:, j]: some c_m with m >= j
        targets = (~correct[:, :-1] & later[:, 1:]).to(router_logits.dtype)
        pos_weight = router_logits.new_tensor(self.pos_weight)
        per_image = F.binary_cross_entropy_with_logits(
            router_logits, targets, pos_weight=pos_weight, reduction="none"
        ).mean(dim=1)
        if self.reduction == "none":
            return per_image if self.weight is None else per_image * self.weight[target]
        if self.weight is None:
            return per_image.mean() if self.reduction == "mean" else per_image.sum()
        weighted = per_image * self.weight[target]
        return weighted.sum() / self.weight[target].sum() if self.reduction == "mean" else weighted.sum()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pos_weight={self.pos_weight}"
