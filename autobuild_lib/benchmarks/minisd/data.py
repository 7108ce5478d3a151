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

from autobuild_lib.benchmarks.minisd.card import REGENERATE
from autobuild_lib.benchmarks.minisd.constants import MINI_SD_DIR
from autobuild_lib.benchmarks.pipeline.manifest import verify_file
from autobuild_lib.benchmarks.pipeline.missing import DataMissing

__all__ = ["MiniSD", "MiniSDHW", "mini_sd_dir", "load_mini_sd", "load_mini_sd_hw", "SD_FILES", "CONSTRUCTION_FILES",
           "HW_FILES"]

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
    """Every file of the Sec. 5.3 experiment; raises :class:`~autobuild_lib.benchmarks.pipeline.missing.DataMissing`
    naming the missing files and how to get them."""

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


HW_FILES = ("sd-hw.csv", "latency-sd-hw.json", "latency-sd-hw-joint.json", "construction-sd-hw.json",
            "constructed-sd-hw.csv")


@dataclass
class MiniSDHW:
    """The Sec. 7.10 tables: the 90 labelled hardware-space variants and the per-metric constructions."""

    root: Path
    labels: pd.DataFrame        # sd-hw.csv + latency_cpu (the joint measurement) + latency_first
    constructed: pd.DataFrame   # constructed-sd-hw.csv: metric, method, rank, arch, score, fid, ...
    construction: dict          # per metric: picks, k_used, ensemble SRCC summaries
    latency: dict               # round agreement of both latency measurements


def load_mini_sd_hw(root: str | Path | None = None, verify: bool = True) -> MiniSDHW:
    """Every file of the Sec. 7.10 experiment (latency of the 90 from the joint measurement with
    the constructed archs); raises :class:`~autobuild_lib.benchmarks.pipeline.missing.DataMissing` when incomplete."""

    root = Path(root) if root is not None else mini_sd_dir()
    missing = [n for n in HW_FILES if not (root / n).is_file()]
    if missing:
        raise DataMissing(f"the Sec. 7.10 part of the Mini-SD benchmark is incomplete in {root}: missing "
                          f"{', '.join(missing)}. Restore the committed files with `git checkout -- {root}` or "
                          f"generate them with `{REGENERATE} --stages hw_labels,hw_latency,hw_constructions` "
                          "(hours on a 2-core CPU; see data/mini-sd/DATA_CARD.md).")
    if verify:
        for n in HW_FILES:
            verify_file(root / n, root, REGENERATE)
    first = json.loads((root / "latency-sd-hw.json").read_text())
    joint = json.loads((root / "latency-sd-hw-joint.json").read_text())
    labels = pd.read_csv(root / "sd-hw.csv")
    labels["latency_first"] = labels["arch"].map(first["latency_cpu"])
    labels["latency_cpu"] = labels["arch"].map(joint["latency_cpu"])
    info = {k: {kk: v for kk, v in d.items() if kk != "latency_cpu"} for k, d in (("first", first), ("joint", joint))}
    return MiniSDHW(root, labels, pd.read_csv(root / "constructed-sd-hw.csv"),
                    json.loads((root / "construction-sd-hw.json").read_text()), info)
