"""Label reliability of a Mini-OFA supernet (issue "Mini-OFA benchmark", "Label reliability comes first").

``measure_reliability`` evaluates ``n_archs`` random subnets (``OFASpace.sample`` with
generators seeded ``(seed, i)``) after BN recalibration, splits the evaluation canvases into
two fixed disjoint halves (each holding half of the held-out train canvases and half of the
test canvases) and reports:

* ``srcc_split_acc`` / ``srcc_split_ce``: Spearman correlation over the subnets between
  accuracy (cross-entropy) on half A and on half B -- the bar is >= 0.9 for accuracy;
* ``srcc_acc_depth``: Spearman correlation of full-data accuracy with total depth (bar >= 0.3),
  plus ``srcc_acc_resolution`` and ``srcc_ce_depth`` for context;
* mean / std / min / max / range of accuracy (%), and one row per subnet;
* ``correct`` / ``nll``: per-subnet, per-image arrays ``[n_archs, n_eval]`` and the two halves'
  indices, so the reliability of smaller evaluation sets can be computed without re-evaluating.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from autobuild_lib.benchmarks.miniofa.supernet import MiniData, evaluate_subnet
from autobuild_lib.core.spaces.ofa import OFASpace

__all__ = ["split_halves", "sample_archs", "measure_reliability", "split_half_by_size"]


def split_halves(data: MiniData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed disjoint halves of the evaluation indices, stratified by source (held-out / test)."""
    src = data.eval_source.numpy() if isinstance(data.eval_source, torch.Tensor) else np.asarray(data.eval_source)
    rng = np.random.default_rng([seed, 7])
    a, b = [], []
    for s in np.unique(src):
        idx = rng.permutation(np.flatnonzero(src == s))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def sample_archs(space: OFASpace, n: int, seed: int = 0) -> list:
    """``n`` architectures, the i-th from ``space.sample(np.random.default_rng([seed, i]))``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [space.sample(np.random.default_rng([seed, i])) for i in range(n)]


def _srcc(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def measure_reliability(net: nn.Module, space: OFASpace, data: MiniData, n_archs: int = 40, seed: int = 0,
                        progress: bool = True, on_row=None) -> dict:
    """Split-half and depth reliability of the accuracy labels of ``net`` (see module docstring).

    ``on_row(row)`` is called after each subnet (e.g. to log partial results).
    """
    from tqdm.auto import tqdm

    if data.eval_x.shape[0] < 2:
        raise ValueError("need at least 2 evaluation canvases to split")
    ia, ib = split_halves(data, seed)
    rows, correct, nll = [], [], []
    t0 = time.perf_counter()
    for arch in tqdm(sample_archs(space, n_archs, seed), desc=f"reliability {space.name}", disable=not progress):
        r = evaluate_subnet(net, space, arch, data)
        c, l = r["correct"], r["nll"]
        correct.append(c)
        nll.append(l.astype(np.float32))
        rows.append({"arch": space.to_string(arch), "depth": arch.n_layers, "resolution": arch.resolution,
                     "acc": r["acc"], "ce": r["ce"],
                     "acc_a": 100.0 * float(c[ia].mean()), "acc_b": 100.0 * float(c[ib].mean()),
                     "ce_a": float(l[ia].mean()), "ce_b": float(l[ib].mean())})
        if on_row is not None:
            on_row(rows[-1])
    col = {k: np.array([row[k] for row in rows]) for k in rows[0] if k != "arch"}
    acc = col["acc"]
    return {
        "n_archs": n_archs,
        "n_eval": int(data.eval_x.shape[0]),
        "n_half": (int(len(ia)), int(len(ib))),
        "srcc_split_acc": _srcc(col["acc_a"], col["acc_b"]),
        "srcc_split_ce": _srcc(col["ce_a"], col["ce_b"]),
        "srcc_acc_depth": _srcc(acc, col["depth"]),
        "srcc_ce_depth": _srcc(-col["ce"], col["depth"]),
        "srcc_acc_resolution": _srcc(acc, col["resolution"]),
        "acc_mean": float(acc.mean()),
        "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "acc_min": float(acc.min()),
        "acc_max": float(acc.max()),
        "acc_range": float(np.ptp(acc)),
        "ce_mean": float(col["ce"].mean()),
        "eval_wall_s": time.perf_counter() - t0,
        "rows": rows,
        "correct": np.stack(correct),
        "nll": np.stack(nll),
        "halves": (ia, ib),
    }


def split_half_by_size(correct: np.ndarray, halves: tuple[np.ndarray, np.ndarray], sizes, n_draws: int = 20,
                       seed: int = 0):
    """Split-half SRCC of accuracy for smaller evaluation sets, from the per-image results.

    For each total size ``n`` in ``sizes``, ``n_draws`` times: draw ``n // 2`` images from each
    half without replacement, compute each subnet's accuracy on both draws and the Spearman
    correlation between them.  Returns a frame ``n_eval, srcc_mean, srcc_min, srcc_q10``: what the
    split-half check would give if the labels were measured on ``n`` images.
    """
    import pandas as pd

    correct = np.asarray(correct, dtype=np.float64)
    ia, ib = (np.asarray(h) for h in halves)
    rng = np.random.default_rng([seed, 11])
    out = []
    for n in sizes:
        k = int(n) // 2
        if not 1 <= k <= min(len(ia), len(ib)):
            raise ValueError(f"size {n} needs 1..{min(len(ia), len(ib))} images per half")
        vals = [_srcc(correct[:, rng.choice(ia, k, replace=False)].mean(1),
                      correct[:, rng.choice(ib, k, replace=False)].mean(1)) for _ in range(n_draws)]
        v = np.asarray(vals)
        out.append({"n_eval": 2 * k, "srcc_mean": float(np.nanmean(v)), "srcc_min": float(np.nanmin(v)),
                    "srcc_q10": float(np.nanquantile(v, 0.1))})
    return pd.DataFrame(out)
