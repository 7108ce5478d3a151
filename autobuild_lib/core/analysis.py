"""Analyses behind the chapters on the search spaces (01) and the hop-level SRCC (02, paper Fig. 2).

Chapter 01 describes the two OFA spaces and the labels of a benchmark:

* :func:`space_overview` / :func:`unit_overview` -- units, module counts and sizes from the
  space definitions (paper Sec. 3.1 / 5.1);
* :func:`label_columns`, :func:`label_summary`, :func:`label_srcc` -- the label distributions
  and the Spearman rank correlation (SRCC) between every pair of label columns;
* :func:`depth_effect` -- whether the mean label grows with the layer count of each unit (the
  label moments of Table 2).

Chapter 02 trains AutoBuild predictors with the Eq. 4 loss and with MSE only, over several seeds:

* :func:`hop_srcc_runs` -- one row per trained predictor: test SRCC of ``||h_G^m||_1`` at every
  hop and of the MLP head;
* :func:`hop_srcc_long` / :func:`summarise_hop_srcc` -- long form and mean / std / min / max
  over seeds;
* :func:`hop_srcc_table` -- the same as a compact wide table, "mean +/- std" per hop;
* :func:`training_cost` -- seconds per epoch and per graph-epoch of the runs, and the
  projected time of another run size (how the full profile's epochs were chosen);
* :func:`hop_srcc_claims` -- the Fig. 2 claims checked against the runs: whether each holds.

The chapters word the verdicts (:mod:`autobuild_lib.study.claims`); this module only measures.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.scoring import label_moments
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace
from autobuild_lib.core.train_many import TrainTask, train_many
from autobuild_lib.core.training import TrainConfig

__all__ = ["LOSSES", "space_overview", "unit_overview",
           "label_columns", "label_summary", "label_srcc", "depth_effect", "hop_srcc_runs",
           "hop_srcc_long", "summarise_hop_srcc", "hop_srcc_table", "training_cost", "hop_srcc_claims"]

#: loss name -> ``TrainConfig.hop_srcc``
LOSSES: dict[str, bool] = {"autobuild": True, "mse": False}
LOSS_LABELS = {"autobuild": "AutoBuild (Eq. 4)", "mse": "MSE only"}


# ---------------------------------------------------------- the two spaces
def space_overview(spaces: Sequence[OFASpace]) -> pd.DataFrame:
    """One row per space: stages, units, layer types, resolutions, modules per unit, size."""
    rows = []
    for sp in spaces:
        rows.append({
            "space": sp.name, "stages": sp.n_stages, "units": sp.n_units,
            "layer types": len(sp.layer_types), "resolutions": len(sp.resolutions),
            "modules per unit": [sp.n_modules(u) for u in range(sp.n_units)],
            "architectures": int(sp.size()),
        })
    return pd.DataFrame(rows).set_index("space")


def unit_overview(spaces: Sequence[OFASpace]) -> pd.DataFrame:
    """One row per (space, unit, module length): how many modules of that length the unit has."""
    rows = []
    for sp in spaces:
        t = len(sp.layer_types)
        for u in range(sp.n_units):
            lengths = sp.unit_depths(u)
            for ln in lengths:
                if sp.merge_last and u == sp.n_units - 1:
                    # a merged-unit module of ln layers: stage-5 part of ln - 1 layers + 1 layer
                    count = sum(t ** a * t ** b for a in sp.depths[-2] for b in sp.depths[-1] if a + b == ln)
                else:
                    count = t ** ln
                rows.append({"space": sp.name, "unit": u + 1, "layers": ln, "modules": count})
    frame = pd.DataFrame(rows)
    totals = frame.groupby(["space", "unit"])["modules"].sum()
    for sp in spaces:
        for u in range(sp.n_units):
            if totals[(sp.name, u + 1)] != sp.n_modules(u):
                raise AssertionError(f"{sp.name} unit {u + 1}: per-length counts do not add up to n_modules")
    return frame


# ---------------------------------------------------------------- labels
def label_columns(frame: pd.DataFrame, exclude: Sequence[str] = ("arch",)) -> list[str]:
    """The numeric label columns of a benchmark frame (``arch`` and non-numeric columns left out)."""
    return [c for c in frame.columns if c not in exclude and pd.api.types.is_numeric_dtype(frame[c])]


def label_summary(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """n, mean, std, min, median, max of each label column."""
    _check_columns(frame, columns)
    d = frame[list(columns)]
    return pd.DataFrame({"n": d.count(), "mean": d.mean(), "std": d.std(), "min": d.min(),
                         "median": d.median(), "max": d.max()})


def label_srcc(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Spearman rank correlation between every pair of label columns (NaN for a constant column)."""
    _check_columns(frame, columns)
    cols = list(columns)
    out = pd.DataFrame(np.eye(len(cols)), index=cols, columns=cols)
    values = frame[cols].to_numpy(dtype=np.float64)
    const = [np.ptp(values[:, i]) == 0 for i in range(len(cols))]
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            r = np.nan if const[i] or const[j] else float(spearmanr(values[:, i], values[:, j]).statistic)
            out.iloc[i, j] = out.iloc[j, i] = r
        if const[i]:
            out.iloc[i, i] = np.nan
    return out


