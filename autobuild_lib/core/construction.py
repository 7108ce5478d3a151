"""Construction: the top-K modules of every unit and the architectures they span (Sec. 4.2, 5.3, 7.9-7.10).

* OFA spaces (Sec. 4.2, 5.1): :func:`top_k` takes the K best modules of every unit by their Eq. 5
  score (:mod:`~autobuild_lib.core.scoring`); :func:`construct` enumerates the ``K^|u|``
  architectures of the reduced space (K=3, 5 units -> 243).
* The SD U-Net (Sec. 7.9-7.10): :func:`constrained_top_k` spreads K = 5 modules of a stage over its
  hop sizes (stage 1, hops 1-2: two 1-hop + three 2-hop; output stages with hops 2-6: the best of
  each size), :func:`unconstrained_top_k` is the plain top-5; :func:`top_combinations` picks the
  4 module combinations with the highest summed ensemble score (:func:`~autobuild_lib.core.ensemble.
  sd_module_scores`) that meet the channel constraints.  :func:`construct_sd` runs the whole Sec. 5.3
  procedure, the Exhaustive-Search baseline (:func:`~autobuild_lib.core.search.exhaustive_search`)
  included.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autobuild_lib.core.ensemble import SD_CONFIG, Ensemble, sd_module_scores, train_ensemble
from autobuild_lib.core.scoring import parse_module
from autobuild_lib.core.search import exhaustive_search
from autobuild_lib.core.spaces.ofa import OFAArch, OFAModule, OFASpace
from autobuild_lib.core.spaces.sd import SDArch, SDModule, SDSpace
from autobuild_lib.core.training import TrainConfig

__all__ = ["top_k", "construct", "hop_quota", "unconstrained_top_k", "constrained_top_k", "per_unit_candidates",
           "top_combinations", "SDConstruction", "construct_sd"]


# ----------------------------------------------------------------------------- OFA spaces
def top_k(scores: pd.DataFrame, k: int, maximize: bool = True) -> list[list[OFAModule]]:
    """The top-``k`` modules of every unit (ties broken by enumeration order)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    out = []
    for _, grp in scores.groupby("unit", sort=True):
        best = grp.sort_values("score", ascending=not maximize, kind="stable").head(k)
        out.append([parse_module(s) for s in best["module"]])
    return out


def construct(space: OFASpace, per_unit: Sequence[Sequence[OFAModule]],
              resolution: int = 224) -> list[OFAArch]:
    """All ``prod_u K_u`` architectures of the reduced space, in a fixed order."""
    if len(per_unit) != space.n_units:
        raise ValueError(f"need modules for {space.n_units} units, got {len(per_unit)}")
    return [space.assemble(list(c), resolution=resolution) for c in itertools.product(*per_unit)]


# ----------------------------------------------------------------------------- the SD U-Net
def hop_quota(hops: Sequence[int], k: int) -> dict[int, int]:
    """Spread ``k`` slots evenly over ``hops``; the remainder goes to the largest hops.

    Notes Sec. 7: hops (1, 2), K = 5 -> {1: 2, 2: 3}; hops 2-6 -> one each.
    """
    hops = sorted(set(int(h) for h in hops))
    if k < 1 or not hops:
        raise ValueError(f"need k >= 1 and at least one hop size, got k={k}, hops={hops}")
    base, extra = divmod(k, len(hops))
    return {h: base + int(i >= len(hops) - extra) for i, h in enumerate(hops)}


def _unit_rows(scores: pd.DataFrame, unit: int) -> pd.DataFrame:
    rows = scores[scores["unit"] == unit]
    if rows.empty:
        raise ValueError(f"no scores for unit {unit}; units present: {sorted(scores['unit'].unique())}")
    return rows.sort_values("score", ascending=False, kind="stable")


