from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import torch

from fbl.engine.distributed import Distributed, find_ddp, gradient_sync
from fbl.engine.execution import Execution
from fbl.engine.progress import Progress, no_progress
from fbl.errors import TrainingDiverged
from fbl.mixup import mixup_batch, mixup_loss


class StoppedMidEpoch(Exception):
    """A stop was asked for; ``partial`` is what a resumed epoch needs to finish exactly (step and sums)."""

    def __init__(self, partial: dict):
        super().__init__(f"stopped after step {partial['step']}")
        self.partial = partial


def _nonfinite_anywhere(loss: torch.Tensor, dist: Distributed | None) -> bool:
    """Whether ``loss`` is NaN or infinite on this rank or any other.

    Every rank must skip together: a rank that ran backward alone would wait in DDP's all-reduce
    for ranks that never join it.
    """
    bad = not bool(torch.isfinite(loss))
    return dist.any(bad) if dist is not None and dist.enabled else bad


def train_one_epoch(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int,
    execution: Execution | None = None,
    dist: Distributed | None = None,
    limit_batches: int | None = None,
    accum_steps: int = 1,
    stop_requested: Callable[[], bool] | None = None,
    skip_nonfinite: bool = False,
    resume_from: dict | None = None,
    mixup_alpha: float | None = None,
    generator: torch.Generator | None = None,
    progress: Progress = no_progress,
) -> dict:
    """One pass over ``loader``. The model returns features too, so every loss sees what it may need.

    The forward pass runs under ``execution``'s autocast; the loss is computed in float32 from the
    logits and features cast up. Returns the sample-weighted mean loss, the top-1 training accuracy
    (percent; with mixup, the ``lam``-weighted accuracy against both targets), the images seen and
    the seconds taken.

    When ``stop_requested()`` turns true, the epoch stops after the current optimizer step and
    raises :class:`StoppedMidEpoch`; passing its ``partial`` back as ``resume_from`` replays the
    epoch's random draws up to that step and finishes it exactly as if it had not stopped.

    Under DDP with ``accum_steps`` K, the first K - 1 micro-batches of a step run under DDP's
    ``no_sync``: gradients are all-reduced once per optimizer step, not once per micro-batch.
    """
    execution = execution or Execution(next(model.parameters()).device)
    scaler = execution.grad_scaler()
    model.train()
    # With accumulation the loader yields micro-batches; ``limit_batches`` counts optimizer steps.
    total_batches = len(loader) if limit_batches is None else min(len(loader), limit_batches * accum_steps)
    done = 0 if resume_from is None else int(resume_from["step"])
    sums = _EpochSums.starting(resume_from, execution.device)
    batches = progress(islice(loader, total_batches), total=total_batches, desc=f"train {epoch}", leave=False)
    optimizer.zero_grad(set_to_none=True)
    ddp = find_ddp(model)
    for index, (images, target) in enumerate(batches):
        images, target = execution.prepare_batch(images, target)
        mixed = mixup_batch(images, target, mixup_alpha, generator) if mixup_alpha else None
        if index < done:  # trained before the stop: its draws are replayed above, its step is not
            continue
        ends_step = (index + 1) % accum_steps == 0 or index + 1 == total_batches
        # DDP reads its sync flag in forward and all-reduces in backward: both run inside the context.
        with gradient_sync(ddp, sync=ends_step):
            logits, loss = _forward(model, criterion, execution, images if mixed is None else mixed[0], target, mixed)
            if skip_nonfinite and _nonfinite_anywhere(loss, dist):  # --nan-policy skip: one host sync per step
                sums.skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            sums.first_bad = torch.where((sums.first_bad < 0) & ~torch.isfinite(loss.detach()), index, sums.first_bad)
            # K micro-batches of B/K make one step on the global batch B: each contributes 1/K of the mean.
            scaled = loss / accum_steps if accum_steps > 1 else loss
            (scaled if scaler is None else scaler.scale(scaled)).backward()
        if ends_step:
            _optimizer_step(optimizer, scaler)
        sums.add(loss, logits, target, mixed)
        at_step_boundary = (index + 1) % accum_steps == 0 and index + 1 < total_batches
        if at_step_boundary and stop_requested is not None and stop_requested():
            raise StoppedMidEpoch(sums.partial(index + 1, dist))
        if hasattr(batches, "set_postfix") and sums.seen:
            batches.set_postfix(img_s=f"{sums.seen / (time.perf_counter() - sums.started):.0f}", refresh=False)
    return sums.result(epoch, dist)


