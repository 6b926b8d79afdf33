"""Run configuration: one dataclass, presets as YAML, resolved in a fixed order.

Resolution order (later wins): dataclass defaults -> preset YAML -> ``--config`` YAML -> flags.
A cRT stage 2 (``--stage2-from RUN``) starts from the stage-1 run's config plus
:data:`STAGE2_DEFAULTS` instead of a preset. The resolved config is saved as ``config.yaml`` in the
run folder and inside every checkpoint.

Options are checked against the registries (names) and the losses' signatures (option keys) before
any data is read; nothing is built here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fbl.checks import check_beta
from fbl.data import DATASETS
from fbl.errors import ConfigError
from fbl.losses import LOSSES, SCHEDULES, check_loss_options, loss_class, loss_weighting
from fbl.models import MODELS
from fbl.train_rules import TRAIN_RULES, get_train_rule

# Presets chosen automatically from --dataset when no --preset is given, so the seed's commands
# (`train.py --dataset cifar10 ...`) get the paper's hyper-parameters.
#: Numeric precisions of the forward pass (``auto``: bf16 where the device runs it natively).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

DATASET_PRESETS = {
    "cifar10": "cifar10-lt",
    "cifar100": "cifar100-lt",
    "digits-lt": "digits-lt",
    "imagenet": "imagenet-lt",
    "inat": "inat2018",
    "place365": "places-lt",
}

# Stage-2 (cRT, Kang et al., ICLR 2020) settings applied on top of the stage-1 config; any flag the
# user gives wins.
STAGE2_DEFAULTS = {
    "loss": "ce",
    "train_rule": "balanced-rs",
    "epochs": 10,
    "warmup_epochs": 0,
    "mixup": False,
    "drw_epoch": None,
    "loss_options": {},
}
# What a stage-2 run inherits from stage 1 (so the backbone sees the data it was trained on).
STAGE2_INHERITED = (
    "dataset",
    "data_dir",
    "img_path",
    "imb_type",
    "imb_factor",
    "rand_number",
    "arch",
    "classifier",
    "seed",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "lr_milestones",
    "lr_decay",
    "root_log",
)


@dataclass
class TrainConfig:
    # data
    dataset: str = "digits-lt"
    data_dir: str = "./data"
    img_path: str | None = None
    download: bool = False
    image_size: int = 224  # image-file datasets: crop side (RandomResizedCrop / CenterCrop)
    skip_bad_images: bool = False  # image-file datasets: drop (and count) unreadable images instead of stopping
    allow_outside_root: bool = False  # split lists may name files outside img_path (.. or absolute paths)
    imb_type: str = "exp"
    imb_factor: float = 0.01
    rand_number: int = 0
    val_split: str | int = "auto"  # none | auto (the dataset's default size) | N images per class
    # model
    arch: str = "digits-cnn"
    pretrained: bool = False
    pretrained_weights: str | None = None  # torchvision-format state dict on disk (resnet152_p)
    classifier: str = "auto"  # linear | normed | auto (the loss's preference: normed for LDAM)
    # loss and re-balancing
    loss: str = "ce"
    lambda_: float = 60.0
    alpha_schedule: str = "parabolic"
    loss_options: dict = field(default_factory=dict)
    train_rule: str | None = "none"
    samples_per_class: int = 4
    drw_epoch: int | None = None
    beta: float = 0.9999
    mixup: bool = False
    mixup_alpha: float = 1.0
    stage2_from: str | None = None
    # optimisation
    epochs: int = 200
    batch_size: int = 64
    accum_steps: int = 1  # gradient accumulation: K micro-batches of batch_size / K per optimizer step
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: int = 5
    lr_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])
    lr_decay: list[float] = field(default_factory=lambda: [0.01, 0.0001])
    seed: int = 123
    # running
    device: str = "auto"
    sync_bn: bool = False  # distributed on GPUs: BatchNorm statistics over the global batch
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: auto is bf16 where the device runs it natively
    channels_last: bool = True
    compile: bool | None = None  # None: compile when the run is long enough to repay it
    eval_every: int = 1
    nan_policy: str = "stop"  # stop: a non-finite loss ends the run (last good checkpoint kept); skip: skip the step
    limit_batches: int | None = None
    out: str | None = None
    overwrite: bool = False
    root_log: str = "runs"
    exp_str: str = ""
    print_freq: int = 10
    workers: int = 4
    resume: str | None = None
    start_epoch: int = 0
    quiet: bool = False
    preset: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELD_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}
#: The annotation of every field, evaluated (``int``, ``float``, ``str | None``, ``list[float]``, ...).
FIELD_TYPES = typing.get_type_hints(TrainConfig)
#: Keys a preset or config file may hold besides the fields (they describe it).
DESCRIPTIVE_KEYS = {"description", "paper"}
#: The paper's train.py names of some fields: suggested when a config file uses them.
SEED_NAMES = {"learning_rate": "lr", "loss_type": "loss", "data_path": "data_dir", "lambda": "lambda_"}


def _preset_dir():
    return resources.files("fbl") / "configs"


def list_presets() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def _fits(value: object, expected: object) -> bool:
    """Whether ``value`` is of the annotated type. YAML and JSON give no other conversions, so none
    are made: an int is a float, but a bool is neither (``epochs: yes``), and a string is no number."""
    if typing.get_origin(expected) in (types.UnionType, typing.Union):
        return any(_fits(value, option) for option in typing.get_args(expected))
    if typing.get_origin(expected) is list:
        (item,) = typing.get_args(expected)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, expected)  # int, bool, str, dict, list, NoneType


def _describe(expected: object) -> str:
    if typing.get_origin(expected) in (types.UnionType, typing.Union):
        return " or ".join(_describe(option) for option in typing.get_args(expected))
    if typing.get_origin(expected) is list:
        return f"a list of {_describe(*typing.get_args(expected)).split(' ', 1)[1]}s"
    names = {bool: "a boolean (true or false)", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(expected, {list: "a list", dict: "a mapping", type(None): "null"}.get(expected, str(expected)))


def check_field_type(name: str, value: object, source: str = "") -> None:
    """One :class:`ConfigError` line when ``value`` is not of the type ``TrainConfig.<name>`` is annotated with."""
    expected = FIELD_TYPES[name]
    if _fits(value, expected):
        return
    where = f" in {source}" if source else ""
    hint = ""
    if isinstance(value, str):
        try:
            if _fits(yaml.safe_load(value), expected):
                hint = " (write it without quotes)"
            elif _fits(float(value), expected):  # YAML reads 1e-3 as text: its floats need a dot
                hint = f" (YAML reads {value} as text; write {float(value)!r})"
        except (yaml.YAMLError, ValueError):
            pass
    raise ConfigError(f"Expected {name}{where} to be {_describe(expected)} but got {value!r}{hint}")


def _check_keys(values: dict, source: str) -> dict:
    """Every key names a field (else the closest field is suggested) and every value has its field's type."""
    unknown = sorted({str(key) for key in values} - FIELD_NAMES - DESCRIPTIVE_KEYS)
    if unknown:
        described = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(FIELD_NAMES | set(SEED_NAMES)), n=1)
            close = [SEED_NAMES.get(name, name) for name in close]
            described.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"Unknown config key(s) {', '.join(described)} in {source}")
    for key, value in values.items():
        if key in FIELD_NAMES:
            check_field_type(key, value, source)
    return values


