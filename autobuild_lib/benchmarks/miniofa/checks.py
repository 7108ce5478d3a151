"""Quality checks of a finished Mini-OFA table (issue "Mini-OFA benchmark", must-show list).

:func:`run_checks` writes ``checks-<space>.json`` with

* label statistics and spread: mean / std / min / max of every label column;
* SRCC of ``acc`` with ``flops``, total depth, ``latency_cpu`` and ``flops_mini``;
* repeatability: ``n_repeat`` random rows re-evaluated by the :class:`Evaluator` in a *fresh
  process* (no table, empty cache): how many ``acc`` values are bit-identical, whether the first
  ``n_exact`` rows reproduce ``acc``, ``flops`` and ``n_params`` exactly, and the SRCC between
  the re-measured and the stored ``latency_cpu`` (bar >= 0.9);
* IR graphs: that all of them load, keyed like the table, and their op-type vocabulary.

Before the accuracy labels exist (no ``<space>.csv``), the checks run on the finished static and
latency work units instead (``"partial": true``): statistics, fresh-process re-measurement of
``flops`` / ``n_params`` (exact) and ``latency_cpu`` (SRCC), IR graphs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from autobuild_lib.benchmarks.miniofa.constants import LABEL_COLUMNS, load_mini_ofa
from autobuild_lib.benchmarks.miniofa.supernet import space_of

__all__ = ["run_checks", "reevaluate"]


def _srcc(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def reevaluate(space: str, root: str, archs_json: str, out_json: str, partial: bool = False) -> None:
    """Entry point of the fresh process: evaluate ``archs`` without table or cache, write JSON.

    ``partial``: only the static labels and the latency, with the generation's own unit functions.
    """
    import torch

    from autobuild_lib.benchmarks.miniofa.evaluator import Evaluator
    from autobuild_lib.benchmarks.miniofa.labels import latency_unit, static_unit

    torch.set_num_threads(1)
    archs = json.loads(Path(archs_json).read_text())
    if partial:
        rows = [{**static_unit(space, a), **latency_unit(space, a)} for a in archs]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ev = Evaluator(root, cache=Path(tmp) / "cache.sqlite", latency="measure", use_table=False)
            df = ev.evaluate_many(space, archs, progress=False)
        rows = [{"arch": r["arch"], **{c: float(r[c]) for c in LABEL_COLUMNS}} for r in df.to_dict("records")]
    Path(out_json).write_text(json.dumps(rows))  # float repr round-trips exactly


def _partial_frame(space: str, root: Path):
    """``arch, flops, n_params, latency_cpu`` of the benchmark archs from the finished work units."""
    import pandas as pd

    from autobuild_lib.benchmarks.miniofa.constants import benchmark_archs
    from autobuild_lib.benchmarks.pipeline.workunits import ShardStore

    sp = space_of(space)
    static = ShardStore(root / "work" / space / "static").rows()
    keys = [sp.to_string(a) for a in benchmark_archs(space, len(static))]
    rows = {stage: ShardStore(root / "work" / space / stage).merged(keys) for stage in ("static", "latency")}
    return pd.DataFrame([{**a, **b} for a, b in zip(rows["static"], rows["latency"])])


def run_checks(space: str, root: str | Path, n_repeat: int = 50, n_exact: int = 20, seed: int = 0,
               progress: bool = True) -> dict:
    """Run the checks (see module docstring) and write ``root/checks-<space>.json``; returns them."""
    from autobuild_lib.core.ir import IR_OPS, read_ir_graphs

    root = Path(root)
    partial = not (root / f"{space}.csv").exists()
    frame = _partial_frame(space, root) if partial else load_mini_ofa(space, root)
    columns = [c for c in LABEL_COLUMNS if c in frame.columns]
    sp = space_of(space)
    depth = [sp.from_string(a).n_layers for a in frame["arch"]]
    out: dict = {"space": space, "rows": len(frame), "partial": partial}
    out["labels"] = {c: {"mean": float(frame[c].mean()), "std": float(frame[c].std()),
                         "min": float(frame[c].min()), "max": float(frame[c].max())} for c in columns}
    out["srcc_flops_latency"] = _srcc(frame["flops"], frame["latency_cpu"])
    if not partial:
        out["srcc_acc"] = {"flops": _srcc(frame["acc"], frame["flops"]), "depth": _srcc(frame["acc"], depth),
                           "latency_cpu": _srcc(frame["acc"], frame["latency_cpu"]),
                           "flops_mini": _srcc(frame["acc"], frame["flops_mini"])}

    pick = np.sort(np.random.default_rng([seed, 13]).choice(len(frame), min(n_repeat, len(frame)), replace=False))
    sub = frame.iloc[pick].reset_index(drop=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        a_path, o_path = Path(tmp) / "archs.json", Path(tmp) / "out.json"
        a_path.write_text(json.dumps(sub["arch"].tolist()))
        code = (f"from autobuild_lib.benchmarks.miniofa.checks import reevaluate; "
                f"reevaluate({space!r}, {str(root)!r}, {str(a_path)!r}, {str(o_path)!r}, partial={partial!r})")
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        again = json.loads(o_path.read_text())
    exact_cols = ("flops", "n_params") if partial else ("acc", "flops", "n_params")
    exact = [all(again[i][c] == sub.loc[i, c] for c in exact_cols) for i in range(min(n_exact, len(sub)))]
    out["repeat"] = {
        "n": len(sub), "exact_columns": list(exact_cols),
        "n_exact_rows": len(exact), "exact_rows_identical": int(sum(exact)),
        "latency_srcc": _srcc([a["latency_cpu"] for a in again], sub["latency_cpu"]),
        "latency_median_abs_rel_diff": float(np.median(np.abs(
            np.array([a["latency_cpu"] for a in again]) / sub["latency_cpu"].to_numpy() - 1))),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if not partial:
        out["repeat"]["acc_identical"] = int(sum(a["acc"] == b for a, b in zip(again, sub["acc"])))

    keys, graphs = read_ir_graphs(root / f"ir-{space}.npz")
    counts = np.bincount(np.concatenate([g.x_cat[:, 0].numpy() for g in graphs]), minlength=len(IR_OPS))
    out["ir"] = {"graphs": len(graphs), "keys_match_table": keys == frame["arch"].tolist(),
                 "nodes_mean": float(np.mean([g.num_nodes for g in graphs])),
                 "op_vocabulary": {IR_OPS[i]: int(c) for i, c in enumerate(counts) if c}}
    path = root / f"checks-{space}.json"
    tmp = root / f".partial-{path.name}.{os.getpid()}"
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    return {"partial": partial, "repeat": out["repeat"], "srcc_acc": out.get("srcc_acc")}
