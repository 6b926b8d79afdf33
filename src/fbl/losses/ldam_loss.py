from __future__ import annotations

import torch

from fbl.losses import functional
from fbl.losses._validation import Counts, check_inputs, check_positive
from fbl.losses.base import LongTailLoss
from fbl.losses.registry import register_loss


@register_loss("ldam")
class LDAMLoss(LongTailLoss):
    r"""Label-distribution-aware margin loss (Cao et al., NeurIPS 2019). Ignores ``features``.

    .. math::
        \ell_i = \mathrm{CE}\big(s\,(z_i - m_{y_i} e_{y_i}),\ y_i\big),\quad
        m_j = \frac{C}{n_j^{1/4}},\ C \text{ such that } \max_j m_j = m_{max}

    The margin is taken from the target logit only; all logits are then scaled by ``s``, which the
    paper needs because its classifier works on normalised features and weights (cosine logits).
    LDAM-DRW is this loss under ``--train-rule drw``: effective-number weights (``beta`` 0.9999)
    assigned to ``loss.weight`` from epoch 160 of 200.

    Args:
        class_counts: training samples per class.
        max_m: the largest margin (that of the smallest class), > 0.
        s: logit scale, > 0.
        weight, reduction: see :class:`~fbl.losses.base.LongTailLoss`.
    """

    # LDAM's scale s and margins assume cosine logits in [-1, 1]; the trainer builds that head for it.
    preferred_classifier = "normed"

    def __init__(
        self,
        class_counts: Counts,
        max_m: float = 0.5,
        s: float = 30.0,
        weight=None,
        reduction: str = "mean",
    ):
        super().__init__(class_counts, weight, reduction)
        self.max_m = check_positive(max_m, "max_m", " (largest margin)")
        self.s = check_positive(s, "s", " (logit scale)")
        self.logit_scale = self.s

    @property
    def margins(self) -> torch.Tensor:
        """Per-class margins :math:`m_j` (float32, on the module's device)."""
        return functional.ldam_margins(self.class_counts, self.max_m)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, *, features=None) -> torch.Tensor:
        check_inputs(logits, target, self.num_classes)
        return functional._ldam_loss(logits, target, self.class_counts, self.max_m, self.s, self.weight, self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_m={self.max_m}, s={self.s}"