def _forward(model, criterion, execution: Execution, images, target, mixed) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and the loss of one micro-batch; with mixup, against both targets. A loss that
    ``needs_experts`` (an ensemble's) also gets every expert's outputs of the same forward pass."""
    needs_experts = getattr(criterion, "needs_experts", False)
    with execution.autocast():
        outputs = model(images, return_features=True, **({"return_experts": True} if needs_experts else {}))
    logits, features = outputs[0].float(), outputs[1].float()
    loss_of = criterion
    if needs_experts:
        experts = outputs[2].float()

        def loss_of(z, y, *, features=None):
            return criterion(z, y, features=features, experts=experts)

    if mixed is not None:
        _, target_a, target_b, lam = mixed
        return logits, mixup_loss(loss_of, logits, target_a, target_b, lam, features=features)
    return logits, loss_of(logits, target, features=features)


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler) -> None:
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)


@dataclass
class _EpochSums:
    """The epoch's loss, hits and images so far. Sums stay on the device: reading them every batch
    would wait for the accelerator each step. ``first_bad``: the first step with a non-finite loss."""

    loss_sum: object
    correct: object
    seen: int
    skipped: int
    started: float
    first_bad: torch.Tensor

    @classmethod
    def starting(cls, resume_from: dict | None, device) -> _EpochSums:
        first_bad = torch.full((), -1, device=device)
        if resume_from is None:
            return cls(0.0, 0.0, 0, 0, time.perf_counter(), first_bad)
        return cls(
            resume_from["loss_sum"], resume_from["correct"], int(resume_from["seen"]), int(resume_from["skipped"]),
            time.perf_counter() - resume_from["seconds"], first_bad,
        )  # fmt: skip

    @torch.no_grad()
    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, mixed) -> None:
        predicted = logits.argmax(dim=1)
        if mixed is not None:
            _, target_a, target_b, lam = mixed
            hits = lam * (predicted == target_a).sum() + (1 - lam) * (predicted == target_b).sum()
        else:
            hits = (predicted == target).sum()
        self.loss_sum = self.loss_sum + loss.detach().double() * target.shape[0]
        self.correct = self.correct + hits
        self.seen += target.shape[0]

    def partial(self, step: int, dist: Distributed | None) -> dict:
        """What a resumed epoch needs, summed over ranks (rank 0 carries the sums on resume)."""
        totals = torch.tensor([float(self.loss_sum), float(self.correct), float(self.seen)], dtype=torch.float64)
        if dist is not None and dist.enabled:
            dist.all_reduce_sum(totals)
        return {
            "step": step, "loss_sum": float(totals[0]), "correct": float(totals[1]), "seen": int(totals[2]),
            "seconds": time.perf_counter() - self.started, "skipped": self.skipped,
        }  # fmt: skip

    def result(self, epoch: int, dist: Distributed | None) -> dict:
        """The epoch's mean loss and accuracy over every rank's share; a non-finite mean ends the run."""
        loss_sum, correct, seen = self.loss_sum, self.correct, self.seen
        if dist is not None and dist.enabled:
            totals = dist.all_reduce_sum(torch.stack([torch.as_tensor(v, dtype=torch.float64).cpu()
                                                      for v in (loss_sum, correct, seen)]))  # fmt: skip
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        seconds = time.perf_counter() - self.started
        if seen == 0:
            return {"loss": float("nan"), "acc": float("nan"), "images": 0, "seconds": seconds,
                    "skipped_steps": self.skipped}  # fmt: skip
        mean_loss = float(loss_sum) / seen
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1} at step {int(self.first_bad) + 1}: the loss is {mean_loss}; "
                "the last checkpoint holds the epoch before. Try a lower --lr or --lambda_, or --nan-policy skip"
            )
        return {"loss": mean_loss, "acc": 100.0 * float(correct) / seen, "images": seen, "seconds": seconds,
                "skipped_steps": self.skipped}  # fmt: skip
