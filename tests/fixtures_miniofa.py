"""A small stand-in for the Mini-OFA benchmark folder, for tests and notebook smoke runs.

``write_fixture_mini_ofa(root, n)`` writes what ``data/mini-ofa`` holds, in the same format:
``<space>.csv`` (``arch`` + label columns), ``ir-<space>.npz``, ``supernet-<space>.pt`` and
``MANIFEST.json``.  The architectures are the first ``n`` benchmark architectures; the labels are
*synthetic* (deterministic functions of the architecture, as in :mod:`fixtures_released`) and the
supernets are untrained tiny ones evaluated on a few canvases: this is test scaffolding, never
study data.  Point a notebook at it with ``AUTOBUILD_MINI_OFA_DIR=<root>``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.manifest import write_manifest
from autobuild_lib.miniofa.generate import benchmark_archs
from autobuild_lib.miniofa.labels import save_supernet
from autobuild_lib.miniofa.supernet import SupernetConfig, build_supernet, space_of

from fixtures_released import fixture_labels

TINY = dict(width_mult=0.25, batch_size=4, total_steps=1, n_train=40, n_calib=8, n_heldout=8, n_test=16, seed=3)


def write_fixture_mini_ofa(root: str | Path, n: int = 60) -> Path:
    from autobuild_lib.ir import ir_graph, save_ir_graphs

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for space in ("mbv3", "pn"):
        sp = space_of(space)
        archs = benchmark_archs(space, n)
        rows = []
        for a in archs:
            lab = fixture_labels(a)
            depth = a.n_layers
            acc = 100.0 * lab["acc"] - 20.0
            rows.append({"arch": sp.to_string(a), "acc": acc,
                         "acc_a": acc + 0.05 * (depth % 2), "acc_b": acc - 0.05 * (depth % 2),
                         "ce": 2.0 - 2.0 * lab["acc"] + 0.01 * (depth % 3),
                         "flops": lab["flops"], "n_params": lab["n_params"] / 1e6,
                         "latency_cpu": lab["latency_cpu"], "flops_mini": lab["flops"] / 40.0})
        pd.DataFrame(rows).to_csv(root / f"{space}.csv", index=False)
        save_ir_graphs(root / f"ir-{space}.npz", [ir_graph(sp, a) for a in archs], [r["arch"] for r in rows])
        cfg = SupernetConfig(space=space, **TINY)
        save_supernet(build_supernet(cfg), cfg, root / f"supernet-{space}.pt")
    write_manifest(root)
    return root


if __name__ == "__main__":  # python tests/fixtures_miniofa.py DIR [N]
    import sys

    print(write_fixture_mini_ofa(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60))
