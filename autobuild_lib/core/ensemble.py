"""Predictor ensembles for tiny data and module construction on the SD U-Net
(paper Sec. 5.3, 7.8-7.10; notes Sec. 7).

With only 68 labelled U-Nets the paper trains an ensemble of
``5 folds x 4 seeds = 20`` predictors (full batch, 1000 epochs, 6 layers),
each scored on its held-out fold:

* **Module score** (Sec. 7.9): ``s(module) = sum_p SRCC_p^m * ||h_v^m||_1``
  with ``SRCC_p^m`` predictor p's held-out SRCC of ``||h_G^m||_1`` at the
  module's hop level ``m = nodes - 1`` and ``h_v^m`` its embedding of the
  module's last node in the standalone module graph.  Too few samples for
  Eq. 5's label moments, so scores are standardised to N(0, 1).
* **Constrained top-K** (Sec. 7.9): K = 5 modules per stage spread over its
  hop sizes (stage 1, hops 1-2: two 1-hop + three 2-hop; output stages with
  hops 2-6: the best module of each size).  Unconstrained (Sec. 7.10): the
  plain top-5 per stage.  The middle stage is fixed and not scored.
* **Top-4 architectures**: the 4 module combinations with the highest summed
  score that satisfy the channel constraints.
* **Exhaustive Search (ES) baseline** (Sec. 5.3): 20 MSE-only predictors on
  the same folds, each weighted by its held-out SRCC of predictions, applied
  to every architecture of the space; the top-4 by weighted sum.

Labels must be "higher is better" (e.g. ``y = -FID``): the hop-SRCC term of
Eq. 4 makes ``||h_G^m||_1`` grow with the label, so high scores mean good
modules.  Held-out SRCCs are used as they are (negative ones flip a
predictor's vote); undefined ones (constant values) count as 0.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from autobuild_lib.core.dedup import build_plan, plan_predict, single_thread
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.sd_graphs import sd_module_graph
from autobuild_lib.core.spaces.sd import SDArch, SDModule, SDSpace
from autobuild_lib.core.training import TrainConfig, TrainResult, train_predictor

SD_CONFIG = TrainConfig(epochs=1000, n_layers=6)
"""Paper Sec. 7.8: 1000 epochs, 6 message-passing layers (full batch is set per fold)."""


def kfold_indices(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """Held-out folds of a seeded permutation of ``range(n)``: every item in exactly one."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, n_folds)]


@dataclass
class Member:
    """One predictor of the ensemble and its held-out scores."""

    result: TrainResult
    seed: int
    fold: int
    srcc_hop: np.ndarray  # [M+1] held-out SRCC of ||h_G^m||_1 (nan -> 0)
    srcc_pred: float  # held-out SRCC of the prediction (nan -> 0)


@dataclass
class Ensemble:
    """``n_folds x len(seeds)`` predictors, members ordered by seed then fold."""

    members: list[Member]
    n_folds: int
    seeds: tuple[int, ...]
    hop_srcc: bool

    @property
    def n_hops(self) -> int:
        return self.members[0].result.model.n_hops

    def hop_weights(self) -> np.ndarray:
        """``[P, M+1]`` held-out SRCC of every member at every hop."""
        return np.stack([m.srcc_hop for m in self.members])

    def pred_weights(self) -> np.ndarray:
        """``[P]`` held-out SRCC of every member's prediction."""
        return np.array([m.srcc_pred for m in self.members])


