"""``DATA_CARD.md`` of the Mini-SD benchmark, written from what generation recorded.

Every number comes from a file in ``data/mini-sd/``: ``runs.jsonl`` (wall time and machine of
each stage), ``classifier.json``, ``base-trainlog.json``, ``reliability.json``, the tables
``sd.csv`` / ``constructed-sd.csv`` and ``construction-sd.json``.  Parts not generated yet are
listed as such.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.minisd.constants import ARCH_SEED, CONFIG, MINI_SD_DIR, N_LABELS, N_RELIABILITY, STAGES
from autobuild_lib.benchmarks.pipeline.atomic import atomic_write
from autobuild_lib.benchmarks.pipeline.workunits import folder_lock

__all__ = ["write_card"]

REGENERATE = "python -m autobuild_lib generate mini-sd --n-jobs 2"


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _runs(root: Path) -> list[dict]:
    path = root / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _stage_table(runs: list[dict]) -> str:
    wall: dict[str, float] = {}
    jobs: dict[str, int] = {}
    for r in runs:
        wall[r["stage"]] = wall.get(r["stage"], 0.0) + r["wall_s"]
        jobs[r["stage"]] = r.get("n_jobs", 1)
        if r["stage"] == "base" and "train_wall_s_total" in r:
            wall["base"] = r["train_wall_s_total"]
    lines = ["| stage | wall time | worker processes |", "|---|---|---|"]
    for s in STAGES:
        lines.append(f"| {s} | {wall[s] / 60:.1f} min | {jobs[s]} |" if s in wall else f"| {s} | not run | |")
    cpu_h = sum(wall[s] * jobs.get(s, 1) for s in wall) / 3600
    return "\n".join(lines) + f"\n\nTotal: about {cpu_h:.2f} CPU-hours (wall time x worker processes)."


def _label_summary(frame: pd.DataFrame) -> str:
    d = frame[["fid", "hole_mse", "flops", "n_params", "finetune_s", "eval_s"]].describe().T
    return d[["count", "mean", "std", "min", "50%", "max"]].round(3).to_markdown()


def write_card(root: str | Path = MINI_SD_DIR) -> Path:
    """Rewrite ``root/DATA_CARD.md`` (atomically) from the recorded files."""
    root = Path(root)
    runs = _runs(root)
    cfg = CONFIG
    parts = [
        "# Mini-SD: a CPU-sized inpainting diffusion benchmark for Sec. 5.3 / 7.9-7.10",
        "",
        "**What it is.** A pixel-space denoising-diffusion inpainting U-Net with the topology of SD v1.4's "
        "U-Net (`autobuild_lib.benchmarks.minisd.unet`: 4 input stages, middle stage, 4 output stages, long skips, "
        "ResConv / Attention / Downsample / Upsample blocks), on Fashion-MNIST (28x28 padded to 32x32, "
        "[-1, 1]). The conditioning input is `[x_t, mask, masked image]` as in SD's inpainting U-Net. "
        f"Channels are the SD space's channels / {cfg.divisor} (C_m 128/192/256 -> "
        f"{128 // cfg.divisor}/{192 // cfg.divisor}/{256 // cfg.divisor}).",
        "",
        f"**Base model** (the SD v1.4 analogue: C_m max, multipliers [1, 2, 3, 4], every block): "
        f"{cfg.base_steps} AdamW steps, lr {cfg.base_lr}, batch {cfg.batch}, random rectangle masks, "
        "DDPM linear schedule (T = 1000).",
        "",
        f"**Variants**: inherit the base weights (channel slicing; extra channels and blocks keep a seeded "
        f"fresh initialisation), then {cfg.ft_steps} fine-tuning steps (lr {cfg.ft_lr}, batch {cfg.batch}; "
        "the paper fine-tunes 20k steps).",
        "",
        f"**Label: FID-FMNIST** (lower is better): torchmetrics' FID with the features (128-d) of the "
        f"study's own Fashion-MNIST classifier, between the {cfg.n_eval} held-out test images inpainted "
        f"with 4 fixed box masks ({cfg.ddim_steps} deterministic DDIM steps from fixed noise, known pixels "
        "pasted back) and the same images unmasked. `hole_mse` is the mean squared error inside the holes. "
        "`flops` (MFLOPs, one 32x32 image, torch's FlopCounterMode) and `n_params` (M) are exact.",
        "",
        f"**Architectures**: `sd.csv` holds {N_LABELS['sd']} of the `sd` space: the base, then "
        f"`SDSpace.sample(np.random.default_rng([{ARCH_SEED}, i]))`, duplicates skipped.",
        "",
        f"Regenerate: `{REGENERATE}` (resumable; each stage skips what is done).",
        "",
        "## Classifier",
    ]
    clf = _read(root / "classifier.json")
    parts.append("not trained yet" if clf is None else
                 f"FeatureNet, {clf['epochs']} epochs on the train split: **test accuracy "
                 f"{100 * clf['test_accuracy']:.2f} %**, trained in {clf['train_s']:.0f} s.")
    parts += ["", "## Base model"]
    log = _read(root / "base-trainlog.json")
    if log:
        loss = np.array([r["loss"] for r in log])
        marks = [s for s in (100, 1000, 2000, 3000, 4000, 5000, len(loss)) if s <= len(loss)]
        parts.append(f"{len(loss)} steps in {log[-1]['wall_s'] / 60:.1f} min. Epsilon loss (mean of the "
                     "100 steps up to): " + ", ".join(f"step {s}: {loss[max(0, s - 100):s].mean():.4f}"
                                                       for s in marks))
    else:
        parts.append("not trained yet")
    parts += ["", "## Label reliability", ""]
    rel = _read(root / "reliability.json")
    if rel is None:
        parts.append(f"not measured yet ({N_RELIABILITY} variants fine-tuned with two seeds).")
    else:
        fa, fb = np.array(rel["fid_seed_a"]), np.array(rel["fid_seed_b"])
        parts += [
            f"The first {rel['n']} label architectures fine-tuned with seeds {rel['seeds']}: "
            f"**SRCC of FID between the runs {rel['srcc_fid']:.3f}** (bar: >= 0.7), SRCC of hole MSE "
            f"{rel['srcc_hole_mse']:.3f}; run-to-run |dFID| mean {rel['run_to_run_abs_diff_mean']:.2f}, "
            f"max {rel['run_to_run_abs_diff_max']:.2f}; FID range over these {rel['n']}: "
            f"{fa.min():.2f}-{fa.max():.2f} (seed a), {fb.min():.2f}-{fb.max():.2f} (seed b).",
        ]
    parts += ["", "## Labels", ""]
    if (root / "sd.csv").exists():
        frame = pd.read_csv(root / "sd.csv")
        base_fid = float(frame["fid"].iloc[0])
        parts += [f"`sd.csv`: {len(frame)} variants (row 0 is the base, FID {base_fid:.2f}).", "",
                  _label_summary(frame)]
        if rel is not None:
            spread = float(np.abs(np.array(rel["fid_seed_a"]) - np.array(rel["fid_seed_b"])).mean())
            parts += ["", f"FID range of the {len(frame)}: {frame['fid'].max() - frame['fid'].min():.2f}, "
                          f"against a mean run-to-run difference of {spread:.2f}."]
    else:
        parts.append("`sd.csv` not generated yet.")
    parts += ["", "## Constructions (Sec. 5.3)", ""]
    if (root / "constructed-sd.csv").exists():
        c = pd.read_csv(root / "constructed-sd.csv")
        parts.append(c[["method", "rank", "arch", "score", "fid", "flops"]].round(3).to_markdown(index=False))
    else:
        parts.append("not built yet.")
    parts += ["", "## Sec. 7.10: the hardware space", ""]
    if (root / "sd-hw.csv").exists():
        hw = pd.read_csv(root / "sd-hw.csv")
        parts += [f"`sd-hw.csv`: {len(hw)} variants of `sd-hw`, fine-tuned {round(1.5 * cfg.ft_steps)} steps "
                  "(1.5x, as the paper's 30k against 20k).", "", _label_summary(hw)]
        for name, title in (("latency-sd-hw.json", "first"), ("latency-sd-hw-joint.json", "joint (with the constructions)")):
            lat = _read(root / name)
            if lat is not None:
                parts += ["", f"CPU latency, {title} measurement: {lat['rounds']} shuffled rounds, median per "
                              f"variant; mean pairwise SRCC between rounds {lat['round_srcc_mean']:.3f} "
                              f"(min {lat['round_srcc_min']:.3f})."]
        if (root / "constructed-sd-hw.csv").exists():
            c = pd.read_csv(root / "constructed-sd-hw.csv")
            parts += ["", c[["metric", "method", "rank", "fid", "latency_cpu", "flops", "n_params"]]
                      .round(3).to_markdown(index=False)]
    else:
        parts.append("not generated yet.")
    parts += ["", "## Generation runs", "", _stage_table(runs) if runs else "none recorded yet"]
    if runs:
        m = runs[-1]["machine"]
        parts += ["", f"Machine: {m['cpu']}, {m['n_cpus']} CPUs, {m['platform']}, Python {m['python']}, "
                      f"torch {m['torch']}, one torch thread per worker."]
    out = root / "DATA_CARD.md"
    with folder_lock(root):  # another generator may be writing the card
        with atomic_write(out) as tmp:
            tmp.write_text("\n".join(parts) + "\n")
    return out
