"""Evaluate a saved checkpoint on its test split (``fbl eval``), optionally with post-hoc corrections."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fbl.balanced_estimate import balanced_estimate_of, estimate_intervals
from fbl.engine.device import resolve_device
from fbl.engine.evaluate import evaluate_with_predictions
from fbl.engine.execution import Execution
from fbl.engine.experiment import Trained, load_trained
from fbl.engine.progress import Progress, no_progress
from fbl.engine.test_time_aggregation import aggregate_under_priors
from fbl.errors import ConfigError
from fbl.label_shift import subsampled_accuracies
from fbl.models import ForwardWithFeatures
from fbl.posthoc import logit_adjust, tau_normalized_classifier
from fbl.predictions import Predictions, keep_in_run
from fbl.statistics import bootstrap_intervals

#: ``fbl eval --precision``'s default: run the model as the run did.
AS_TRAINED = "as-trained"


def evaluation_execution(trained: Trained, precision: str = AS_TRAINED) -> Execution:
    """How ``fbl eval`` runs the model.

    ``as-trained``: the precision, memory format and compile mode the run's summary records it ran with, so
    the recorded metrics come out again exactly (a bf16 run's predictions differ from fp32's in a few images);
    fp32 eager for a checkpoint without that record (an unfinished run, a bare file). Any other value: that
    precision, eager, in the default memory format (``fp32``: the full-precision reference).
    """
    device = trained.dist.device
    if precision != AS_TRAINED:
        return Execution.resolve(device, precision, channels_last=False, compile=False)
    ran = (trained.summary or {}).get("provenance") or {}
    if "precision" not in ran:
        return Execution(device)
    return Execution.resolve(device, ran["precision"], bool(ran.get("channels_last")), ran.get("compile") == "compiled")


class _ReplacedHead(ForwardWithFeatures, nn.Module):
    """The same backbone with another classifier (for tau-normalisation at evaluation time)."""

    def __init__(self, model: nn.Module, classifier: nn.Module):
        super().__init__()
        self.model, self.classifier = model, classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


def evaluate_checkpoint(checkpoint: str, **options) -> dict:
    """Metrics of ``checkpoint`` on one of its dataset's evaluation splits; the options are
    :func:`evaluate_checkpoint_with_predictions`'s."""
    metrics, _ = evaluate_checkpoint_with_predictions(checkpoint, **options)
    return metrics


