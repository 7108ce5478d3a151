"""Latency measurement that survives a noisy (virtual) machine: shuffled rounds, medians.

A single pass over many models confounds each model's latency with the machine's state at that
moment (on the study's VMs timing drifts 10-20 % within seconds).  :func:`measure_rounds` times every
model in several rounds, each in a fresh random order, and keeps per round the median of
``repeats`` timed calls; :func:`summarise` takes the median over rounds and reports how well rounds
agree (mean pairwise SRCC between rounds), which is the measurement's own reliability.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from itertools import combinations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

__all__ = ["measure_rounds", "summarise"]


def measure_rounds(builders: Mapping[str, Callable[[], Callable[[], object]]], rounds: int = 5,
                   repeats: int = 15, warmup: int = 3, seed: int = 0, keep_built: bool = True,
                   progress: bool = False) -> pd.DataFrame:
    """Time ``fn()`` for every ``key -> builder`` (``builder()`` returns the zero-argument ``fn``).

    Returns one row per (key, round): ``key``, ``round``, ``ms`` (median of ``repeats`` calls after
    ``warmup`` untimed ones), on one torch thread, under ``torch.no_grad``.  ``keep_built`` builds
    every ``fn`` once (else again in every round, for models too large to keep).
    """
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, repeats >= 1, warmup >= 0; got {rounds}, {repeats}, {warmup}")
    if not builders:
        raise ValueError("no models to time")
    keys = list(builders)
    built = {k: builders[k]() for k in keys} if keep_built else {}
    rng = np.random.default_rng(seed)
    rows = []
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad(), tqdm(total=rounds * len(keys), desc="latency", disable=not progress) as bar:
            for r in range(rounds):
                for i in rng.permutation(len(keys)):
                    key = keys[i]
                    fn = built[key] if keep_built else builders[key]()
                    for _ in range(warmup):
                        fn()
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t0)
                    rows.append({"key": key, "round": r, "ms": 1000.0 * float(np.median(times))})
                    bar.update(1)
    finally:
        torch.set_num_threads(old)
    return pd.DataFrame(rows)


def summarise(times: pd.DataFrame) -> tuple[pd.Series, dict]:
    """Per-key median over rounds (ms), and ``{"rounds", "round_srcc_mean", "round_srcc_min"}``."""
    wide = times.pivot(index="key", columns="round", values="ms")
    srcc = [spearmanr(wide[a], wide[b])[0] for a, b in combinations(wide.columns, 2)]
    info = {"rounds": int(wide.shape[1]),
            "round_srcc_mean": float(np.mean(srcc)) if srcc else float("nan"),
            "round_srcc_min": float(np.min(srcc)) if srcc else float("nan")}
    return wide.median(axis=1), info
