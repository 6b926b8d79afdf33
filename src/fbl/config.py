"""Run configuration: five sections of options, each option declared once with its metadata.

A :class:`TrainConfig` holds one section per builder — :class:`DataConfig` (``build_dataset``),
:class:`ModelConfig` (``create_model``), :class:`LossConfig` (``build_loss`` and the train rule),
:class:`OptimConfig` (optimizer, schedule, seed) and :class:`RunConfig` (device, precision,
output). Every field is declared with :func:`option`: its flag spellings (the paper's aliases
included), help, choices and how cRT stage 2 treats it. The command line (``fbl.cli``), ``--help``,
YAML validation, the saved ``config.yaml``, stage-2 inheritance and ``--resume``'s rules all follow
from those declarations: a new option is one field.

Option keys are flat and unique (``lr``, ``lambda_``, ``dataset``), so flags, presets and YAML files
name an option without its section; ``config.yaml`` groups them by section.

Resolution order (later wins): field defaults -> preset YAML -> ``--config`` YAML -> flags. A cRT
stage 2 (``--stage2-from RUN``) starts from the stage-1 run's config (the fields marked
``stage2=INHERIT``) plus each field's ``stage2`` value instead of a preset.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fbl.classifiers import CLASSIFIERS
from fbl.errors import ConfigError
from fbl.lr_schedule import LR_SCHEDULES

# The registries (datasets, losses, models, train rules) import torch, which takes seconds: they are
# imported where a config is validated, so declaring the options (``fbl train --help``) needs none of them.

#: Numeric precisions of the forward pass (``auto``: bf16 where the device runs it natively).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NAN_POLICIES = ("stop", "skip")
#: Version of the saved config layout: 1 was flat (every key at the top), 2 groups keys by section.
CONFIG_FORMAT_VERSION = 2

#: ``stage2=INHERIT``: a cRT stage 2 takes the stage-1 run's value (the backbone sees the data it was trained on).
INHERIT = "inherit"
_UNSET = object()

# Presets chosen automatically from --dataset when no --preset is given, so the seed's commands
# (`train.py --dataset cifar10 ...`) get the paper's hyper-parameters.
DATASET_PRESETS = {
    "cifar10": "cifar10-lt",
    "cifar100": "cifar100-lt",
    "digits-lt": "digits-lt",
    "imagenet": "imagenet-lt",
    "inat": "inat2018",
    "place365": "places-lt",
}


def option(
    default: Any,
    *flags: str,
    help: str = "",  # noqa: A002 - argparse's name
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    stage2: Any = _UNSET,
    runtime: bool = False,
    loss_setting: str | None = None,
    before_it: Any = _UNSET,
):
    """A config field with its command-line metadata.

    Args:
        default: the value before any preset; a list or dict is copied per instance.
        flags: every spelling of the flag (the first is shown first in ``--help``); none: ``--<key>``.
        choices: the accepted values (case-insensitive), checked once for flags and YAML alike.
        stage2: a cRT stage 2's value: :data:`INHERIT` (the stage-1 run's) or a fixed value.
        runtime: how a run is watched, not what it computes: ``--resume`` may change it.
        loss_setting: the loss keyword this run-level value becomes (``alpha_schedule`` -> ``schedule``).
        before_it: what a saved config (a run folder, a checkpoint) that predates this option meant,
            where that differs from the default: resuming or evaluating an older run keeps its behaviour.
    """
    metadata = {"flags": flags, "help": help, "choices": choices, "metavar": metavar, "stage2": stage2}
    metadata.update(runtime=runtime, loss_setting=loss_setting, before_it=before_it)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """What to train on: the dataset, its long-tailed subset and how it is read."""

    dataset: str = option(
        "digits-lt", "--dataset", stage2=INHERIT,
        help="digits-lt | cifar10 | cifar100 | imagenet | inat | place365 | folder",
    )  # fmt: skip
    data_dir: str = option(
        "./data", "--data_path", "--data-dir", "--data_dir", stage2=INHERIT, help="folder holding the dataset"
    )
    img_path: str | None = option(
        None, "--img_path", "--img-path", stage2=INHERIT, help="image root of the large datasets"
    )
    download: bool = option(False, "--download", help="fetch CIFAR when missing (needs network)")
    imb_type: str = option("exp", "--imb_type", "--imb-type", stage2=INHERIT, help="exp | step")
    imb_factor: float = option(
        0.01, "--imb_factor", "--imb-factor", stage2=INHERIT, help="n_min/n_max, 0.01 = ratio 100"
    )
    rand_number: int = option(0, "--rand_number", "--rand-number", stage2=INHERIT, help="seed of the LT subsampling")
    val_split: str | int = option(
        "auto", "--val-split", "--val_split", stage2=INHERIT,
        help="balanced validation split from the train images the LT subset left out: "
        "auto (50 per class on CIFAR, as many as digits-lt allows), N per class, or none",
    )  # fmt: skip
    rotate: float = option(
        0.0, "--rotate", metavar="DEG", stage2=INHERIT,
        help="CIFAR and digits-lt: after the crop and flip, rotate each training image by an angle uniform in "
        "[-DEG, DEG] degrees (nearest neighbour, black corners; torchvision's RandomRotation), as RIDE, SADE and "
        "BalPoE train on CIFAR; 0 (the FBL paper's pipeline): no rotation",
    )  # fmt: skip
    image_size: int = option(
        224, "--image-size", stage2=INHERIT, help="image files: crop side of the train/eval transforms"
    )
    skip_bad_images: bool = option(
        False, "--skip-bad-images", help="image files: drop and count unreadable images instead of stopping"
    )
    fast_decode: bool = option(
        True, "--fast-decode", before_it=False,
        help="image files: decode JPEGs with libjpeg-turbo into tensors and crop/resize/flip those (the same "
        "crops and flips, resampled pixels within about 1 level of 255); --no-fast-decode: PIL throughout",
    )  # fmt: skip
    allow_outside_root: bool = option(
        False,
        "--allow-outside-root",
        help="let split lists name files outside --img_path ('..' or absolute paths) "
        "and follow symbolic links out of the data root",
    )
    workers: int = option(4, "--workers", "-j", runtime=True, help="data-loading processes (image files)")


@dataclass
class ModelConfig:
    """What is trained: the architecture, its classifier and where its weights start."""

    arch: str = option("digits-cnn", "--arch", "-a", stage2=INHERIT, help="model name (see fbl.models.list_models)")
    pretrained: bool = option(False, "--pretrained", help="torchvision ImageNet weights (torch cache)")
    pretrained_weights: str | None = option(
        None,
        "--pretrained-weights",
        metavar="PATH",
        help="torchvision-format ImageNet state dict on disk (resnet152_p)",
    )
    classifier: str = option(
        "auto", "--classifier", choices=("auto", *CLASSIFIERS), stage2=INHERIT,
        help="linear | normed (cosine) | auto: the loss's preference (normed for LDAM, else linear)",
    )  # fmt: skip
    stage2_from: str | None = option(
        None, "--stage2-from",
        help="cRT: retrain the classifier of this stage-1 run (folder or checkpoint) on a frozen backbone",
    )  # fmt: skip
    num_experts: int | None = option(
        None, "--num-experts", stage2=INHERIT,
        help="multi-expert models (resnet32-ride, resnet32-experts): K experts; default the model's, 3",
    )  # fmt: skip
    decoupled: str = option(
        "crt", "--decoupled", choices=("crt", "lws", "router"),
        help="stage 2 (--stage2-from): crt retrains the classifier, lws learns one scale per class of the "
        "stage-1 classifier (Kang et al., ICLR 2020); router trains RIDE's expert assignment on a frozen "
        "multi-expert run (with --loss ride-router; preset ride-router)",
    )  # fmt: skip


@dataclass
class LossConfig:
    """What is minimised: the loss, its options, and how classes are re-sampled or re-weighted."""

    loss: str = option("ce", "--loss_type", "--loss", stage2="ce", help="fbl (FeaBal), ce (CE), ... case-insensitive")
    lambda_: float = option(60.0, "--lambda_", "--lambda", loss_setting="lambda_", help="FBL stimulus strength A")
    alpha_schedule: str = option(
        "parabolic", "--alpha-schedule", "--schedule", loss_setting="schedule", help="FBL curriculum"
    )
    expert_lambdas: list[float] = option(
        [15.0, 30.0, 60.0], "--expert-lambdas", metavar="F,F,F", loss_setting="expert_lambdas",
        help="fbl-experts: one FBL stimulus strength per expert (as many as --num-experts)",
    )  # fmt: skip
    loss_options: dict = option(
        {}, "--loss-option", "--loss-options", metavar="KEY=VALUE", stage2={},
        help="extra keyword for the loss, e.g. gamma=2 (repeatable)",
    )  # fmt: skip
    train_rule: str | None = option(
        "none", "--train_rule", "--train-rule", stage2="balanced-rs", help="re-sampling / re-weighting rule"
    )
    samples_per_class: int = option(4, "--samples-per-class", help="k of the class-aware sampler")
    drw_epoch: int | None = option(None, "--drw-epoch", stage2=None, help="epoch at which DRW weights switch on")
    beta: float = option(0.9999, "--beta", help="effective-number beta")
    mixup: bool = option(False, "--mixup", stage2=False, help="input mixup")
    mixup_alpha: float = option(1.0, "--mixup-alpha", help="Beta(alpha, alpha) of the mixing weight")


@dataclass
class OptimConfig:
    """How it is optimised: SGD, the learning-rate schedule, the batch and the seed."""

    epochs: int = option(200, "--epochs", stage2=10)
    batch_size: int = option(64, "--batch_size", "--batch-size", "-b", stage2=INHERIT, help="the global batch")
    accum_steps: int = option(
        1, "--accum-steps",
        help="accumulate K micro-batches of batch_size/K per step (the global batch on fewer devices)",
    )  # fmt: skip
    lr: float = option(0.1, "--learning_rate", "--lr", stage2=INHERIT)
    momentum: float = option(0.9, "--momentum", stage2=INHERIT)
    nesterov: bool = option(
        False, "--nesterov", stage2=INHERIT,
        help="Nesterov momentum (RIDE's, SADE's and BalPoE's code use it; the FBL paper's does not)",
    )  # fmt: skip
    weight_decay: float = option(2e-4, "--weight_decay", "--weight-decay", "--wd", stage2=INHERIT)
    warmup_epochs: int = option(5, "--warmup-epochs", stage2=0, help="linear warm-up of the lr")
    lr_schedule: str = option(
        "step", "--lr-schedule", choices=LR_SCHEDULES,
        help="step: x lr_decay after each of lr_milestones (the paper's); cosine: annealed to 0 after the warm-up",
    )  # fmt: skip
    lr_milestones: list[float] = option(
        [0.8, 0.9], "--lr-milestones", metavar="F,F", stage2=INHERIT,
        help="epochs (fractions of the run) after which the lr decays, e.g. 0.8,0.9",
    )  # fmt: skip
    lr_decay: list[float] = option(
        [0.01, 0.0001], "--lr-decay", metavar="F,F", stage2=INHERIT,
        help="lr factor after each milestone, e.g. 0.01,0.0001",
    )  # fmt: skip
    seed: int = option(123, "--seed", stage2=INHERIT, help="model initialisation and data order")


@dataclass
class RunConfig:
    """Where and how it runs, and where it is written: none of these changes what is learnt (beyond bf16 noise)."""

    device: str = option("auto", "--device", runtime=True, help="auto | cpu | cuda | cuda:N")
    sync_bn: bool = option(False, "--sync-bn", help="torchrun on GPUs: BatchNorm statistics over the global batch")
    dist_timeout: float = option(
        300.0, "--dist-timeout", metavar="SECONDS", runtime=True,
        help="torchrun: a collective waiting longer (a frozen or lost rank) ends the job; it must cover the "
        "slowest rank's data loading and compile",
    )  # fmt: skip
    precision: str = option(
        "auto", "--precision", choices=PRECISIONS, help="auto | fp32 | bf16 | fp16 (CUDA); auto = bf16 where native"
    )
    channels_last: bool = option(True, "--channels-last", help="channels-last memory format")
    compile: bool | None = option(
        None, "--compile",
        help="torch.compile the model; default: on for runs of at least 200,000 training images "
        "(about 16 CIFAR-10-LT epochs), where its minute of start-up on a CPU pays for itself",
    )  # fmt: skip
    eval_every: int | None = option(
        None, "--eval-every", runtime=True,
        help="evaluate every N epochs (and the last); default: every epoch, except in runs of at least 200,000 "
        "training images (about 16 CIFAR-10-LT epochs), which evaluate every 10th epoch and every epoch of the "
        "last tenth of the run (at least its last 10)",
    )  # fmt: skip
    estimate_every: int = option(
        0, "--estimate-every", runtime=True,
        help="also evaluate the costly end-of-run splits (CIFAR-LT: lossless_estimate, about 3.7 test sets) "
        "every K epochs; 0: only at the end of the run",
    )  # fmt: skip
    nan_policy: str = option(
        "stop", "--nan-policy", choices=NAN_POLICIES,
        help="a non-finite loss: stop the run (the last good checkpoint stays) or skip that step",
    )  # fmt: skip
    limit_batches: int | None = option(None, "--limit-batches", runtime=True, help="cap batches per epoch (smoke runs)")
    out: str | None = option(None, "--out", help="run folder (default runs/<dataset>-<loss>-<time>)")
    overwrite: bool = option(
        False, "--overwrite", help="let --out replace a folder that already holds a run (else: refused; or --resume it)"
    )
    root_log: str = option("runs", "--root_log", "--root-log", stage2=INHERIT, help="parent of default run folders")
    exp_str: str = option("", "--exp_str", "--exp-str", help="suffix of the run folder name")
    print_freq: int = option(10, "--print_freq", "--print-freq", "-p", runtime=True, help="the seed's flag (no effect)")
    resume: str | None = option(None, "--resume", help="checkpoint or run folder to continue")
    start_epoch: int = option(0, "--start_epoch", "--start-epoch")
    quiet: bool = option(False, "--quiet", runtime=True, help="no progress bars or per-epoch lines")
    preset: str | None = option(
        None, "--preset", help="named preset (see `fbl presets`); default from --dataset, else digits-lt"
    )


@dataclass
class TrainConfig:
    """A resolved run: one section per builder. ``cfg.optim.lr``, ``cfg.loss.lambda_``, ..."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """The saved form (``config.yaml``, checkpoints): ``{"config_version": 2, "data": {...}, ...}``."""
        return {"config_version": CONFIG_FORMAT_VERSION, **dataclasses.asdict(self)}

    def flat(self) -> dict:
        """Every option by its flat key: ``{"dataset": ..., "lr": ..., ...}``."""
        return {key: getattr(getattr(self, spec.section), key) for key, spec in option_specs().items()}

    def replace(self, **values) -> TrainConfig:
        """A copy with options replaced by flat key: ``cfg.replace(lr=0.5, resume=None)``."""
        unknown = set(values) - set(option_specs())
        if unknown:
            raise TypeError(f"TrainConfig has no option(s) {', '.join(sorted(unknown))}")
        return config_from_flat({**self.flat(), **values})


@dataclass(frozen=True)
class OptionSpec:
    """One option: its flat key, section and declaration (the dataclass field with its metadata)."""

    key: str
    section: str
    section_title: str
    type: Any
    field: dataclasses.Field

    @property
    def meta(self) -> dict:
        return dict(self.field.metadata)

    @property
    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    @property
    def flags(self) -> tuple[str, ...]:
        return self.meta.get("flags") or ("--" + self.key.rstrip("_").replace("_", "-"),)

    @property
    def flag(self) -> str:
        """The spelling named in messages: the first long flag with dashes, else the first."""
        dashed = [f for f in self.flags if f.startswith("--") and "_" not in f]
        return (dashed or list(self.flags))[0]


@functools.cache
def _specs(config_class: type) -> dict[str, OptionSpec]:
    specs: dict[str, OptionSpec] = {}
    for section in dataclasses.fields(config_class):
        section_class = typing.get_type_hints(config_class)[section.name]
        hints = typing.get_type_hints(section_class)
        title = (section_class.__doc__ or section.name).strip().splitlines()[0]
        for f in dataclasses.fields(section_class):
            if f.name in specs:
                raise TypeError(f"option {f.name!r} is declared in two sections")
            specs[f.name] = OptionSpec(f.name, section.name, title, hints[f.name], f)
    return specs


def option_specs() -> dict[str, OptionSpec]:
    """Every option of :class:`TrainConfig`, by flat key, in declaration order."""
    return _specs(TrainConfig)


def option_applies(key: str, loss: str) -> bool:
    """Whether option ``key`` means anything to ``loss``: an option declared with a ``loss_setting`` (e.g.
    ``lambda_``) only to the losses that take that setting; every other option always."""
    setting = option_specs()[key].meta["loss_setting"]
    if setting is None:
        return True
    from fbl.losses import loss_parameters  # the registry imports torch: only when asked

    return setting in loss_parameters(loss)


def sections() -> dict[str, type]:
    """Section name -> section dataclass."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


