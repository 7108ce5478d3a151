"""Load the committed Mini-SD benchmark for the inpainting chapters (checked against its manifest).

``AUTOBUILD_MINI_SD_DIR`` points elsewhere (the tests use this for a small fixture).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..manifest import verify_file
from .card import REGENERATE
from .generate import MINI_SD_DIR

__all__ = ["MiniSD", "mini_sd_dir", "load_mini_sd", "SD_FILES", "CONSTRUCTION_FILES"]

SD_FILES = ("sd.csv", "reliability.json", "classifier.json")
CONSTRUCTION_FILES = ("constructed-sd.csv", "construction-sd.json", "module-scores-sd.csv", "fe-scores-sd.csv",
                      "samples-sd.npz")


def mini_sd_dir() -> Path:
    env = os.environ.get("AUTOBUILD_MINI_SD_DIR")
    return Path(env) if env else MINI_SD_DIR


@dataclass
class MiniSD:
    """The Sec. 5.3 / 7.9 tables: the labelled variants, reliability, and the constructions."""

    root: Path
    labels: pd.DataFrame           # sd.csv: arch, fid, hole_mse, flops, n_params, ...
    reliability: dict
    classifier: dict
    constructed: pd.DataFrame      # constructed-sd.csv: method, rank, arch, score, fid, ...
    construction: dict             # picks, k_used, every member's held-out SRCCs
    module_scores: pd.DataFrame
    fe_scores: pd.DataFrame
    samples: dict[str, np.ndarray]


def load_mini_sd(root: str | Path | None = None, verify: bool = True) -> MiniSD:
    """Every file of the Sec. 5.3 experiment; raises :class:`~autobuild_lib.study.DataMissing`
    naming the missing files and how to get them."""
    from ..study import DataMissing

    root = Path(root) if root is not None else mini_sd_dir()
    names = SD_FILES + CONSTRUCTION_FILES
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataMissing(f"the Mini-SD benchmark is incomplete in {root}: missing {', '.join(missing)}. "
                          f"Restore the committed files with `git checkout -- {root}` or generate them with "
                          f"`{REGENERATE}` (hours on a 2-core CPU; see data/mini-sd/DATA_CARD.md).")
    if verify:
        for n in names:
            verify_file(root / n, root, REGENERATE)
    with np.load(root / "samples-sd.npz") as z:
        samples = {k: z[k] for k in z.files}
    return MiniSD(root, pd.read_csv(root / "sd.csv"), json.loads((root / "reliability.json").read_text()),
                  json.loads((root / "classifier.json").read_text()), pd.read_csv(root / "constructed-sd.csv"),
                  json.loads((root / "construction-sd.json").read_text()),
                  pd.read_csv(root / "module-scores-sd.csv"), pd.read_csv(root / "fe-scores-sd.csv"), samples)