def unconstrained_top_k(scores: pd.DataFrame, unit: int, k: int = 5) -> list[SDModule]:
    """The plain top-``k`` modules of ``unit`` (Sec. 7.10 "Unconstrained")."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return list(_unit_rows(scores, unit)["module"].head(k))


def constrained_top_k(scores: pd.DataFrame, unit: int, k: int = 5) -> list[SDModule]:
    """Top-``k`` modules of ``unit`` spread over its hop sizes (Sec. 7.9), best first.

    Each hop size gets its :func:`hop_quota` of best modules; slots a hop
    size cannot fill (too few modules) go to the best remaining modules.
    """
    rows = _unit_rows(scores, unit)
    quota = hop_quota(rows["hop"], k)
    chosen = pd.concat([rows[rows["hop"] == h].head(q) for h, q in quota.items()])
    rest = rows.drop(chosen.index).head(min(k, len(rows)) - len(chosen))
    return list(pd.concat([chosen, rest]).sort_values("score", ascending=False, kind="stable")["module"])


def per_unit_candidates(scores: pd.DataFrame, space: SDSpace, k: int = 5,
                        constrained: bool = True) -> list[list[SDModule]]:
    """Candidates of every unit: :func:`constrained_top_k` or :func:`unconstrained_top_k`."""
    pick = constrained_top_k if constrained else unconstrained_top_k
    return [pick(scores, u, k) for u in range(space.n_units)]


def _k_best(space: SDSpace, lists: list[list[tuple[float, SDModule]]], n: int
            ) -> list[tuple[float, list[SDModule]]]:
    """The ``n`` best valid picks from per-unit lists sorted by score (best-first search)."""
    def total(idx: tuple[int, ...]) -> float:
        return sum(lists[u][i][0] for u, i in enumerate(idx))

    start = (0,) * len(lists)
    heap, seen, out = [(-total(start), start)], {start}, []
    while heap and len(out) < n:
        neg, idx = heapq.heappop(heap)
        mods = [lists[u][i][1] for u, i in enumerate(idx)]
        if space.constraint_ok(mods):
            out.append((-neg, mods))
        for u in range(len(idx)):
            nxt = idx[:u] + (idx[u] + 1,) + idx[u + 1:]
            if nxt[u] < len(lists[u]) and nxt not in seen:
                seen.add(nxt)
                heapq.heappush(heap, (-total(nxt), nxt))
    return out


def top_combinations(space: SDSpace, per_unit_candidates: Sequence[Sequence[SDModule]],
                     scores: pd.DataFrame, n: int = 4) -> list[tuple[SDArch, float]]:
    """The ``n`` module combinations with the highest summed score that satisfy
    ``space.constraint_ok`` (Sec. 7.9 "top-4"), as ``(arch, summed score)``, best first.

    Exact: C_m and the multiplier combination fix every unit's channels, so
    for each of them a best-first search over the units' matching candidates
    (sorted by score) yields its best valid combinations in order; the best
    ``n`` over all of them are returned (fewer if fewer exist).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(per_unit_candidates) != space.n_units:
        raise ValueError(f"need candidates for {space.n_units} units, got {len(per_unit_candidates)}")
    lookup = {(int(u), m): float(s) for u, m, s in zip(scores["unit"], scores["module"], scores["score"])}
    ranked = []
    for u, cands in enumerate(per_unit_candidates):
        if not cands:
            raise ValueError(f"unit {u} has no candidate modules")
        missing = [c for c in cands if (u, c) not in lookup]
        if missing:
            raise ValueError(f"unit {u}: candidates {missing[:3]} have no score")
        ranked.append(sorted(((lookup[u, c], c) for c in dict.fromkeys(cands)), key=lambda t: -t[0]))
    found = []
    for c_m, combo in itertools.product(space.c_ms, space.combos):
        chans = [c_m * combo[space.unit_stage(u)[1] - 1] for u in range(space.n_units)]
        lists = [[t for t in ranked[u] if t[1].channels == chans[u]] for u in range(space.n_units)]
        if all(lists):
            found += _k_best(space, lists, n)
    if not found:
        raise ValueError("no combination of the candidates satisfies the channel constraints; "
                         "use more candidates per unit (larger k)")
    found.sort(key=lambda t: -t[0])
    return [(space.assemble(mods), total) for total, mods in found[:n]]


@dataclass
class SDConstruction:
    """What :func:`construct_sd` built: the two ensembles, module scores and the picked archs."""

    ensemble: Ensemble
    ensemble_mse: Ensemble
    scores: pd.DataFrame
    picks: dict[str, list[tuple[SDArch, float]]]  # method -> [(arch, score)], best first
    k_used: dict[str, int]  # method -> the K that yielded combinations meeting the channel constraints


def construct_sd(space: SDSpace, archs: Sequence[SDArch], y: np.ndarray, n: int = 4, k: int = 5,
                 methods: Sequence[str] = ("autobuild", "es"), n_folds: int = 5,
                 seeds: Sequence[int] = (0, 1, 2, 3), config: TrainConfig = SD_CONFIG,
                 max_archs: int | None = None, progress: bool = False, n_jobs: int = 1) -> SDConstruction:
    """Train both ensembles on ``(archs, y)`` (``y`` higher is better, e.g. ``-FID``) and pick
    ``n`` architectures per method (Sec. 5.3, 7.9-7.10):

    * ``"autobuild"``: :func:`constrained_top_k` (K = ``k``) then :func:`top_combinations`;
    * ``"unconstrained"``: :func:`unconstrained_top_k` then :func:`top_combinations`;
    * ``"es"``: :func:`exhaustive_search` with the MSE-only ensemble (``max_archs`` subsamples).

    If no combination of the K candidates per unit meets the channel constraints (their channels
    disagree across units), K is doubled until one does; ``k_used`` records the K (the paper does
    not say what it did in that case).
    """
    from autobuild_lib.core.sd_graphs import SDTableBuilder

    known = ("autobuild", "unconstrained", "es")
    bad = [m for m in methods if m not in known]
    if bad or not methods:
        raise ValueError(f"unknown methods {bad}; choose from {known}")
    builder = SDTableBuilder(space)
    table = builder(list(archs))
    ens = train_ensemble(table, y, n_folds, seeds, config, hop_srcc=True, progress=progress, n_jobs=n_jobs)
    ens_mse = train_ensemble(table, y, n_folds, seeds, config, hop_srcc=False, progress=progress, n_jobs=n_jobs)
    scores = sd_module_scores(ens, space)
    picks: dict[str, list[tuple[SDArch, float]]] = {}
    k_used: dict[str, int] = {}
    n_max = max(space.n_modules(u) for u in range(space.n_units))
    for method in methods:
        if method == "es":
            picks[method] = exhaustive_search(space, builder, ens_mse, n=n, max_archs=max_archs, progress=progress)
            continue
        kk = k
        while method not in picks:
            cands = per_unit_candidates(scores, space, kk, constrained=method == "autobuild")
            try:
                picks[method], k_used[method] = top_combinations(space, cands, scores, n), kk
            except ValueError as exc:
                if "no combination" not in str(exc) or kk >= n_max:
                    raise
                kk *= 2
    return SDConstruction(ens, ens_mse, scores, picks, k_used)