def evaluate_checkpoint_with_predictions(
    checkpoint: str,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    limit_batches: int | None = None,
    logit_adjust_tau: float | None = None,
    tau_norm: float | None = None,
    split: str = "test",
    precision: str = AS_TRAINED,
    test_time_aggregation: bool = False,
    keep_predictions: bool = False,
    progress: Progress = no_progress,
) -> tuple[dict, Predictions]:
    """Metrics of ``checkpoint`` on one of its dataset's evaluation splits (default the test split), and the
    per-image predictions they were computed from (of the evaluated images only, under ``limit_batches``).

    Args:
        split: ``test``, ``val`` or another split the dataset offers (CIFAR-10 from ``../shared``:
            ``test_lossless``, the lossless 1,000-image subset); a split it lacks is a one-line error.
        logit_adjust_tau: post-hoc logit adjustment ``z - tau log pi`` (Menon et al., ICLR 2021).
        tau_norm: classifier rows rescaled to ``W_j / ||W_j||^p`` (Kang et al., ICLR 2020).
        precision: ``as-trained`` (see :func:`evaluation_execution`) or ``fp32``/``bf16``/``fp16``, eager.
        test_time_aggregation: a multi-expert run also gets SADE's test-agnostic protocol on ``split``
            (:func:`~fbl.engine.test_time_aggregation.aggregate_under_priors`, in the same precision, eager):
            ``test_time_aggregation`` maps each test prior to its learnt weights and accuracies.
        keep_predictions: ``checkpoint`` is a finished run folder: add the per-image predictions on ``split``
            to it (:func:`fbl.predictions.keep_in_run`; ``kept_predictions`` names the file), so paired
            comparisons can use a split training did not keep. Only the run's own model, as it ran.
    """
    if keep_predictions:
        _check_predictions_are_the_runs(checkpoint, logit_adjust_tau, tau_norm, precision, limit_batches)
    trained = load_trained(checkpoint, device=resolve_device(device), data_dir=data_dir)
    data = trained.data
    splits = (*data.eval_splits, *data.end_of_run_splits)
    if split not in splits:
        raise ConfigError(f"{data.name} has no {split!r} split here; it has: {', '.join(splits)}")
    model = trained.model
    if tau_norm is not None:
        model = _ReplacedHead(model, tau_normalized_classifier(model.get_classifier(), tau_norm))
    transform = None
    if logit_adjust_tau is not None:
        counts = data.class_counts
        transform = lambda logits: logit_adjust(logits, counts, logit_adjust_tau)  # noqa: E731
    execution = evaluation_execution(trained, precision)
    execution.configure_backends()
    model = execution.prepare_model(model)
    metrics, predictions = evaluate_with_predictions(
        model,
        trained.eval_loader(split),
        data.class_counts,
        execution=execution,
        limit_batches=limit_batches,
        logit_scale=trained.logit_scale,
        logit_transform=transform,
        progress=progress,
        image_ids=data.image_ids(split),
    )
    metrics["execution"] = execution.describe()
    if keep_predictions:
        path, written = keep_in_run(checkpoint, split, predictions)
        metrics["kept_predictions"] = {"path": str(path), "written": written}
    metrics = _with_split_extras(metrics, predictions, data, split)
    if test_time_aggregation:
        eager = Execution(execution.device, execution.precision)
        metrics["test_time_aggregation"] = aggregate_under_priors(trained, split, execution=eager, progress=progress)
    return metrics, predictions


def _check_predictions_are_the_runs(checkpoint: str, logit_adjust_tau, tau_norm, precision: str, limit_batches):
    """``--keep-predictions`` keeps what the run's model predicts as it ran, on the whole split, in its folder."""
    if not Path(checkpoint).is_dir() or not (Path(checkpoint) / "summary.json").is_file():
        raise ConfigError(f"--keep-predictions needs a finished run folder (with summary.json), not {checkpoint}")
    given = {
        "--logit-adjust": logit_adjust_tau is not None,
        "--tau-norm": tau_norm is not None,
        "--precision": precision != AS_TRAINED,
        "--limit-batches": limit_batches is not None,
    }
    changed = [flag for flag, is_given in given.items() if is_given]
    if changed:
        raise ConfigError(f"--keep-predictions keeps the run's own predictions; drop {', '.join(changed)}")


#: The bootstrap intervals that mean the same on a split of unequal class sizes: functions of per-class accuracy.
PER_CLASS_INTERVALS = ("worst", "hmean", "gmean")


def _with_split_extras(metrics: dict, predictions, data, split: str) -> dict:
    """95% bootstrap intervals; on a skewed end-of-run split the balanced estimate replaces what the image
    counts would weigh (top-1 and many/medium/few, with intervals ± 1.96 SE; no top-5, ECE or macro-F1),
    elsewhere accuracy on SADE's subsampled test set for each prior joins the exact one."""
    if split in data.end_of_run_splits:
        estimate = balanced_estimate_of(metrics, data.class_counts)
        per_class = bootstrap_intervals(predictions, data.class_counts, metrics=PER_CLASS_INTERVALS)
        intervals = {**per_class, **estimate_intervals(estimate), "macro_f1": None}
        return {**metrics, **estimate, "ci95": intervals, "top5": None, "ece": None, "macro_f1": None}
    metrics["ci95"] = bootstrap_intervals(predictions, data.class_counts)
    subsampled = subsampled_accuracies(predictions.label, predictions.prediction, data.class_counts)
    for name, accuracy in (subsampled or {}).items():
        metrics["test_priors"][name]["subsampled"] = accuracy
    return metrics
