"""Decoupled classifier re-training, cRT (Kang et al., ICLR 2020): where a stage-2 run's config starts.

Stage 2 takes the backbone of a finished stage-1 run, freezes it and trains a fresh classifier
(:class:`~fbl.models.ClassifierRetraining`). ``fbl train --stage2-from RUN`` is all it takes: data,
model and seed come from the stage-1 run's config, the stage-2 defaults from
:data:`fbl.config.STAGE2_DEFAULTS`.
"""

from __future__ import annotations

from fbl.config import load_yaml_file
from fbl.engine.checkpoint import load_checkpoint


def stage1_config(config_file: str | None, overrides: dict) -> dict | None:
    """The stage-1 run's config when ``stage2_from`` is asked for (by flag or config file), else ``None``."""
    source = overrides.get("stage2_from") or (load_yaml_file(config_file).get("stage2_from") if config_file else None)
    return load_checkpoint(source)["config"] if source else None