#: Keys a preset or config file may hold besides the options (they describe it).
DESCRIPTIVE_KEYS = {"description", "paper", "config_version"}


def flatten(values: dict, source: str = "") -> dict:
    """Flat option values from a config mapping of either layout (migrating version 1).

    Version 1 (run folders and checkpoints before sections) held every key at the top; version 2
    nests them under their section. Files users write may mix the two: ``loss: fbl`` is the option,
    ``loss: {lambda_: 30}`` the section.
    """
    version = values.get("config_version", 1)
    if not isinstance(version, int) or version > CONFIG_FORMAT_VERSION:
        raise ConfigError(f"{source or 'The config'} has config_version {version!r}; this fbl reads 1 to 2")
    flat: dict = {}
    for key, value in values.items():
        if key in sections() and isinstance(value, dict):  # no option's value is a mapping but loss_options
            flat.update(value)
        elif key != "config_version":
            flat[key] = value
    return flat


def config_from_flat(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from flat option values (missing ones take their defaults; no validation)."""
    by_section: dict[str, dict] = {name: {} for name in sections()}
    for key, value in values.items():
        by_section[option_specs()[key].section][key] = value
    return TrainConfig(**{name: cls(**by_section[name]) for name, cls in sections().items()})


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
    """One :class:`ConfigError` line when ``value`` is not of the type option ``name`` is annotated with."""
    expected = option_specs()[name].type
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


def _spellings() -> dict[str, str]:
    """Every flag spelling as a YAML key (``learning_rate``, ``loss_type``, ``data_path``) -> its option key."""
    names = {}
    for key, spec in option_specs().items():
        for flag in spec.flags:
            if flag.startswith("--"):
                names[flag[2:].replace("-", "_")] = key
    return names


def check_keys(values: dict, source: str) -> dict:
    """Flat option values of ``values`` (either layout): every key names an option (else the closest
    is suggested, the paper's flag names included) and every value has its option's type."""
    values = flatten(dict(values), source)
    known = set(option_specs())
    unknown = sorted({str(key) for key in values} - known - DESCRIPTIVE_KEYS)
    if unknown:
        spellings = _spellings()
        described = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known | set(spellings)), n=1)
            close = [spellings.get(name, name) for name in close]
            described.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"Unknown config key(s) {', '.join(described)} in {source}")
    for key, value in values.items():
        if key in known:
            check_field_type(key, value, source)
    return values


def config_from_dict(values: dict, source: str) -> TrainConfig:
    """A :class:`TrainConfig` from a saved config (``config.yaml`` or a checkpoint's, either version)."""
    return config_from_flat(saved_values({k: v for k, v in check_keys(values, source).items() if k in option_specs()}))


def saved_values(flat: dict) -> dict:
    """A saved config's flat values, completed. A saved config is complete, so an option it lacks was
    added after the run: it takes what the run did then (the option's ``before_it``), else its default."""
    missing = {
        key: spec.default if spec.meta["before_it"] is _UNSET else spec.meta["before_it"]
        for key, spec in option_specs().items()
        if key not in flat
    }
    return {**flat, **missing}


def load_preset(name: str) -> dict:
    """The preset's flat values, including its ``description`` and ``paper`` (not options).

    A preset may name another in ``extends``: the method presets are the dataset preset plus the
    few values that define the method.
    """
    own = preset_file_values(name)
    parent = own.pop("extends", None)
    values = load_preset(parent) if parent else {}
    values.update(check_keys(own, f"preset {str(name).lower()}"))
    return values


def preset_file_values(name: str) -> dict:
    """What the preset's own file sets (``extends`` included, nothing inherited), unchecked."""
    key = str(name).lower()
    if key not in list_presets():
        close = difflib.get_close_matches(key, list_presets(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"Unknown preset {name!r}{hint}; choose one of: {', '.join(list_presets())}")
    return yaml.safe_load((_preset_dir() / f"{key}.yaml").read_text(encoding="utf-8")) or {}


def load_yaml_file(path: str) -> dict:
    """The flat option values of a YAML config file (either layout), checked."""
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
    return check_keys(values, str(path))


def stage2_values(stage1_config: dict) -> dict:
    """Flat values of a cRT stage 2 on top of a stage-1 run's saved config (either version)."""
    stage1 = flatten(stage1_config, "the stage-1 config")
    values = {}
    for key, spec in option_specs().items():
        stage2 = spec.meta["stage2"]
        if isinstance(stage2, str) and stage2 == INHERIT:
            if key in stage1:
                values[key] = stage1[key]
        elif stage2 is not _UNSET:
            values[key] = type(stage2)(stage2) if isinstance(stage2, (dict, list)) else stage2
    return values


def resolve_config(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict | None = None,
    stage1_config: dict | None = None,
) -> TrainConfig:
    """Merge defaults, preset, YAML file and explicit overrides (flat keys, in that order) into a TrainConfig.

    With ``stage1_config`` (the config of the run named by ``stage2_from``) the base is that run's
    data and model plus each option's ``stage2`` value; no preset is chosen from ``--dataset`` then,
    so a redundant ``--dataset`` flag cannot change the stage-2 recipe.
    """
    overrides = dict(overrides or {})
    file_values = load_yaml_file(config_file) if config_file else {}
    dataset = overrides.get("dataset") or file_values.get("dataset")
    values: dict[str, Any] = {}
    if stage1_config is not None:
        values.update(stage2_values(stage1_config))
    else:
        preset = starting_preset(preset or file_values.get("preset"), dataset)
    if preset:
        values.update({k: v for k, v in load_preset(preset).items() if k in option_specs()})
        values["preset"] = str(preset).lower()
    values.update({k: v for k, v in file_values.items() if k in option_specs()})
    values.update(overrides)
    cfg = validate(config_from_flat(values))
    if stage1_config is not None:
        stage1_dataset = flatten(stage1_config).get("dataset")
        if stage1_dataset is not None:
            _check_stage2_dataset(cfg, stage1_dataset)
    return cfg


def starting_preset(preset: str | None, dataset: str | None) -> str | None:
    """The preset a run starts from: the one named, else ``dataset``'s paper preset (``None`` for a dataset
    without one), else ``digits-lt``, the embedded default."""
    if preset:
        return preset
    return DATASET_PRESETS.get(_dataset_key(dataset)) if dataset else "digits-lt"


def _check_stage2_dataset(cfg: TrainConfig, stage1_dataset) -> None:
    """A stage-2 run retrains the classifier on the data its backbone saw; another dataset is a mistake."""
    stage1_dataset = _dataset_key(stage1_dataset) or str(stage1_dataset)
    if cfg.data.dataset != stage1_dataset:
        raise ConfigError(
            f"--stage2-from {cfg.model.stage2_from} is a {stage1_dataset} run but the dataset asked for is "
            f"{cfg.data.dataset}: stage 2 retrains the classifier on the stage-1 dataset; drop --dataset "
            f"(or give --dataset {stage1_dataset})"
        )


def _dataset_key(name) -> str | None:
    from fbl.data import DATASETS

    try:
        return DATASETS.canonical(name)
    except ConfigError:
        return None


def _check_choices(cfg: TrainConfig) -> None:
    """Every option declared with ``choices``: one of them (any case), stored lower-case."""
    for key, spec in option_specs().items():
        choices = spec.meta["choices"]
        section = getattr(cfg, spec.section)
        value = getattr(section, key)
        if choices is None or value is None:
            continue
        if str(value).lower() not in choices:
            raise ConfigError(f"Unknown {key} {value!r}; choose one of: {', '.join(choices)}")
        setattr(section, key, str(value).lower())


def _canonical_names(cfg: TrainConfig) -> None:
    """Registry names in their canonical spelling (``FeaBal`` -> ``fbl``)."""
    from fbl.data import DATASETS
    from fbl.losses import LOSSES, SCHEDULES, loss_class
    from fbl.models import MODELS
    from fbl.train_rules import TRAIN_RULES

    cfg.loss.loss = LOSSES.canonical(cfg.loss.loss)
    cfg.model.arch = MODELS.canonical(cfg.model.arch)
    cfg.data.dataset = DATASETS.canonical(cfg.data.dataset)
    cfg.loss.alpha_schedule = SCHEDULES.canonical(cfg.loss.alpha_schedule)
    cfg.loss.train_rule = TRAIN_RULES.canonical("none" if cfg.loss.train_rule is None else cfg.loss.train_rule)
    if cfg.model.classifier == "auto":
        cfg.model.classifier = getattr(loss_class(cfg.loss.loss), "preferred_classifier", "linear")


def _at_least(cfg: TrainConfig, minimum: int, *keys: str) -> None:
    for key in keys:
        value = cfg.flat()[key]
        if value is not None and value < minimum:
            word = "a positive integer" if minimum == 1 else f">= {minimum}"
            raise ConfigError(f"Expected {key} to be {word} but got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject values that make no sense before any work starts; normalise names. Each check once."""
    for key, value in cfg.flat().items():
        check_field_type(key, value)
    _check_choices(cfg)
    _canonical_names(cfg)
    _at_least(cfg, 1, "epochs", "batch_size", "eval_every", "image_size", "limit_batches", "samples_per_class")
    _at_least(cfg, 0, "workers", "warmup_epochs", "estimate_every")
    if not cfg.run.dist_timeout > 0:
        raise ConfigError(f"Expected dist_timeout > 0 seconds but got {cfg.run.dist_timeout}")
    _check_ranges(cfg.data, cfg.optim)
    _check_optim(cfg.optim)
    _check_loss(cfg.loss, cfg.optim)
    _check_experts(cfg)
    if not 0 <= cfg.run.start_epoch < cfg.optim.epochs:
        raise ConfigError(f"Expected 0 <= start_epoch < epochs ({cfg.optim.epochs}) but got {cfg.run.start_epoch}")
    return cfg


def _check_ranges(data: DataConfig, optim: OptimConfig) -> None:
    from fbl.data.augment import check_rotation

    # torch.manual_seed takes 64 bits (and the per-epoch seeds need seed >= 0); numpy's RandomState 32.
    if not 0 <= optim.seed < 2**63:
        raise ConfigError(f"Expected 0 <= seed < 2**63 but got {optim.seed}")
    if not 0 <= data.rand_number < 2**32:
        raise ConfigError(f"Expected 0 <= rand_number < 2**32 (a numpy RandomState seed) but got {data.rand_number}")
    check_rotation(data.rotate)
    if not 0 < data.imb_factor <= 1:
        raise ConfigError(f"Expected imb_factor in (0, 1] (0.01 = imbalance ratio 100) but got {data.imb_factor}")


def _check_optim(optim: OptimConfig) -> None:
    if not optim.lr > 0:
        raise ConfigError(f"Expected a positive learning rate but got {optim.lr}")
    if optim.weight_decay < 0 or optim.momentum < 0:
        raise ConfigError("Expected weight_decay >= 0 and momentum >= 0")
    if optim.nesterov and optim.momentum == 0:
        raise ConfigError("--nesterov needs a momentum above 0 (--momentum)")
    if len(optim.lr_milestones) != len(optim.lr_decay):
        raise ConfigError("Expected as many lr_decay factors as lr_milestones")
    if any(not 0 < m <= 1 for m in optim.lr_milestones):
        raise ConfigError(f"Expected lr_milestones as fractions of the run in (0, 1] but got {optim.lr_milestones}")
    if optim.accum_steps < 1 or optim.batch_size % optim.accum_steps:
        raise ConfigError(
            f"Expected --accum-steps to divide --batch_size {optim.batch_size} but got {optim.accum_steps}"
        )


def _check_experts(cfg: TrainConfig) -> None:
    """An ensemble loss trains the experts of a multi-expert model; any other model has none."""
    from fbl.losses import loss_class
    from fbl.models.multi_expert_resnet import MULTI_EXPERT_ARCHS

    router_stage, router_loss = cfg.model.decoupled == "router", cfg.loss.loss == "ride-router"
    if router_stage and not cfg.model.stage2_from:
        raise ConfigError(
            "--decoupled router trains RIDE's router on a finished multi-expert run: give --stage2-from RUN"
        )
    if router_loss != (router_stage and bool(cfg.model.stage2_from)):
        raise ConfigError("RIDE's router is trained with --loss ride-router and --decoupled router together")
    if getattr(loss_class(cfg.loss.loss), "needs_experts", False) and cfg.model.arch not in MULTI_EXPERT_ARCHS:
        raise ConfigError(
            f"Loss {cfg.loss.loss!r} trains a multi-expert model's experts; give --arch "
            f"{' or '.join(sorted(MULTI_EXPERT_ARCHS))} (the method presets do: see fbl presets)"
        )
    if cfg.model.num_experts is not None and cfg.model.arch not in MULTI_EXPERT_ARCHS:
        raise ConfigError(f"--num-experts applies to {', '.join(sorted(MULTI_EXPERT_ARCHS))}, not {cfg.model.arch!r}")


def _check_loss(loss: LossConfig, optim: OptimConfig) -> None:
    from fbl.checks import check_beta
    from fbl.losses import check_loss_options, loss_weighting
    from fbl.train_rules import check_weighting

    if loss.mixup and not loss.mixup_alpha > 0:
        raise ConfigError(f"Expected mixup_alpha > 0 but got {loss.mixup_alpha}")
    check_beta(loss.beta)
    check_loss_options(loss.loss, loss.loss_options)
    check_weighting(loss.train_rule, loss_weighting(loss.loss), loss.drw_epoch, optim.epochs)


def loss_settings(cfg: TrainConfig) -> dict:
    """The run-level values a loss may take (by their loss keyword), plus the run length."""
    settings = {
        spec.meta["loss_setting"]: getattr(cfg.loss, key)
        for key, spec in option_specs().items()
        if spec.meta["loss_setting"]
    }
    return {**settings, "total_epochs": cfg.optim.epochs}


def runtime_keys() -> tuple[str, ...]:
    """Options a resumed run may change (``--resume`` continues the run otherwise exactly as configured)."""
    return tuple(key for key, spec in option_specs().items() if spec.meta["runtime"])
