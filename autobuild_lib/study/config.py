"""The study-wide settings of the top-level ``_config.yml``."""
from __future__ import annotations

from pathlib import Path

import yaml

from autobuild_lib.paths import STUDY_CONFIG

PROFILES = ("smoke", "full")
DATASETS = ("mini-ofa", "autobuild-release")


def load_study_config(path: Path = STUDY_CONFIG) -> dict:
    """Read and check ``_config.yml``; errors name the key and allowed values."""
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"study config {path} not found; restore it from git") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a mapping of settings, got {type(cfg).__name__}")
    if cfg.get("profile", "full") not in PROFILES:
        raise ValueError(f"{path}: profile {cfg['profile']!r} not in {PROFILES}")
    if cfg.get("dataset", "mini-ofa") not in DATASETS:
        raise ValueError(f"{path}: dataset {cfg['dataset']!r} not in {DATASETS}")
    if not isinstance(cfg.get("notebooks", {}) or {}, dict):
        raise ValueError(f"{path}: 'notebooks' must map notebook names to parameter overrides")
    return cfg


def notebook_parameters(cfg: dict, notebook: str, declared: set[str], **overrides) -> dict:
    """Parameters for one notebook: study settings, per-notebook overrides, CLI overrides,
    restricted to what the notebook declares."""
    params = {k: v for k, v in cfg.items() if k != "notebooks"}
    params.update((cfg.get("notebooks") or {}).get(notebook, {}) or {})
    params.update({k: v for k, v in overrides.items() if v is not None})
    return {k: v for k, v in params.items() if k in declared}
