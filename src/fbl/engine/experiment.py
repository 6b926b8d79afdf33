"""Building what a run is made of, each from its own config section.

* :func:`build_data` — the dataset (``cfg.data``);
* :func:`build_model` — the network (``cfg.model``) with the weights it starts from: ImageNet weights
  for a stage-1 training that asks for them, the stage-1 run's weights for cRT, none for evaluation
  (the checkpoint's weights are loaded afterwards);
* :func:`build_criterion` — the loss (``cfg.loss``) for the run's length;
* :func:`build_experiment` — all of these plus the train rule, on this process's device, for training.

``fbl eval`` and ``analysis/fidelity.py`` need only the data and the model; nothing here starts a
process group (that is :func:`fbl.engine.distributed.distributed_session`'s job).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from fbl.config import DataConfig, TrainConfig, config_from_dict, loss_settings
from fbl.data import LongTailDataset, build_dataset
from fbl.engine.checkpoint import load_checkpoint, resolve_checkpoint_path
from fbl.engine.device import resolve_device
from fbl.engine.distributed import Distributed
from fbl.engine.trained_on import check_trained_on, recorded_data, recorded_summary
from fbl.errors import ConfigError
from fbl.losses import alpha_at, build_loss, loss_parameters, loss_weighting
from fbl.losses.base import LongTailLoss
from fbl.models import ClassifierRetraining, create_model
from fbl.models.expert_router import RoutedExperts
from fbl.models.torchvision_resnet import require_pretrained_source
from fbl.train_rules import ResolvedRule, resolve_train_rule

logger = logging.getLogger(__name__)

#: Above this the stimulus outgrows the paper's curve (which ends at 1.097) enough to hurt head classes.
ALPHA_WARNING = 1.2


@dataclass
class Experiment:
    """Everything a training run is built from."""

    cfg: TrainConfig
    data: LongTailDataset
    model: torch.nn.Module
    criterion: LongTailLoss
    rule: ResolvedRule
    dist: Distributed

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def train_loader(self):
        # With --accum-steps K the loader yields micro-batches of B/K; K of them are one global batch.
        optim = self.cfg.optim
        return self.data.train_loader(
            optim.batch_size // optim.accum_steps, device=self.device, seed=optim.seed,
            sampler=self.rule.sampler, rank=self.dist.rank, world_size=self.dist.world_size,
        )  # fmt: skip

    def eval_loader(self, split: str = "test"):
        return eval_loader(self.data, split, self.cfg.optim.batch_size, self.dist)


def eval_loader(data: LongTailDataset, split: str, batch_size: int, dist: Distributed):
    """Batches of ``split`` for evaluation: at least 256 images a batch (no gradients to hold)."""
    return data.eval_loader(split, max(batch_size, 256), device=dist.device, rank=dist.rank, world_size=dist.world_size)


def build_data(data: DataConfig) -> LongTailDataset:
    """The dataset ``data.dataset`` names, built from the data section (each builder takes the options it uses)."""
    options = dataclasses.asdict(data)
    return build_dataset(options.pop("dataset"), **options)


def build_model(cfg: TrainConfig, data: LongTailDataset, *, weights: str = "none") -> torch.nn.Module:
    """The network of ``cfg`` for ``data``, on the CPU.

    Args:
        weights: where its starting weights come from — ``"train"``: what a training run starts from
            (ImageNet weights where asked for and required; for cRT the stage-1 run's weights, then a
            fresh classifier on the frozen backbone); ``"none"``: random weights, to be overwritten by
            a checkpoint (``fbl eval``, resuming).
    """
    model_cfg = cfg.model
    stage1 = weights == "train" and not model_cfg.stage2_from
    if stage1:
        require_pretrained_source(model_cfg.arch, model_cfg.pretrained, model_cfg.pretrained_weights)
    torch.manual_seed(cfg.optim.seed)
    kwargs = {} if model_cfg.num_experts is None else {"num_experts": model_cfg.num_experts}
    if stage1 and model_cfg.pretrained_weights:  # a weights file wins over the torch cache
        kwargs["pretrained_weights"] = model_cfg.pretrained_weights
    elif stage1 and model_cfg.pretrained:
        kwargs["pretrained"] = True
    model = create_model(model_cfg.arch, num_classes=data.num_classes, classifier=model_cfg.classifier, **kwargs)
    _check_model_fits_data(model, data, model_cfg.arch)
    if model_cfg.stage2_from:
        stage1 = load_checkpoint(model_cfg.stage2_from) if weights == "train" else None
        if stage1 is not None:
            _load_stage1_weights(model, stage1["model"], model_cfg.stage2_from)
        if model_cfg.decoupled == "router":
            # The experts' logits as trained (RIDE's s); a rebuilt model gets it back from its checkpoint.
            scale = 1.0 if stage1 is None else _stage1_logit_scale(stage1["config"], data, model_cfg.stage2_from)
            return RoutedExperts(model, logit_scale=scale)
        model = ClassifierRetraining(model, data.num_classes, method=model_cfg.decoupled)
    return model


def build_criterion(cfg: TrainConfig, class_counts) -> LongTailLoss:
    """The loss of ``cfg.loss`` for a run of ``cfg.optim.epochs`` epochs (unweighted: the train rule weights it)."""
    _warn_if_alpha_overshoots(cfg)
    return build_loss(cfg.loss.loss, class_counts, options=cfg.loss.loss_options, settings=loss_settings(cfg))


def build_experiment(
    cfg: TrainConfig, dist: Distributed | None = None, data: LongTailDataset | None = None
) -> Experiment:
    """Data, model (with its starting weights), loss and train rule of a training run on ``dist.device``
    (default: one process on ``cfg.run.device``)."""
    dist = Distributed(device=resolve_device(cfg.run.device)) if dist is None else dist
    data = build_data(cfg.data) if data is None else data
    loss = cfg.loss
    rule = resolve_train_rule(
        loss.train_rule, data.class_counts, data.train_targets, total_epochs=cfg.optim.epochs, seed=cfg.optim.seed,
        beta=loss.beta, drw_epoch=loss.drw_epoch, samples_per_class=loss.samples_per_class,
        loss_weighting=loss_weighting(loss.loss),
    )  # fmt: skip
    model = build_model(cfg, data, weights="train").to(dist.device)
    if cfg.run.sync_bn and dist.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = build_criterion(cfg, data.class_counts).to(dist.device)
    return Experiment(cfg, data, model, criterion, rule, dist)


def _warn_if_alpha_overshoots(cfg: TrainConfig) -> None:
    if "schedule" not in loss_parameters(cfg.loss.loss):
        return
    epochs = cfg.optim.epochs
    peak = max(alpha_at(cfg.loss.alpha_schedule, epoch, epochs) for epoch in range(epochs))
    if peak > ALPHA_WARNING:
        logger.warning(
            "the %s curriculum takes alpha to %.2f in this %d-epoch run (the paper's ends at 1.10); "
            "the default 'parabolic' scales the paper's curve to the run length",
            cfg.loss.alpha_schedule, peak, epochs,
        )  # fmt: skip


def _check_model_fits_data(model: torch.nn.Module, data: LongTailDataset, arch: str) -> None:
    """One tiny forward pass on CPU, so an architecture that cannot take these images is a user
    error before training instead of a traceback in the first batch."""
    probe = torch.zeros((2, *data.input_shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError:
        shape = "x".join(str(n) for n in data.input_shape)
        raise ConfigError(
            f"Model {arch!r} cannot take the {shape} images of {data.name}; pick another --arch"
        ) from None
    finally:
        model.train(was_training)


def _stage1_logit_scale(config: dict, data: LongTailDataset, source: str) -> float:
    stage1 = config_from_dict(config, f"the config in {source}")
    return build_criterion(stage1, data.class_counts).logit_scale


def _load_stage1_weights(model: torch.nn.Module, weights: dict, source: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise ConfigError(f"The weights in {source} do not fit this model; --stage2-from needs a stage-1 run") from None


@dataclass
class Trained:
    """A trained model rebuilt from a checkpoint, with what evaluating it needs."""

    cfg: TrainConfig
    data: LongTailDataset
    model: torch.nn.Module
    logit_scale: float
    dist: Distributed
    summary: dict | None = None  # the run's summary.json, when the checkpoint sits in a finished run's folder

    def eval_loader(self, split: str):
        return eval_loader(self.data, split, self.cfg.optim.batch_size, self.dist)


def load_trained(checkpoint: str, *, device: torch.device, data_dir: str | None = None) -> Trained:
    """The model saved in ``checkpoint`` (its weights, nothing downloaded) and the data it was trained on.

    ``data_dir`` replaces the recorded data folder (the run may have been trained elsewhere). Data that
    is not what the run was trained on (other classes or class order, other training counts: the run's
    ``summary.json`` records them) is a one-line ConfigError naming the first difference.
    """
    path = resolve_checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], f"the config in {checkpoint}")
    if data_dir:
        cfg = cfg.replace(data_dir=data_dir)
    data = build_data(cfg.data)
    summary = recorded_summary(path)
    record = recorded_data(summary)
    if record is not None:
        check_trained_on(data, record, f"the run of {checkpoint}")
    model = build_model(cfg, data, weights="none")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:  # an unfinished run has no record: the weights' shapes are the check left
        raise ConfigError(
            f"the weights in {path} do not fit a {cfg.model.arch} for the {data.num_classes} classes of the "
            f"{data.name} data here; is the data folder the one the run was trained on?"
        ) from None
    logit_scale = build_criterion(cfg, data.class_counts).logit_scale  # LDAM's s: probabilities as trained
    return Trained(cfg, data, model.to(device), logit_scale, Distributed(device=device), summary)