def config_from_dict(values: dict, source: str) -> TrainConfig:
    """A :class:`TrainConfig` from a saved config (a checkpoint's), with the keys and types checked."""
    return TrainConfig(**{k: v for k, v in _check_keys(dict(values), source).items() if k in FIELD_NAMES})


def load_preset(name: str) -> dict:
    """The preset's values, including its ``description`` and ``paper`` (not config fields).

    A preset may name another in ``extends``: the method presets are the dataset preset plus the
    few values that define the method.
    """
    key = str(name).lower()
    if key not in list_presets():
        close = difflib.get_close_matches(key, list_presets(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"Unknown preset {name!r}{hint}; choose one of: {', '.join(list_presets())}")
    own = yaml.safe_load((_preset_dir() / f"{key}.yaml").read_text()) or {}
    parent = own.pop("extends", None)
    values = load_preset(parent) if parent else {}
    values.update(own)
    return _check_keys(values, f"preset {key}")


def load_yaml_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file {path} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"Config file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not a text (UTF-8) file; give a YAML file of option: value") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"Config file {path} is nested too deeply to be a config") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of option: value, not a {type(values).__name__}")
    return _check_keys(values, str(path))


def stage2_values(stage1_config: dict) -> dict:
    """Config values of a cRT stage 2 on top of a stage-1 run's resolved config."""
    values = {key: stage1_config[key] for key in STAGE2_INHERITED if key in stage1_config}
    values.update(STAGE2_DEFAULTS)
    return values