def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"label columns {missing} not in the frame; columns: {list(frame.columns)}")


def depth_effect(space: OFASpace, archs: Sequence[OFAArch], y: np.ndarray) -> pd.DataFrame:
    """Per unit: mean label of the shallowest and deepest module length and their difference.

    Built on :func:`~autobuild_lib.core.scoring.label_moments` (Table 2's label moments).  Columns:
    unit (1-based), shallow / deep (layer counts), mu_shallow, mu_deep, n_shallow, n_deep, gain.
    """
    lm = label_moments(space, archs, y).reset_index()
    rows = []
    for u, g in lm.groupby("unit"):
        g = g.sort_values("layers")
        lo, hi = g.iloc[0], g.iloc[-1]
        rows.append({"unit": int(u), "shallow": int(lo["layers"]), "deep": int(hi["layers"]),
                     "mu_shallow": lo["mu"], "mu_deep": hi["mu"], "n_shallow": int(lo["n"]),
                     "n_deep": int(hi["n"]), "gain": hi["mu"] - lo["mu"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------- hop-level SRCC
def hop_srcc_runs(table: GraphTable, labels: Mapping[str, np.ndarray], seeds: Sequence[int],
                  epochs: int, losses: Sequence[str] = ("autobuild", "mse"), space: str = "",
                  progress: bool = False, n_jobs: int = -1, **config: object) -> pd.DataFrame:
    """Train one predictor per (label, loss, seed) and return their test metrics.

    The predictors train ``n_jobs`` at a time (:func:`~autobuild_lib.core.train_many.train_many`,
    -1: all cores), with the same results as one after another, on the fused chain path
    (:func:`~autobuild_lib.core.chain_network.train_fused`) for chain tables; ``progress`` is unused then.

    ``labels`` maps a label name to one value per graph of ``table``.  The seed fixes both the
    90/10 split and the initialisation (``TrainConfig.seed``), so the two losses of one seed
    share the split.  Columns: space, label, loss, seed, epochs, n_train, n_test,
    ``srcc_h0`` ... ``srcc_hM`` (test SRCC of ``||h_G^m||_1``), ``srcc_head`` (of the MLP
    prediction), mae (label units), seconds and cpu_seconds (wall and CPU time of training, not
    deterministic).
    """
    bad = [x for x in losses if x not in LOSSES]
    if bad:
        raise ValueError(f"unknown losses {bad}; choose from {sorted(LOSSES)}")
    if not seeds:
        raise ValueError("need at least one seed")
    keys = [(name, loss, int(s)) for name in labels for loss in losses for s in seeds]
    # no committed cache holds these predictors: they train on the fused chain path
    tasks = [TrainTask(table, labels[name], TrainConfig(epochs=epochs, seed=s, hop_srcc=LOSSES[loss], **config),
                       fused=True) for name, loss, s in keys]
    rows = []
    for (name, loss, s), (res, secs, cpu) in zip(keys, train_many(tasks, n_jobs=n_jobs)):
        if not res.metrics:
            raise ValueError(f"label {name!r}: the test split of {len(table)} graphs is too small "
                             "for test metrics (need >= 2 test graphs)")
        m = res.metrics
        row = {"space": space, "label": name, "loss": loss, "seed": s, "epochs": epochs,
               "n_train": len(res.train_idx), "n_test": m["n_test"]}
        row.update({f"srcc_h{h}": v for h, v in enumerate(m["srcc_hop"])})
        row.update({"srcc_head": m["srcc_pred"], "mae": m["mae"], "seconds": secs, "cpu_seconds": cpu})
        rows.append(row)
    return pd.DataFrame(rows)


def _hop_cols(runs: pd.DataFrame) -> list[str]:
    cols = sorted((c for c in runs.columns if c.startswith("srcc_h") and c[6:].isdigit()), key=lambda c: int(c[6:]))
    if not cols:
        raise ValueError("no srcc_h<m> columns: pass the frame returned by hop_srcc_runs")
    return cols


def hop_srcc_long(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, term): term ``h0``..``hM`` or ``head``, x = hop index (M + 1 for head)."""
    hops = _hop_cols(runs)
    keys = ["space", "label", "loss", "seed"]
    long = runs.melt(id_vars=keys, value_vars=hops + ["srcc_head"], var_name="term", value_name="srcc")
    long["term"] = long["term"].str.replace("srcc_", "", regex=False)
    long["x"] = long["term"].map(lambda t: len(hops) if t == "head" else int(t[1:]))
    return long.sort_values(keys + ["x"]).reset_index(drop=True)


def summarise_hop_srcc(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min, max and n over seeds of every term, per (space, label, loss, term)."""
    long = hop_srcc_long(runs)
    g = long.groupby(["space", "label", "loss", "x", "term"], sort=True)["srcc"]
    out = g.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"})
    return out.reset_index().drop(columns="x").set_index(["space", "label", "loss", "term"])


def hop_srcc_table(runs: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Wide table: one row per (space, label, loss), one column per term (``h0``..``hM``,
    ``head``), each cell ``"mean ± std"`` over the seeds (``std`` omitted for one seed)."""
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    s = summarise_hop_srcc(runs)
    terms = [c[5:] for c in _hop_cols(runs)] + ["head"]

    def cell(r: pd.Series) -> str:
        if not np.isfinite(r["mean"]):
            return "nan"
        if r["n"] < 2 or not np.isfinite(r["std"]):
            return f"{r['mean']:.{decimals}f}"
        return f"{r['mean']:.{decimals}f} ± {r['std']:.{decimals}f}"

    cells = s.apply(cell, axis=1).rename("cell").reset_index()
    wide = cells.pivot(index=["space", "label", "loss"], columns="term", values="cell")
    wide.columns.name = None
    return wide[terms]


def training_cost(runs: pd.DataFrame, n_train: int | None = None, epochs: int | None = None,
                  n_runs: int | None = None) -> dict[str, float]:
    """Measured training cost of ``runs`` and the time projected for another run size.

    Returns ``seconds`` (total), ``per_epoch`` (mean seconds per epoch per predictor),
    ``per_graph_epoch`` (seconds per training graph per epoch) and ``projected`` (seconds
    for ``n_runs`` predictors x ``epochs`` epochs on ``n_train`` training graphs each;
    each defaults to this run's value).  The projection assumes cost linear in graphs x
    epochs, which holds once batches are full (small sets pay relatively more per-batch
    overhead, so a projection from a small fixture errs high, not low).
    """
    need = {"seconds", "epochs", "n_train"}
    if not need <= set(runs.columns) or runs.empty:
        raise ValueError(f"training_cost needs a non-empty frame with columns {sorted(need)}")
    secs = runs["seconds"].to_numpy(dtype=np.float64)
    ep = runs["epochs"].to_numpy(dtype=np.float64)
    ntr = runs["n_train"].to_numpy(dtype=np.float64)
    per_graph_epoch = float(secs.sum() / (ep * ntr).sum())
    n_train = float(ntr.mean()) if n_train is None else n_train
    epochs = float(ep.mean()) if epochs is None else epochs
    n_runs = len(runs) if n_runs is None else n_runs
    if n_train <= 0 or epochs <= 0 or n_runs <= 0:
        raise ValueError("n_train, epochs and n_runs must be positive")
    return {"seconds": float(secs.sum()), "per_epoch": float((secs / ep).mean()),
            "per_graph_epoch": per_graph_epoch,
            "projected": per_graph_epoch * n_train * epochs * n_runs}


def hop_srcc_claims(runs: pd.DataFrame, bar: float = 0.5, tol: float = 0.1) -> pd.DataFrame:
    """The Fig. 2 claims, per (space, label), checked against ``runs`` (both losses needed).

    1. *With the hop-level loss every hop's norm ranks architectures well* -- the paper's words are
       "strong positive SRCC values across all hop levels".  Holds when the seed-mean test SRCC of
       the AutoBuild predictors is at least ``bar`` at every hop (0.5: a large correlation by the
       usual convention).  The text also reports hop 0 beside the MLP head, and the former
       criterion (lowest hop mean >= head mean - ``tol``) with its verdict.
    2. *MSE-only embeddings do not*: per seed, the hop-averaged SRCC of AutoBuild minus that of
       MSE-only (same split); holds when the difference is positive on every seed.

    Columns claim / paper / this study / holds (True, False, or None where NaN SRCCs -- a
    constant norm or label on a tiny test split -- leave it undecided).
    """
    if not 0 <= bar <= 1:
        raise ValueError(f"bar must be in [0, 1], got {bar}")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    need = set(LOSSES)
    have = set(runs["loss"])
    if not need <= have:
        raise ValueError(f"hop_srcc_claims needs runs of both losses {sorted(need)}, got {sorted(have)}")
    hops = _hop_cols(runs)
    rows = []
    for (space, label), g in runs.groupby(["space", "label"], sort=False):
        ab = g[g["loss"] == "autobuild"].set_index("seed").sort_index()
        mse = g[g["loss"] == "mse"].set_index("seed").sort_index()
        hop_means = ab[hops].mean(axis=0, skipna=False)
        worst, head = float(hop_means.min(skipna=False)), float(ab["srcc_head"].mean(skipna=False))
        worst_hop = int(np.argmin(hop_means.to_numpy())) if np.isfinite(worst) else -1
        decided = np.isfinite(worst) and np.isfinite(head)
        ok1 = bool(worst >= bar) if decided else None
        former = ("undecided" if not decided else "met" if worst >= head - tol else "not met")
        rows.append({
            "claim": f"{space} {label}: Eq. 4 loss, every hop norm ranks well",
            "paper": "strong positive SRCC at every hop m = 0..4 (Fig. 2)",
            "this study": f"min over hops {worst:.3f} (hop {worst_hop}); hop 0 {float(hop_means.iloc[0]):.3f} "
                          f"vs head {head:.3f}; criterion: every hop >= {bar:g}; former criterion "
                          f"(every hop >= head - {tol:g}): {former}",
            "holds": ok1})
        seeds = sorted(set(ab.index) & set(mse.index))
        diff = (ab.loc[seeds, hops].mean(axis=1, skipna=False) - mse.loc[seeds, hops].mean(axis=1, skipna=False))
        ok2 = None if (not seeds or diff.isna().any()) else bool((diff > 0).all())
        rows.append({
            "claim": f"{space} {label}: MSE-only hop norms rank worse",
            "paper": "MSE-only embeddings do not rank well (Fig. 2)",
            "this study": f"hop-mean SRCC AutoBuild - MSE: {diff.mean():+.3f} "
                          f"(per seed {', '.join(f'{d:+.3f}' for d in diff)}); criterion: > 0 on every seed",
            "holds": ok2})
    return pd.DataFrame(rows, columns=["claim", "paper", "this study", "holds"])
