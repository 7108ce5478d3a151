"""Predictor ensembles for tiny data and their module scores on the SD U-Net
(paper Sec. 5.3, 7.8-7.10; notes Sec. 7).

With only 68 labelled U-Nets the paper trains an ensemble of
``5 folds x 4 seeds = 20`` predictors (full batch, 1000 epochs, 6 layers),
each scored on its held-out fold:

* **Module score** (Sec. 7.9): ``s(module) = sum_p SRCC_p^m * ||h_v^m||_1``
  with ``SRCC_p^m`` predictor p's held-out SRCC of ``||h_G^m||_1`` at the
  module's hop level ``m = nodes - 1`` and ``h_v^m`` its embedding of the
  module's last node in the standalone module graph.  Too few samples for
  Eq. 5's label moments, so scores are standardised to N(0, 1).
* **Construction** from these scores (constrained top-K, the top-4 combinations) is in
  :mod:`~autobuild_lib.core.construction`; the **Exhaustive Search (ES) baseline** (Sec. 5.3),
  which ranks every architecture with :func:`ensemble_predict` of 20 MSE-only members weighted by
  their held-out SRCC, in :mod:`~autobuild_lib.core.search`.

Labels must be "higher is better" (e.g. ``y = -FID``): the hop-SRCC term of
Eq. 4 makes ``||h_G^m||_1`` grow with the label, so high scores mean good
modules.  Held-out SRCCs are used as they are (negative ones flip a
predictor's vote); undefined ones (constant values) count as 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from autobuild_lib.core.dedup import build_plan, plan_predict, single_thread
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.sd_graphs import sd_module_graph
from autobuild_lib.core.spaces.sd import SDModule, SDSpace
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


def ensemble_predict(ensemble: Ensemble, table: GraphTable) -> np.ndarray:
    """SRCC-weighted sum of the members' predictions, ``sum_p SRCC_p * y'_p`` (Sec. 5.3 ES)."""
    plan = build_plan(table, ensemble.n_hops - 1)
    out = np.zeros(len(table))
    for w, member in zip(ensemble.pred_weights(), ensemble.members):
        if w != 0:
            out += w * plan_predict(member.result, table, plan)
    return out
