"""Pareto fronts and hypervolumes for the study's multi-objective comparisons.

Paper Sec. 5.1 / 7.5: constructed and searched architectures are judged
against the Pareto front of the training architectures (e.g. accuracy, to
maximise, versus latency, to minimise) and NAS runs by the hypervolume of
their final front.

Conventions used by every function here:

* ``points`` is an ``(n, d)`` array-like of objective values, one row per
  solution and one column per objective (a 1-D array is one point).
* ``maximize`` has one bool per objective: ``True`` means larger is better
  (accuracy, PQ), ``False`` means smaller is better (latency, FLOPs, FID).
* Internally every objective is converted to "smaller is better" by negating
  the maximised ones; ``a`` *weakly dominates* ``b`` when ``a`` is at least as
  good as ``b`` in every objective, and *dominates* ``b`` when it is in
  addition strictly better in at least one.
* Values must be finite; NaN or infinite values raise ``ValueError``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV

_CHUNK = 1024  # candidate rows compared against a reference set at once


def _directions(maximize: Sequence[bool], n_obj: int) -> np.ndarray:
    """``+1`` for minimised and ``-1`` for maximised objectives."""
    flags = list(maximize)
    if len(flags) != n_obj:
        raise ValueError(f"maximize has {len(flags)} entries but the points have {n_obj} objectives")
    if not all(isinstance(f, (bool, np.bool_)) for f in flags):
        raise ValueError(f"maximize must hold one bool per objective, got {flags!r}")
    return np.where(flags, -1.0, 1.0)


def _as_points(points: object, name: str) -> np.ndarray:
    """``points`` as a finite float ``(n, d)`` array (a 1-D input is one point)."""
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError(f"{name} is empty; pass an array of shape (0, d) for an empty point set")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (n, d) array of objective values, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no objectives (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} contains NaN or infinite values (first at row {row}: {arr[row].tolist()})")
    return arr


def _minimised(points: object, maximize: Sequence[bool], name: str) -> np.ndarray:
    """Validated points with every objective turned into "smaller is better"."""
    arr = _as_points(points, name)
    return arr * _directions(maximize, arr.shape[1])


def _same_dims(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has {a.shape[1]} objectives but {name_b} has {b.shape[1]}; shapes {a.shape} vs {b.shape}"
        )


def pareto_mask(points: object, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points``.

    ``maximize[j]`` says whether objective ``j`` is maximised (``True``) or
    minimised (``False``). A row is kept when no other row dominates it.
    Ties are resolved by position: of several identical non-dominated rows only
    the first is kept, so the front never holds duplicate points.
    """
    f = _minimised(points, maximize, "points")
    n = len(f)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    # Stable lexicographic order (first objective first): a row can only be
    # weakly dominated by rows before it, and equal rows keep their order.
    order = np.lexsort(f.T[::-1])
    if f.shape[1] == 1:
        mask[order[0]] = True
        return mask
    if f.shape[1] == 2:
        y = f[order, 1]
        best_before = np.concatenate(([np.inf], np.minimum.accumulate(y)[:-1]))
        mask[order[y < best_before]] = True
        return mask
    kept: list[int] = []
    for i in order:
        if not kept or not np.all(f[kept] <= f[i], axis=1).any():
            kept.append(int(i))
    mask[kept] = True
    return mask


def pareto_front(
    df: pd.DataFrame, x: str, y: str, maximize_x: bool, maximize_y: bool
) -> pd.DataFrame:
    """Rows of ``df`` on the 2-D Pareto front of columns ``x`` and ``y``, sorted by ``x``.

    ``maximize_x`` / ``maximize_y`` say whether larger values of ``x`` / ``y``
    are better. The original index is kept; ties as in :func:`pareto_mask`.
    """
    missing = [c for c in (x, y) if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the DataFrame; available: {list(df.columns)}")
    mask = pareto_mask(df[[x, y]].to_numpy(dtype=float), [maximize_x, maximize_y])
    return df.loc[mask].sort_values(x, kind="stable")


def hypervolume(points: object, ref_point: Sequence[float], maximize: Sequence[bool]) -> float:
    """Hypervolume of ``points`` with respect to ``ref_point`` (pymoo's ``HV``).

    ``maximize[j]`` says whether objective ``j`` is maximised; maximised
    objectives (and the reference point's coordinate) are negated before the
    minimisation-based indicator is applied. Every point must weakly dominate
    ``ref_point`` (be at least as good in every objective), otherwise a
    ``ValueError`` is raised instead of silently dropping it. An empty point
    set has hypervolume 0.
    """
    f = _minimised(points, maximize, "points")
    ref = _minimised(ref_point, maximize, "ref_point")
    if ref.shape[0] != 1:
        raise ValueError(f"ref_point must be a single point, got shape {np.shape(ref_point)}")
    _same_dims(f, ref, "points", "ref_point")
    worse = np.any(f > ref, axis=1)
    if worse.any():
        row = int(np.argmax(worse))
        raise ValueError(
            f"ref_point {list(np.ravel(ref_point))} is not dominated by every point: point {row} "
            f"{(f[row] * _directions(maximize, f.shape[1])).tolist()} is worse in some objective "
            f"(maximize={list(maximize)}); choose a worse reference point"
        )
    if len(f) == 0:
        return 0.0
    return float(HV(ref_point=ref[0])(f))


def beyond_front(candidates: object, reference: object, maximize: Sequence[bool]) -> np.ndarray:
    """Mask of ``candidates`` that are not weakly dominated by any ``reference`` point.

    ``maximize[j]`` says whether objective ``j`` is maximised. A candidate is
    ``True`` when every reference point is strictly worse than it in at least
    one objective: it dominates part of the reference front or extends it, and
    it does not merely coincide with a reference point.
    """
    c = _minimised(candidates, maximize, "candidates")
    r = _minimised(reference, maximize, "reference")
    _same_dims(c, r, "candidates", "reference")
    out = np.ones(len(c), dtype=bool)
    if len(r) == 0:
        return out
    for start in range(0, len(c), _CHUNK):
        block = c[start : start + _CHUNK]
        weakly_dominated = np.all(r[None, :, :] <= block[:, None, :], axis=2).any(axis=1)
        out[start : start + _CHUNK] = ~weakly_dominated
    return out


def hypervolume_gain(
    candidates: object, reference: object, ref_point: Sequence[float], maximize: Sequence[bool]
) -> float:
    """HV(reference ∪ candidates) − HV(reference), with :func:`hypervolume`'s conventions.

    ``maximize[j]`` says whether objective ``j`` is maximised. The gain is
    ``>= 0`` and positive exactly when some candidate adds dominated volume.
    """
    c = _as_points(candidates, "candidates")
    r = _as_points(reference, "reference")
    _same_dims(c, r, "candidates", "reference")
    gain = hypervolume(np.vstack([r, c]), ref_point, maximize) - hypervolume(r, ref_point, maximize)
    return max(gain, 0.0)  # a superset never loses volume; clip float round-off
