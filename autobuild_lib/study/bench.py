"""``autobuild bench``: how fast training and module scoring run on this machine.

Targets (issue "autobuild_lib"): 200 epochs on 2.7k MBv3 sequence graphs in
<= 60 s on 2 CPU cores (the paper: about 1 epoch per GPU-second on 3k), and
scoring all 36,855 MBv3 / 95,823 PN modules in <= 10 s each.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.scoring import hop_moments, label_moments, score_modules
from autobuild_lib.core.spaces import mbv3, pn
from autobuild_lib.core.training import TrainConfig, train_predictor


def _labelled(space, n: int, seed: int):
    """Random architectures with a cheap deterministic label (timing only)."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    y = np.array([sum(k * e for st in a.stages for k, e in st) / a.n_layers for a in archs])
    return archs, GraphTable([ofa_graph(space, a) for a in archs], OFA_SCHEMA), y


def run_bench(epochs: int = 200, n_archs: int = 2700, seed: int = 0) -> dict:
    out: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    for space in (mbv3(), pn()):
        archs, table, y = _labelled(space, n_archs, seed)
        t = time.perf_counter()
        res = train_predictor(table, y, TrainConfig(epochs=epochs, test_fraction=0.0, seed=seed),
                              progress=False)
        train_s = time.perf_counter() - t
        hm = hop_moments(res.model, table)
        lm = label_moments(space, archs, y)
        t = time.perf_counter()
        scores = score_modules(res, space, hm, lm)
        out[space.name] = {"graphs": n_archs, "epochs": epochs, "train_seconds": round(train_s, 1),
                           "modules": len(scores),
                           "score_seconds": round(time.perf_counter() - t, 2)}
    return out