def resolve_config(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict | None = None,
    stage1_config: dict | None = None,
) -> TrainConfig:
    """Merge defaults, preset, YAML file and explicit overrides (in that order) into a TrainConfig.

    With ``stage1_config`` (the config of the run named by ``stage2_from``) the base is that run's
    data and model plus :data:`STAGE2_DEFAULTS`; no preset is chosen from ``--dataset`` then, so a
    redundant ``--dataset`` flag cannot change the stage-2 recipe.
    """
    overrides = dict(overrides or {})
    file_values = load_yaml_file(config_file) if config_file else {}
    dataset = overrides.get("dataset") or file_values.get("dataset")
    values: dict[str, Any] = {}
    if stage1_config is not None:
        values.update(stage2_values(stage1_config))
    else:
        preset = (
            preset or file_values.get("preset") or (DATASET_PRESETS.get(_dataset_key(dataset)) if dataset else None)
        )
        preset = preset or (None if dataset else "digits-lt")
    if preset:
        values.update({k: v for k, v in load_preset(preset).items() if k in FIELD_NAMES})
        values["preset"] = str(preset).lower()
    values.update({k: v for k, v in file_values.items() if k in FIELD_NAMES})
    values.update(overrides)
    cfg = validate(TrainConfig(**values))
    if stage1_config is not None and stage1_config.get("dataset") is not None:
        _check_stage2_dataset(cfg, stage1_config["dataset"])
    return cfg


def _check_stage2_dataset(cfg: TrainConfig, stage1_dataset) -> None:
    """A stage-2 run retrains the classifier on the data its backbone saw; another dataset is a mistake."""
    stage1_dataset = _dataset_key(stage1_dataset) or str(stage1_dataset)
    if cfg.dataset != stage1_dataset:
        raise ConfigError(
            f"--stage2-from {cfg.stage2_from} is a {stage1_dataset} run but the dataset asked for is {cfg.dataset}: "
            f"stage 2 retrains the classifier on the stage-1 dataset; drop --dataset "
            f"(or give --dataset {stage1_dataset})"
        )


