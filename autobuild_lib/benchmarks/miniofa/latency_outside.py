"""The latency predictor's error on architectures outside the benchmark (paper Sec. 4).

Chapters 05 and 06 take the latency of constructed and searched architectures from the k-GNN
latency predictor (``latency-<space>.pt``), as the paper does.  Its test error on the benchmark's
own held-out split says little about architectures that a construction picks from the extremes of
the space, so :func:`measure_outside` measures such architectures with the space's own latency
protocol (same rounds, passes and warm-up as ``latency-protocol-<space>.json``, on the same CPU
model as its rounds, in the same exclusive window) and compares the predictor with them.

Units go to ``work/<space>/latency_<tag>/`` (resumable, like the rounds); the figures to
``latency-<tag>-<space>.json``: n, MAE (ms), MAPE (%), SRCC, and the measurement's own split-half
SRCC.
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from autobuild_lib.benchmarks.miniofa.card import write_card
from autobuild_lib.benchmarks.miniofa.constants import MANIFEST_EXCLUDE, MINI_OFA_DIR, load_latency_model
from autobuild_lib.benchmarks.miniofa.latency_rounds import load_protocol, rounds_store, run_rounds, summarise_rounds
from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
from autobuild_lib.benchmarks.pipeline.stages import run_stages

__all__ = ["measure_outside", "load_outside"]


def _rounds_cpu(space: str, root: Path) -> str | None:
    rows = rounds_store(root, space).rows().values()
    return next((r["cpu_model"] for r in rows), None)


def measure_outside(space: str, archs: Sequence[str], root: str | Path = MINI_OFA_DIR, tag: str = "constructed",
                    source: str = "", progress: bool = True) -> dict:
    """Measure ``archs`` (canonical strings, none of them in the benchmark) with the space's latency
    protocol, and the latency predictor's MAE / MAPE / SRCC on them -> ``latency-<tag>-<space>.json``.

    Run as the benchmark's stage ``latency_<tag>``: timed and logged to ``runs.jsonl``, then the
    data card and the manifest are rewritten.  Refuses when the space's rounds were measured on
    another CPU model: the comparison would mix two machines.  Returns the figures (no lists).
    """
    root = Path(root)
    stage = f"latency_{tag}"
    run = functools.partial(_measure, space, list(archs), root, tag, source, progress)
    return run_stages(root, [stage], [stage], {stage: run}, 1, write_card,
                      manifest=lambda r: write_manifest(r, exclude=MANIFEST_EXCLUDE))[stage]


def _measure(space: str, archs: list[str], root: Path, tag: str, source: str, progress: bool) -> dict:
    if len(archs) < 10 or len(set(archs)) != len(archs):
        raise ValueError(f"need at least 10 distinct architectures, got {len(archs)} ({len(set(archs))} distinct)")
    proto = load_protocol(space, root)
    if proto is None:
        raise FileNotFoundError(f"latency-protocol-{space}.json not found: run the 'latency_pilot' stage of {space} first")
    store = rounds_store(root, space, f"latency_{tag}")
    t0 = time.perf_counter()
    rep = run_rounds(space, archs, store, proto["rounds"], proto["passes"], proto["warmup"], progress=progress)
    measured, info = summarise_rounds(list(store.rows().values()), archs, proto["rounds"])
    ref_cpu = _rounds_cpu(space, root)
    if ref_cpu is not None and ref_cpu != info["cpu_model"]:
        raise ValueError(f"the {space} rounds ran on {ref_cpu!r}, these on {info['cpu_model']!r}: "
                         "measure the outside architectures on the machine model of the rounds")
    model, record = load_latency_model(space, root)
    pred = np.asarray(model.predict(list(measured["arch"])), float)
    true = measured["latency_cpu"].to_numpy(float)
    out = {"space": space, "tag": tag, "source": source, "n": len(archs),
           "mae_ms": float(np.mean(np.abs(pred - true))),
           "mape_pct": float(100 * np.mean(np.abs(pred - true) / true)),
           "srcc": float(spearmanr(pred, true).statistic),
           "measured_ms": {"min": float(true.min()), "median": float(np.median(true)), "max": float(true.max())},
           "benchmark_test_mae_ms": record.get("test_mae_ms"), "benchmark_test_srcc": record.get("test_srcc"),
           "srcc_halves": info["srcc_halves"], "rounds": proto["rounds"], "passes": proto["passes"],
           "cpu_model": info["cpu_model"], "wall_s": time.perf_counter() - t0, "units_now": rep["units_now"],
           "archs": list(archs), "measured": [float(v) for v in true], "predicted": [float(v) for v in pred]}
    dest = root / f"latency-{tag}-{space}.json"
    tmp = root / f".partial-{dest.name}.{os.getpid()}"
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, dest)
    return {k: v for k, v in out.items() if k not in ("archs", "measured", "predicted")}


def load_outside(space: str, root: str | Path = MINI_OFA_DIR, tag: str = "constructed") -> dict | None:
    """The record :func:`measure_outside` wrote for ``space`` (None when it has not run)."""
    path = Path(root) / f"latency-{tag}-{space}.json"
    return json.loads(path.read_text()) if path.exists() else None
