"""Each expert of a multi-expert model evaluated on its own: accuracy (many/medium/few) and feature norms.

The ensemble's own metrics come from :func:`fbl.engine.evaluate.evaluate` like every model's (its
``forward`` returns the aggregate); this adds one line per expert, from the same kind of forward pass
(:func:`~fbl.engine.evaluate.forward_expert_batches`), with the sums all-reduced when distributed so
that every number equals a single-process evaluation.
"""

from __future__ import annotations

from itertools import islice

import torch

from fbl.balanced_estimate import ESTIMATE_KEYS
from fbl.balanced_estimate import balanced_estimate as balanced_estimate_from
from fbl.data.shot_groups import shot_groups
from fbl.engine.distributed import Distributed
from fbl.engine.evaluate import forward_expert_batches
from fbl.engine.execution import Execution
from fbl.engine.progress import Progress, no_progress
from fbl.metrics import ClassMetrics
from fbl.models.classifier_retraining import ClassifierRetraining
from fbl.models.expert_router import experts_used
from fbl.models.multi_expert_resnet import MultiExpertResNet

#: What each expert's entry keeps of :meth:`~fbl.metrics.ClassMetrics.compute` (besides the group norms).
EXPERT_KEYS = ("top1", "many", "medium", "few", "worst", "per_class_acc", "per_class_feature_norm")


def multi_expert_model(model: torch.nn.Module) -> MultiExpertResNet | None:
    """The multi-expert model ``model`` calls (through DDP or compile wrappers), or ``None`` — also for a
    cRT stage 2 on a multi-expert backbone, whose forward returns the retrained classifier's logits only."""
    for module in model.modules():
        if isinstance(module, (MultiExpertResNet, ClassifierRetraining)):
            return module if isinstance(module, MultiExpertResNet) else None
    return None


@torch.inference_mode()
def evaluate_experts(
    model: torch.nn.Module,
    loader,
    class_counts: list[int],
    *,
    execution: Execution | None = None,
    dist: Distributed | None = None,
    limit_batches: int | None = None,
    logit_scale: float = 1.0,
    balanced_estimate: bool = False,
    progress: Progress = no_progress,
) -> list[dict] | None:
    """One dict per expert (``expert``, ``top1``, ``many``/``medium``/``few``, ``worst``, per-class accuracy and
    feature norm, and ``feature_norm``: the mean of the per-class norms in each shot group; with RIDE's router,
    ``routed_share``: the share of images sent on to the expert); ``None`` for a single model. Accuracies in
    percent, logits times ``logit_scale`` as in :func:`~fbl.engine.evaluate.evaluate`. With ``balanced_estimate``
    (a split of unequal class sizes such as the lossless estimate), each entry also holds ``estimate``: the
    balanced top-1 and many/medium/few with their standard errors (:func:`fbl.balanced_estimate.balanced_estimate`).
    """
    experts_model = multi_expert_model(model)
    if experts_model is None:
        return None
    model.eval()
    execution = execution or Execution(next(model.parameters()).device)
    metrics = [ClassMetrics(len(class_counts), class_counts=class_counts) for _ in range(experts_model.num_experts)]
    total = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    batches = progress(islice(loader, total), total=total, desc="experts", leave=False)
    # Routed (RIDE's router): how many images reach each expert, and how many were seen.
    reached = torch.zeros(experts_model.num_experts + 1, dtype=torch.float64, device=execution.device)
    routed = False
    for target, experts in forward_expert_batches(model, batches, execution, logit_scale):
        for k, expert_metrics in enumerate(metrics):
            expert_metrics.update(experts.logits[:, k], target, experts.features[:, k])
        if getattr(experts, "router_logits", None) is not None:
            routed = True
            used = experts_used(experts.router_logits)
            reached[:-1] += (used[:, None] > torch.arange(len(metrics), device=used.device)).sum(0)
            reached[-1] += len(target)
    if dist is not None and dist.enabled:
        for expert_metrics in metrics:
            expert_metrics.load_state_tensor(dist.all_reduce_sum(expert_metrics.state_tensor()))
        reached = dist.all_reduce_sum(reached)
    entries = [_expert_entry(k, m.compute(class_counts), class_counts) for k, m in enumerate(metrics)]
    if balanced_estimate:
        for entry, expert_metrics in zip(entries, metrics, strict=True):
            sizes = [int(n) for n in expert_metrics.samples.tolist()]
            estimate = balanced_estimate_from(entry["per_class_acc"], sizes, class_counts)
            entry["estimate"] = {key: estimate[key] for key in ESTIMATE_KEYS}
    if routed:  # the share of images the router sends on to each expert (the first sees them all)
        for k, entry in enumerate(entries):
            entry["routed_share"] = float(reached[k] / reached[-1]) if reached[-1] else None
    return entries


def _expert_entry(k: int, computed: dict, class_counts: list[int]) -> dict:
    norms = computed["per_class_feature_norm"]
    feature_norm = {}
    for group, classes in shot_groups(class_counts).items():
        values = [norms[c] for c in classes if norms[c] is not None]
        feature_norm[group] = sum(values) / len(values) if values else None
    return {"expert": k, **{key: computed[key] for key in EXPERT_KEYS}, "feature_norm": feature_norm}
