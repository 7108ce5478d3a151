"""A small stand-in for the Mini-SD benchmark folder, for tests and notebook smoke runs.

``write_fixture_mini_sd(root)`` writes the files ``data/mini-sd`` holds, in the same format.  The
Sec. 5.3 files are copied from ``real`` when that folder has them all (so the chapter-08 smoke run
sees the committed benchmark); otherwise they come from running the real ``constructions`` stage on
an *untrained* base U-Net and classifier with 20 architectures whose FIDs are synthetic (a
deterministic function of the architecture).  The Sec. 7.10 files always come from the real stages
on that untrained base, with 12 architectures.  Test scaffolding, never study data.  Point a
notebook at it with ``AUTOBUILD_MINI_SD_DIR=<root>``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autobuild_lib.manifest import write_manifest
from autobuild_lib.minisd import FeatureNet, MiniSDConfig, MiniUNet
from autobuild_lib.minisd import generate as gen
from autobuild_lib.minisd.data import CONSTRUCTION_FILES, SD_FILES
from autobuild_lib.spaces import get_space
from autobuild_lib.training import TrainConfig

TINY = MiniSDConfig(ft_steps=1, batch=2, n_eval=16, ddim_steps=1)


def synthetic_fid(arch) -> float:
    return float(arch.c_m / 64 + sum(arch.multipliers) + 0.3 * sum(map(sum, arch.outputs)))


def write_fixture_mini_sd(root: str | Path, n: int = 20, real: Path | None = None) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sp = get_space("sd")
    torch.manual_seed(0)
    torch.save(MiniUNet(sp.base_arch(), TINY.divisor).state_dict(), root / "base.pt")
    torch.save(FeatureNet().state_dict(), root / "classifier.pt")
    small = dict(seeds=(0,), config=TrainConfig(epochs=2, n_layers=6), max_archs=300)
    sd_files = SD_FILES + CONSTRUCTION_FILES
    if real is not None and all((real / f).is_file() for f in sd_files):
        for f in sd_files:
            shutil.copy(real / f, root / f)
    else:
        _synthetic_sd_part(root, n, small)
    # Sec. 7.10: real stages on 12 hardware-space archs (FIDs from the untrained base), few latency rounds
    labels, rounds = gen.N_LABELS["sd-hw"], (gen.LATENCY_ROUNDS, gen.LATENCY_REPEATS)
    try:
        gen.N_LABELS["sd-hw"], gen.LATENCY_ROUNDS, gen.LATENCY_REPEATS = 12, 2, 2
        gen._labels("sd-hw", root, gen.hw_config(TINY), 1, False)
        gen._hw_latency(root, TINY, False)
        gen._hw_constructions(root, TINY, 1, False, ensemble={**small, "n_folds": 3})
    finally:
        gen.N_LABELS["sd-hw"], (gen.LATENCY_ROUNDS, gen.LATENCY_REPEATS) = labels, rounds
    gen._worker_state.cache_clear()
    write_manifest(root)
    return root


def _synthetic_sd_part(root: Path, n: int, small: dict) -> None:
    sp = get_space("sd")
    archs = gen.benchmark_archs("sd", n)
    fid = np.array([synthetic_fid(a) for a in archs])
    pd.DataFrame({"arch": [sp.to_string(a) for a in archs], "fid": fid, "hole_mse": fid / 20,
                  "flops": [a.c_m / 10.0 for a in archs], "n_params": [a.c_m / 1000 for a in archs],
                  "finetune_s": 1.0, "eval_s": 1.0}).to_csv(root / "sd.csv", index=False)
    k = gen.N_RELIABILITY
    (root / "reliability.json").write_text(json.dumps({
        "n": k, "seeds": [0, 1], "srcc_fid": 0.9, "srcc_hole_mse": 0.8, "fid_seed_a": fid[:k].tolist(),
        "fid_seed_b": (fid[:k] + 0.1 * np.arange(k) % 0.3).tolist(), "run_to_run_abs_diff_mean": 0.1,
        "run_to_run_abs_diff_max": 0.2, "fid_range_seed_a": [float(fid[:k].min()), float(fid[:k].max())]}))
    (root / "classifier.json").write_text(json.dumps({"test_accuracy": 0.1, "epochs": 0, "train_s": 0.0,
                                                      "num_features": 128}))
    gen._constructions("sd", root, TINY, 1, False, ensemble=small)
