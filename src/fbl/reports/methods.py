"""Grouping runs into methods: runs whose configs are equal except for the seed.

Each distinct config (a grid point of a sweep, e.g. one ``lambda_`` value) is its own method.
Settings that do not change what is trained (where files go, how many workers, the device) are
left out of the comparison; ``stage2_from`` names a different stage-1 run for every seed, so only
whether it is set counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from fbl.config import option_applies, saved_values
from fbl.errors import ConfigError
from fbl.reports.run_folder import Run

#: Config keys that are bookkeeping, not part of the method.
IGNORED_KEYS = frozenset(
    {
        "seed",
        "data_dir",
        "img_path",
        "download",
        "device",
        "eval_every",
        "out",
        "root_log",
        "exp_str",
        "print_freq",
        "workers",
        "resume",
        "start_epoch",
        "quiet",
        "preset",
        "channels_last",
        "compile",
        "skip_bad_images",
        "allow_outside_root",
        "overwrite",
        "dist_timeout",
        "estimate_every",
    }
)
#: How a stage 2 (``--decoupled``) is named in a label; RIDE's router already names itself by its loss.
STAGE2_LABELS = {"crt": "cRT", "lws": "LWS", "router": "stage 2"}
#: Config keys holding a path that differs per run; only whether they are set identifies the method.
PATH_KEYS = frozenset({"stage2_from", "pretrained_weights"})


@dataclass
class Method:
    """Runs of one config over seeds, with a short label (``"fbl λ=60"``, ``"ce + drw"``)."""

    label: str
    config: dict
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]


def method_config(run: Run) -> dict:
    """The part of ``run.config`` that defines the method; an option the run predates (e.g. ``nesterov``)
    counts as what the run did then (:func:`fbl.config.saved_values`)."""
    config = {k: v for k, v in saved_values(run.config).items() if k not in IGNORED_KEYS}
    for key in PATH_KEYS & config.keys():
        config[key] = config[key] is not None
    return config


def group_methods(runs: list[Run]) -> list[Method]:
    """Runs grouped by :func:`method_config`, labelled uniquely and sorted by label (numbers numerically)."""
    by_key: dict[str, Method] = {}
    for run in runs:
        config = method_config(run)
        key = json.dumps({k: _comparable(v) for k, v in config.items()}, sort_keys=True)
        if key not in by_key:
            by_key[key] = Method(label="", config=config)
        by_key[key].runs.append(run)
    methods = list(by_key.values())
    for method in methods:
        method.label = _base_label(method)
    _disambiguate(methods)
    return sorted(methods, key=lambda m: _natural_key(m.label))


def varying_keys(methods: list[Method]) -> list[str]:
    """Config keys whose values differ between ``methods``, in config order."""
    keys: list[str] = []
    for method in methods:
        keys.extend(k for k in method.config if k not in keys)
    return [k for k in keys if len({_comparable(m.config.get(k)) for m in methods}) > 1]


def _comparable(value: Any) -> str:
    """A config value as text in which 60 and 60.0 (a preset's int, a flag's float) are one value."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, default=str)


def _base_label(method: Method) -> str:
    config = method.config
    label = str(config.get("loss", "?"))
    if config.get("train_rule", "none") not in (None, "none"):
        label += f" + {config['train_rule']}"
    if config.get("mixup"):
        label += " + mixup"
    if config.get("stage2_from"):
        label += f" ({STAGE2_LABELS[config.get('decoupled', 'crt')]})"
    if "lambda_" in config and _uses_lambda(method):
        label += (
            f" λ={config['lambda_']:g}" if isinstance(config["lambda_"], (int, float)) else f" λ={config['lambda_']}"
        )
    return label


def _uses_lambda(method: Method) -> bool:
    """Whether the run's loss takes the stimulus strength ``lambda_`` (FBL, CB-FBL; not CE, not FBL experts,
    whose strengths are ``expert_lambdas``). A loss name fbl does not know (an older run): whether the run
    logged a curriculum factor alpha, as the losses with a stimulus do."""
    try:
        return option_applies("lambda_", str(method.config.get("loss")))
    except ConfigError:
        return any(r.get("alpha") is not None for run in method.runs for r in run.epochs)


def _disambiguate(methods: list[Method]) -> None:
    by_label: dict[str, list[Method]] = {}
    for method in methods:
        by_label.setdefault(method.label, []).append(method)
    for same in by_label.values():
        if len(same) < 2:
            continue
        keys = varying_keys(same)
        for method in same:
            method.label += " " + " ".join(f"{k}={_short(method.config.get(k))}" for k in keys)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _natural_key(text: str) -> list:
    return [
        (0, float(part), "") if re.fullmatch(r"\d+(?:\.\d+)?", part) else (1, 0.0, part)
        for part in re.findall(r"\d+(?:\.\d+)?|\D+", text)
    ]
