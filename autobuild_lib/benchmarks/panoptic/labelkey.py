"""Which configuration a Mini-Panoptic label was measured under (issue 15).

Label shards live in ``work/<kind>-<digest>/``: the digest covers every field of
:class:`~.train.PanopticConfig` the label kind depends on (:data:`~.train.SUPERNET_FIELDS` +
:data:`~.train.LABEL_FIELDS`) and the sha256 of ``supernet.pt``, so a run with other mosaic counts
(or another supernet) never reads the shards of an earlier one.  :func:`check_supernet` refuses a
supernet trained with other supernet fields; the label fields may change without retraining it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from autobuild_lib.benchmarks.panoptic.train import LABEL_FIELDS, SUPERNET_FIELDS, PanopticConfig
from autobuild_lib.benchmarks.pipeline.manifest import sha256_file

__all__ = ["check_supernet", "label_config", "label_work"]


def check_supernet(stored: dict, cfg: PanopticConfig, path: Path) -> None:
    """Refuse a supernet (its stored configuration ``stored``, from ``path``) trained with other
    :data:`~.train.SUPERNET_FIELDS` than ``cfg``; the label fields (mosaic counts, fine-tuning) may differ."""
    diff = [f"{k} {stored.get(k)!r} (now {getattr(cfg, k)!r})" for k in SUPERNET_FIELDS if stored.get(k) != getattr(cfg, k)]
    if diff:
        raise ValueError(f"{path} was trained with another supernet configuration: {', '.join(diff)}; restore the "
                         f"committed one with `git checkout -- {path}`, or delete it and rerun the 'supernet' stage")


def label_config(root: Path, cfg: PanopticConfig, kind: str) -> dict:
    """Everything a ``kind`` (pseudo / full) label depends on: the configuration fields
    (:data:`~.train.SUPERNET_FIELDS` + :data:`~.train.LABEL_FIELDS` ``[kind]``) and the sha256 of ``supernet.pt``."""
    if kind not in LABEL_FIELDS:
        raise ValueError(f"unknown label kind {kind!r}; choose from {list(LABEL_FIELDS)}")
    path = root / "supernet.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the 'supernet' stage first")
    return {"kind": kind, "config": cfg.fields(SUPERNET_FIELDS + LABEL_FIELDS[kind]),
            "supernet_sha256": sha256_file(path)}


def label_work(root: Path, cfg: PanopticConfig, kind: str) -> Path:
    """The shard folder ``root/work/<kind>-<digest>`` of ``kind`` labels, the digest being the first
    12 hex digits of the sha256 of :func:`label_config`: shards measured under another label
    configuration (other mosaic counts, another supernet) are never read."""
    text = json.dumps(label_config(root, cfg, kind), sort_keys=True)
    return root / "work" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
