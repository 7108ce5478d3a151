"""How many validation mosaics a reliable pseudo label needs (issue 7: "label reliability first").

PQ is not a mean over images, but its counts are: per class, IoU sum, TP, FP and FN add up over
images (:func:`~.mosaics.pq_counts` with ``per_image=True``).  So from the per-image counts of a
few architectures on a large set of mosaics, the split-half SRCC of the pseudo label can be
computed for any evaluation-set size by drawing disjoint halves -- the same analysis as the
Mini-OFA pilot's :func:`autobuild_lib.benchmarks.miniofa.reliability.split_half_by_size`.  Two cheaper,
continuous alternatives are measured beside PQ from the same forward passes: mIoU of the
semantic map (per-class intersection and union add up over images) and the pixel cross-entropy.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from autobuild_lib.benchmarks.panoptic.constants import RELIABILITY_BAR
from autobuild_lib.benchmarks.panoptic.model import panoptic_maps
from autobuild_lib.benchmarks.panoptic.mosaics import N_CLASSES, Mosaics, pq_counts, pq_from_counts

__all__ = ["image_stats", "label_from_stats", "split_half_curve", "spearman_brown_size"]


@torch.no_grad()
def image_stats(model: torch.nn.Module, m: Mosaics, min_area: int = 16, batch_size: int = 250) -> dict:
    """Per-image ``pq`` counts ``[N, 4, 12]``, semantic ``iou`` counts ``[N, 2, 12]`` (intersection,
    union) and mean pixel cross-entropy ``ce`` ``[N]`` of ``model`` on ``m``."""
    model.eval()
    pq, iou, ce = [], [], []
    for i in range(0, len(m), batch_size):
        logits = model(m.images[i:i + batch_size])
        sem_t, ins_t = m.semantic[i:i + batch_size].long(), m.instance[i:i + batch_size].long()
        sem, ins = panoptic_maps(logits, min_area)
        pq.append(pq_counts(sem, ins, sem_t, ins_t, per_image=True).astype(np.float32))
        pred = F.one_hot(logits.argmax(1), N_CLASSES).bool()
        true = F.one_hot(sem_t, N_CLASSES).bool()
        iou.append(torch.stack([(pred & true).sum((1, 2)), (pred | true).sum((1, 2))], 1).numpy().astype(np.float32))
        ce.append(F.cross_entropy(logits, sem_t, reduction="none").mean((1, 2)).numpy())
    return {"pq": np.concatenate(pq), "iou": np.concatenate(iou), "ce": np.concatenate(ce)}


def label_from_stats(kind: str, stats: np.ndarray) -> float:
    """The label of summed stats: ``pq`` (%), ``miou`` (%), ``neg_ce`` (higher is better)."""
    if kind == "pq":
        return 100.0 * pq_from_counts(stats.sum(0))
    if kind == "miou":
        inter, union = stats.sum(0)
        seen = union > 0
        return 100.0 * float(np.mean(inter[seen] / union[seen]))
    if kind == "neg_ce":
        return -float(stats.mean())
    raise ValueError(f"unknown label kind {kind!r}; choose pq, miou or neg_ce")


def split_half_curve(stats: Sequence[dict], sizes: Sequence[int], n_draws: int = 20, seed: int = 0,
                     kinds: Sequence[str] = ("pq", "miou", "neg_ce")) -> pd.DataFrame:
    """Split-half SRCC over architectures for evaluation sets of ``sizes`` images (both halves).

    ``stats``: one :func:`image_stats` result per architecture, on the same mosaics.  Each draw
    takes two disjoint random halves of ``size // 2`` images.  Returns ``kind, n_eval,
    srcc_mean, srcc_q10``.
    """
    n = len(stats[0]["ce"])
    key = {"pq": "pq", "miou": "iou", "neg_ce": "ce"}
    rng = np.random.default_rng([seed, 7])
    rows = []
    for size in sizes:
        k = int(size) // 2
        if not 1 <= k <= n // 2:
            raise ValueError(f"size {size} needs 2..{n} images (have {n})")
        draws = [rng.permutation(n)[:2 * k] for _ in range(n_draws)]
        for kind in kinds:
            v = []
            for d in draws:
                a = [label_from_stats(kind, s[key[kind]][d[:k]]) for s in stats]
                b = [label_from_stats(kind, s[key[kind]][d[k:]]) for s in stats]
                v.append(spearmanr(a, b)[0])
            v = np.asarray(v)
            rows.append({"kind": kind, "n_eval": 2 * k, "srcc_mean": float(np.nanmean(v)),
                         "srcc_q10": float(np.nanquantile(v, 0.1))})
    return pd.DataFrame(rows)


def spearman_brown_size(r: float, n_eval: int, target: float = RELIABILITY_BAR) -> float:
    """Images (both halves) at which split-half reliability ``r`` measured at ``n_eval`` reaches
    ``target`` (default: the bar :data:`~.constants.RELIABILITY_BAR`), by the Spearman-Brown
    prophecy ``r_k = k r / (1 + (k - 1) r)``."""
    if not 0 < r < 1:
        return float("nan") if r <= 0 else float(n_eval)
    return float(n_eval * target * (1 - r) / (r * (1 - target)))
