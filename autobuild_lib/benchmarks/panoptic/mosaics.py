"""Panoptic Fashion-MNIST mosaics (the study's stand-in for MS-COCO panoptic, paper Sec. 5.2).

A mosaic is a ``size x size`` canvas (default 64) whose background is split by a random
straight line into two *stuff* regions, each filled with its own texture (class 10: stripes,
class 11: dots), on which 1-4 Fashion-MNIST garments (*things*, classes 0-9, one instance each)
are pasted at random positions with non-overlapping 28x28 boxes.  A garment's pixels are those
brighter than ``THRESHOLD``; they overwrite the background.

Everything is drawn from ``numpy.random.default_rng([seed, i])`` for mosaic i, and garments
come only from the split given (train mosaics from the train split), so a set of mosaics is a
pure function of (split, n, seed).  Labels come as a semantic map (class per pixel) and an
instance map (0 for stuff, 1..k for the k garments); :func:`to_panoptic` turns them into the
``(category, instance)`` pairs of torchmetrics' ``PanopticQuality``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["THINGS", "STUFF", "N_CLASSES", "THRESHOLD", "Mosaics", "make_mosaics", "to_panoptic",
           "panoptic_quality", "pq_counts", "pq_from_counts"]

THINGS = tuple(range(10))
STUFF = (10, 11)
N_CLASSES = 12
THRESHOLD = 40       # garment pixel if brighter than this (of 255)
SIDE = 28


@dataclass
class Mosaics:
    """``images`` [N, 1, S, S] float in [0, 1]; ``semantic`` / ``instance`` [N, S, S] int64."""

    images: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


def _textures(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stripes (random period and orientation) and dots (random grid), low contrast."""
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.integers(4, 9)
    stripes = 0.08 + 0.12 * (((xx if rng.random() < 0.5 else yy) // (period // 2)) % 2)
    step = rng.integers(5, 9)
    dots = 0.05 + 0.2 * (((yy % step) < 2) & ((xx % step) < 2))
    return stripes, dots


def _stuff_split(size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean map: True where the second stuff class lies (one side of a random line)."""
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(-size / 4, size / 4)
    return (np.cos(angle) * xx + np.sin(angle) * yy) > offset


def _place(n: int, size: int, rng: np.random.Generator, tries: int = 200) -> list[tuple[int, int]]:
    boxes: list[tuple[int, int]] = []
    for _ in range(tries):
        if len(boxes) == n:
            break
        y, x = (int(v) for v in rng.integers(0, size - SIDE + 1, 2))
        if all(abs(y - by) >= SIDE or abs(x - bx) >= SIDE for by, bx in boxes):
            boxes.append((y, x))
    return boxes


def make_mosaics(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int, size: int = 64,
                 max_things: int = 4) -> Mosaics:
    """``n`` mosaics from garments ``images`` [M, 28, 28] uint8 with ``labels`` [M]."""
    if size < 2 * SIDE:
        raise ValueError(f"size must be >= {2 * SIDE} to hold two garments, got {size}")
    if not 1 <= max_things <= 4:
        raise ValueError(f"max_things must be in [1, 4], got {max_things}")
    if images.dim() != 3 or images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels):
        raise ValueError(f"need garments [M, 28, 28] with M labels, got {tuple(images.shape)} and {len(labels)}")
    imgs = images.numpy()
    labs = labels.numpy()
    out_img = np.zeros((n, 1, size, size), np.float32)
    out_sem = np.zeros((n, size, size), np.int64)
    out_ins = np.zeros((n, size, size), np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        stripes, dots = _textures(size, rng)
        second = _stuff_split(size, rng)
        canvas = np.where(second, dots, stripes)
        sem = np.where(second, STUFF[1], STUFF[0])
        ins = np.zeros((size, size), np.int64)
        k = int(rng.integers(1, max_things + 1))
        for j, (y, x) in enumerate(_place(k, size, rng), start=1):
            g = int(rng.integers(len(imgs)))
            patch = imgs[g]
            mask = patch > THRESHOLD
            region = (slice(y, y + SIDE), slice(x, x + SIDE))
            canvas[region] = np.where(mask, patch / 255.0, canvas[region])
            sem[region] = np.where(mask, labs[g], sem[region])
            ins[region] = np.where(mask, j, ins[region])
        out_img[i, 0], out_sem[i], out_ins[i] = canvas, sem, ins
    return Mosaics(torch.from_numpy(out_img), torch.from_numpy(out_sem), torch.from_numpy(out_ins))


def to_panoptic(semantic: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
    """``[N, H, W, 2]`` (category, instance) pairs; stuff pixels get instance 0."""
    if semantic.shape != instance.shape:
        raise ValueError(f"semantic {tuple(semantic.shape)} and instance {tuple(instance.shape)} differ in shape")
    inst = torch.where(semantic >= STUFF[0], torch.zeros_like(instance), instance)
    return torch.stack([semantic, inst], dim=-1)


def panoptic_quality(pred_semantic: torch.Tensor, pred_instance: torch.Tensor, semantic: torch.Tensor,
                     instance: torch.Tensor) -> float:
    """PQ (torchmetrics' ``PanopticQuality``, things 0-9, stuff 10-11) of predictions against targets."""
    from torchmetrics.detection import PanopticQuality

    metric = PanopticQuality(things=set(THINGS), stuffs=set(STUFF))
    return float(metric(to_panoptic(pred_semantic, pred_instance), to_panoptic(semantic, instance)))


def pq_counts(pred_semantic: torch.Tensor, pred_instance: torch.Tensor, semantic: torch.Tensor,
              instance: torch.Tensor, per_image: bool = False) -> np.ndarray:
    """Per-class ``[iou_sum, TP, FP, FN]`` (shape ``[4, N_CLASSES]``) of a batch, vectorised.

    The same counts as torchmetrics' ``PanopticQuality`` update for maps without void pixels
    (every pixel here has a class): segments are the distinct (class, instance) pairs of an
    image, stuff classes form one segment per image; a predicted and a true segment of the same
    class match when their IoU exceeds 0.5.  About 20x faster than the per-segment Python loop
    of torchmetrics on these mosaics; ``tests/test_panoptic.py`` checks equality with it.
    Counts add up over batches (and images); :func:`pq_from_counts` turns them into PQ.
    With ``per_image`` the counts of every image, ``[B, 4, N_CLASSES]``.
    """
    ps, pi = pred_semantic.numpy().astype(np.int64), pred_instance.numpy().astype(np.int64)
    gs, gi = semantic.numpy().astype(np.int64), instance.numpy().astype(np.int64)
    pi = np.where(ps >= STUFF[0], 0, pi)
    gi = np.where(gs >= STUFF[0], 0, gi)
    m = int(max(pi.max(initial=0), gi.max(initial=0))) + 1
    img = np.arange(ps.shape[0]).reshape(-1, *([1] * (ps.ndim - 1)))
    pid = ((img * N_CLASSES + ps) * m + pi).ravel()
    gid = ((img * N_CLASSES + gs) * m + gi).ravel()
    g_span = int(gid.max(initial=0)) + 1
    pairs, inter = np.unique(pid * g_span + gid, return_counts=True)   # one sort over the pixels
    pu, jp = np.unique(pairs // g_span, return_inverse=True)            # then only over segment pairs
    gu, jg = np.unique(pairs % g_span, return_inverse=True)
    parea = np.bincount(jp, weights=inter)
    garea = np.bincount(jg, weights=inter)
    pcat, gcat = (pu // m) % N_CLASSES, (gu // m) % N_CLASSES
    iou = inter / (parea[jp] + garea[jg] - inter)
    match = (pcat[jp] == gcat[jg]) & (iou > 0.5)
    p_matched = np.zeros(len(pu), bool)
    p_matched[jp[match]] = True
    g_matched = np.zeros(len(gu), bool)
    g_matched[jg[match]] = True
    n_img = ps.shape[0] if per_image else 1
    p_key = (pu // (m * N_CLASSES) if per_image else 0) * N_CLASSES + pcat
    g_key = (gu // (m * N_CLASSES) if per_image else 0) * N_CLASSES + gcat
    size = n_img * N_CLASSES
    out = np.stack([
        np.bincount(g_key[jg[match]], weights=iou[match], minlength=size),
        np.bincount(g_key[jg[match]], minlength=size),
        np.bincount(p_key[~p_matched], minlength=size),
        np.bincount(g_key[~g_matched], minlength=size),
    ]).astype(np.float64)
    out = out.reshape(4, n_img, N_CLASSES).transpose(1, 0, 2)
    return out if per_image else out[0]


def pq_from_counts(counts: np.ndarray) -> float:
    """PQ (fraction) = mean over classes with TP + FP + FN > 0 of IoU_sum / (TP + FP/2 + FN/2)."""
    iou_sum, tp, fp, fn = counts
    den = tp + 0.5 * fp + 0.5 * fn
    seen = den > 0
    return float(np.mean(iou_sum[seen] / den[seen])) if seen.any() else float("nan")