def _check_labels(table: GraphTable, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(table):
        raise ValueError(f"labels must be 1-D with one value per graph ({len(table)} graphs), "
                         f"got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"labels contain NaN/inf at rows {np.flatnonzero(~np.isfinite(y))[:5].tolist()}")
    return y


def _train_member(table: GraphTable, y: np.ndarray, config: TrainConfig, train: np.ndarray,
                  test: np.ndarray) -> TrainResult:
    with single_thread():
        return train_predictor(table, y, config, train_idx=train, test_idx=test, progress=False)


def _member_call(n: int, n_folds: int, seed: int, fold: int, config: TrainConfig, hop_srcc: bool
                 ) -> tuple[TrainConfig, np.ndarray, np.ndarray]:
    test = kfold_indices(n, n_folds, seed)[fold]
    train = np.setdiff1d(np.arange(n), test)
    return replace(config, batch_size=len(train), hop_srcc=hop_srcc, seed=seed), train, test


def train_member(table: GraphTable, y: np.ndarray, seed: int, fold: int, n_folds: int = 5,
                 config: TrainConfig = SD_CONFIG, hop_srcc: bool = True) -> TrainResult:
    """Train the one member (``seed``, ``fold``) of :func:`train_ensemble` again, identically."""
    y = _check_labels(table, y)
    cfg, train, test = _member_call(len(y), n_folds, seed, fold, config, hop_srcc)
    return _train_member(table, y, cfg, train, test)


def train_ensemble(table: GraphTable, y: np.ndarray, n_folds: int = 5,
                   seeds: Sequence[int] = (0, 1, 2, 3), config: TrainConfig = SD_CONFIG,
                   hop_srcc: bool = True, progress: bool = False, n_jobs: int = 1) -> Ensemble:
    """Train ``n_folds x len(seeds)`` predictors, each held out on one fold (Sec. 7.8).

    For seed s the folds come from a permutation drawn with s, and every
    member of seed s initialises with ``torch.manual_seed(s)``; each member
    trains full batch (``batch_size`` = its training-set size) with
    ``hop_srcc`` choosing Eq. 4 or MSE only, on one torch thread
    (:func:`~autobuild_lib.core.dedup.single_thread`).  The other hyper-parameters
    come from ``config``.  ``n_jobs`` members train in parallel (joblib).
    Deterministic for fixed seeds, whatever ``n_jobs``.
    """
    y = _check_labels(table, y)
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if len(y) < 2 * n_folds:
        raise ValueError(f"{n_folds} folds of {len(y)} architectures: every held-out fold needs "
                         f">= 2 architectures for an SRCC, so use n_folds <= {len(y) // 2}")
    from joblib import Parallel, delayed

    jobs = [(s, f) for s in seeds for f in range(n_folds)]
    calls = [delayed(_train_member)(table, y, *_member_call(len(y), n_folds, s, f, config, hop_srcc))
             for s, f in jobs]
    results = Parallel(n_jobs=n_jobs, return_as="generator")(calls)
    members = [Member(res, seed, fold, np.nan_to_num(np.array(res.metrics["srcc_hop"]), nan=0.0),
                      float(np.nan_to_num(res.metrics["srcc_pred"], nan=0.0)))
               for (seed, fold), res in zip(jobs, tqdm(results, total=len(jobs), desc="ensemble",
                                                           disable=not progress))]
    return Ensemble(members, n_folds, seeds, hop_srcc)


# --------------------------------------------------------------------------
# Module scores and candidates
def module_name(module: SDModule) -> str:
    """``"<channels>:<blocks>"``, blocks as in the space's strings (e.g. ``"512:RARA"``)."""
    return f"{module.channels}:" + "".join("RA" if a else "R" for a in module.blocks)


@torch.no_grad()
def sd_module_scores(ensemble: Ensemble, space: SDSpace, standardize: str = "unit") -> pd.DataFrame:
    """Score every module of every SD unit with the ensemble (Sec. 7.9).

    ``raw = sum_p SRCC_p^m * ||h_v^m||_1`` over the members p, with v the last
    node of the module's standalone chain and ``m = nodes - 1`` (the chain's
    whole receptive field).  ``score`` standardises ``raw`` to N(0, 1)
    (population std) -- per unit (``"unit"``, default: Eq. 5's label moments
    are per unit, and a combination's summed score should weigh every unit
    alike) or over all modules (``"all"``).  Every SD module has at least one
    node (the smallest is one ResConv), so every module is scored.

    Returns one row per module: unit (0-7), section, stage, module
    (:class:`SDModule`), name, channels, nodes, hop, raw, score.
    """
    if standardize not in ("unit", "all"):
        raise ValueError(f"standardize must be 'unit' or 'all', got {standardize!r}")
    weights = ensemble.hop_weights()
    schema = ensemble.members[0].result.model.schema
    frames = []
    for unit in range(space.n_units):
        modules = list(space.modules(unit))
        table = GraphTable([sd_module_graph(space, unit, m, schema) for m in modules], schema)
        last = table.node_ptr[1:] - 1
        hop = (table.node_ptr[1:] - table.node_ptr[:-1]).numpy() - 1
        if hop.max() >= ensemble.n_hops:
            raise ValueError(f"unit {unit} has {hop.max() + 1}-node modules: hop {hop.max()} needs a "
                             f"predictor with >= {hop.max()} layers, the ensemble has {ensemble.n_hops - 1}")
        batch, raw = table.batch(), np.zeros(len(modules))
        for w, member in zip(weights, ensemble.members):
            with single_thread():
                hs = member.result.model.eval().node_embeddings(batch)
            norms = torch.stack([h[last].abs().sum(dim=1) for h in hs], dim=1).double().numpy()
            raw += w[hop] * norms[np.arange(len(modules)), hop]
        section, stage = space.unit_stage(unit)
        frames.append(pd.DataFrame({
            "unit": unit, "section": section, "stage": stage, "module": modules,
            "name": [module_name(m) for m in modules], "channels": [m.channels for m in modules],
            "nodes": hop + 1, "hop": hop, "raw": raw}))
    out = pd.concat(frames, ignore_index=True)
    if standardize == "unit":
        by_unit = out.groupby("unit")["raw"]
        mean, std = by_unit.transform("mean"), by_unit.transform(lambda v: v.std(ddof=0))
    else:
        mean, std = out["raw"].mean(), out["raw"].std(ddof=0)
    out["score"] = (out["raw"] - mean) / np.where(np.asarray(std) > 0, std, 1.0)
    return out


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


# --------------------------------------------------------------------------
# Exhaustive-search baseline
def ensemble_predict(ensemble: Ensemble, table: GraphTable) -> np.ndarray:
    """SRCC-weighted sum of the members' predictions, ``sum_p SRCC_p * y'_p`` (Sec. 5.3 ES)."""
    plan = build_plan(table, ensemble.n_hops - 1)
    out = np.zeros(len(table))
    for w, member in zip(ensemble.pred_weights(), ensemble.members):
        if w != 0:
            out += w * plan_predict(member.result, table, plan)
    return out


def iter_space(space: SDSpace, max_archs: int | None = None, seed: int = 0) -> Iterator[SDArch]:
    """``space.enumerate_archs()``, or a fixed uniform subsample of ``max_archs`` of them
    (without replacement, in enumeration order, drawn with ``seed``)."""
    size = space.size()
    if max_archs is None or max_archs >= size:
        return space.enumerate_archs()
    if max_archs < 1:
        raise ValueError(f"max_archs must be >= 1, got {max_archs}")
    keep = np.zeros(size, dtype=bool)
    keep[np.random.default_rng(seed).choice(size, max_archs, replace=False)] = True
    return itertools.compress(space.enumerate_archs(), keep)


def exhaustive_search(space: SDSpace, table_fn: Callable[[Sequence[SDArch]], GraphTable],
                      ensemble_mse: Ensemble, n: int = 4, max_archs: int | None = None, seed: int = 0,
                      chunk: int = 36_864, progress: bool = False) -> list[tuple[SDArch, float]]:
    """ES baseline (Sec. 5.3): the top-``n`` architectures of the space by
    :func:`ensemble_predict`, as ``(arch, weighted sum)``, best first.

    ``ensemble_mse`` should come from ``train_ensemble(..., hop_srcc=False)``
    on the same folds; ``table_fn`` encodes a list of archs (e.g.
    ``SDTableBuilder(space)``).  All archs are scored unless ``max_archs``
    asks for a seeded subsample (:func:`iter_space`).  Ties keep
    enumeration order.  Deduplicated inference (:mod:`~autobuild_lib.core.dedup`)
    makes the full ``sd_unet`` space (884,736 archs, 20 predictors) take about
    a minute on 2 CPU cores (measured 62 s: tables 12 s, plans 45 s, 0.8 s per
    predictor).
    """
    if n < 1 or chunk < 1:
        raise ValueError(f"n and chunk must be >= 1, got n={n}, chunk={chunk}")
    if not np.any(ensemble_mse.pred_weights()):
        raise ValueError("every member's held-out SRCC is 0 or undefined: the ensemble cannot rank")
    archs_iter = iter_space(space, max_archs, seed)
    total = space.size() if max_archs is None else min(max_archs, space.size())
    best: list[tuple[SDArch, float]] = []
    bar = tqdm(total=total, desc="ES", disable=not progress, leave=False)
    while batch := list(itertools.islice(archs_iter, chunk)):
        score = ensemble_predict(ensemble_mse, table_fn(batch))
        top = np.argsort(-score, kind="stable")[:n]
        best = sorted(best + [(batch[i], float(score[i])) for i in top], key=lambda t: -t[1])[:n]
        bar.update(len(batch))
    bar.close()
    return best


# --------------------------------------------------------------------------
# The whole Sec. 5.3 / 7.10 procedure
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