def _dataset_key(name) -> str | None:
    try:
        return DATASETS.canonical(name)
    except ConfigError:
        return None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject values that make no sense before any work starts; normalise names."""
    for name, value in vars(cfg).items():
        check_field_type(name, value)
    cfg.loss = LOSSES.canonical(cfg.loss)
    cfg.arch = MODELS.canonical(cfg.arch)
    cfg.dataset = DATASETS.canonical(cfg.dataset)
    cfg.alpha_schedule = SCHEDULES.canonical(cfg.alpha_schedule)
    cfg.train_rule = TRAIN_RULES.canonical("none" if cfg.train_rule is None else cfg.train_rule)
    if cfg.classifier not in ("auto", "linear", "normed"):
        raise ConfigError(f"Unknown classifier {cfg.classifier!r}; choose one of: auto, linear, normed")
    if cfg.classifier == "auto":
        cfg.classifier = getattr(loss_class(cfg.loss), "preferred_classifier", "linear")
    for name in ("epochs", "batch_size", "eval_every", "image_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"Expected {name} to be a positive integer but got {getattr(cfg, name)!r}")
    if cfg.workers < 0:
        raise ConfigError(f"Expected workers >= 0 but got {cfg.workers}")
    # torch.manual_seed takes 64 bits (and the per-epoch seeds need seed >= 0); numpy's RandomState 32.
    if not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"Expected 0 <= seed < 2**63 but got {cfg.seed}")
    if not 0 <= cfg.rand_number < 2**32:
        raise ConfigError(f"Expected 0 <= rand_number < 2**32 (a numpy RandomState seed) but got {cfg.rand_number}")
    if cfg.limit_batches is not None and cfg.limit_batches < 1:
        raise ConfigError(f"Expected limit_batches >= 1 but got {cfg.limit_batches}")
    if not cfg.lr > 0:
        raise ConfigError(f"Expected a positive learning rate but got {cfg.lr}")
    if cfg.weight_decay < 0 or cfg.momentum < 0:
        raise ConfigError("Expected weight_decay >= 0 and momentum >= 0")
    if cfg.warmup_epochs < 0:
        raise ConfigError(f"Expected warmup_epochs >= 0 but got {cfg.warmup_epochs}")
    if len(cfg.lr_milestones) != len(cfg.lr_decay):
        raise ConfigError("Expected as many lr_decay factors as lr_milestones")
    if any(not 0 < m <= 1 for m in cfg.lr_milestones):
        raise ConfigError(f"Expected lr_milestones as fractions of the run in (0, 1] but got {cfg.lr_milestones}")
    if not 0 < cfg.imb_factor <= 1:
        raise ConfigError(f"Expected imb_factor in (0, 1] (0.01 = imbalance ratio 100) but got {cfg.imb_factor}")
    if cfg.lambda_ < 0:
        raise ConfigError(f"Expected lambda_ >= 0 but got {cfg.lambda_}")
    if not 0 <= cfg.start_epoch < cfg.epochs:
        raise ConfigError(f"Expected 0 <= start_epoch < epochs ({cfg.epochs}) but got {cfg.start_epoch}")
    if cfg.mixup and not cfg.mixup_alpha > 0:
        raise ConfigError(f"Expected mixup_alpha > 0 but got {cfg.mixup_alpha}")
    if cfg.drw_epoch is not None and not 0 <= cfg.drw_epoch < cfg.epochs:
        raise ConfigError(
            f"Expected 0 <= drw_epoch < epochs ({cfg.epochs}) but got {cfg.drw_epoch}: DRW would never switch on"
        )
    if cfg.samples_per_class < 1:
        raise ConfigError(f"Expected samples_per_class >= 1 but got {cfg.samples_per_class}")
    check_beta(cfg.beta)
    if cfg.nan_policy not in ("stop", "skip"):
        raise ConfigError(f"Expected --nan-policy stop or skip but got {cfg.nan_policy!r}")
    if not isinstance(cfg.accum_steps, int) or cfg.accum_steps < 1 or cfg.batch_size % cfg.accum_steps:
        raise ConfigError(f"Expected --accum-steps to divide --batch_size {cfg.batch_size} but got {cfg.accum_steps}")
    if str(cfg.precision).lower() not in PRECISIONS:
        raise ConfigError(f"Unknown precision {cfg.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    cfg.precision = str(cfg.precision).lower()
    check_loss_options(cfg.loss, cfg.loss_options)
    weighting = loss_weighting(cfg.loss)
    if weighting is not None and get_train_rule(cfg.train_rule).class_weight is not None:
        raise ConfigError(
            f"Loss {cfg.loss!r} is weighted by {weighting} and train rule {cfg.train_rule!r} re-weights it too: "
            "use one of them, not both"
        )
    return cfg
