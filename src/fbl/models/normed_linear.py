"""Cosine classifier used with LDAM (Cao et al., NeurIPS 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormedLinear(nn.Module):
    r"""Logits are cosines between the feature and each class vector: :math:`z_j = \hat f^\top \hat w_j \in [-1, 1]`.

    LDAM's scale ``s = 30`` and margins up to 0.5 are set for logits in this range; on a plain
    linear head they would multiply unbounded logits by 30. There is no bias.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
