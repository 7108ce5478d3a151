"""``autobuild bench``: how fast training and module scoring run on this machine.

Targets (issue "autobuild_lib"): 200 epochs on 2.7k MBv3 sequence graphs in
<= 60 s on 2 CPU cores (the paper: about 1 epoch per GPU-second on 3k), and
scoring all 36,855 MBv3 / 95,823 PN modules in <= 10 s each.  The fast path
is :func:`~autobuild_lib.core.chain_network.train_fused` (the whole network and
the Eq. 4 loss in C++).  Issue 19: the MBv3 training is also timed with the frozen
baseline loop (:mod:`~autobuild_lib.study.bench_baseline`) and with
``train_predictor``'s default path (the tensor chain path, which the committed
caches were trained with) in the same run, on one thread; ``speedup_ratio`` is
baseline seconds over fast-path seconds (wall clock), ``speedup_ratio_cpu``
the same in CPU seconds of the training thread, which a shared machine
disturbs less, and ``default_path_speedup_ratio`` baseline over default path.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch

from autobuild_lib.core.chain_network import train_fused
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.scoring import hop_moments, label_moments, score_modules
from autobuild_lib.core.spaces import mbv3, pn
from autobuild_lib.core.training import TrainConfig, train_predictor
from autobuild_lib.study.bench_baseline import train_baseline


def _labelled(space, n: int, seed: int):
    """Random architectures with a cheap deterministic label (timing only)."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    y = np.array([sum(k * e for st in a.stages for k, e in st) / a.n_layers for a in archs])
    return archs, GraphTable([ofa_graph(space, a) for a in archs], OFA_SCHEMA), y


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform``'s guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timed(fn, *args, **kw) -> tuple[object, float, float]:
    """``fn``'s result, wall seconds and CPU seconds of this thread."""
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - wall, time.thread_time() - cpu


def run_bench(epochs: int = 200, n_archs: int = 2700, seed: int = 0) -> dict:
    out: dict = {"machine": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
                 "cpus": os.cpu_count(), "torch_threads_training": 1, "torch": torch.__version__}
    for space in (mbv3(), pn()):
        archs, table, y = _labelled(space, n_archs, seed)
        config = TrainConfig(epochs=epochs, test_fraction=0.0, seed=seed)
        res, train_s, train_cpu = _timed(train_fused, table, y, config, progress=False)
        hm = hop_moments(res.model, table)
        lm = label_moments(space, archs, y)
        t = time.perf_counter()
        scores = score_modules(res, space, hm, lm)
        out[space.name] = {"graphs": n_archs, "epochs": epochs, "train_seconds": round(train_s, 1),
                           "s_per_epoch": round(train_s / epochs, 4), "modules": len(scores),
                           "score_seconds": round(time.perf_counter() - t, 2)}
        if space.name == "mbv3":
            _, base_s, base_cpu = _timed(train_baseline, table, y, config)
            _, chain_s, _ = _timed(train_predictor, table, y, config, progress=False)
            out[space.name].update(
                baseline_train_seconds=round(base_s, 1), baseline_s_per_epoch=round(base_s / epochs, 4),
                speedup_ratio=round(base_s / train_s, 2), speedup_ratio_cpu=round(base_cpu / train_cpu, 2),
                default_path_train_seconds=round(chain_s, 1), default_path_speedup_ratio=round(base_s / chain_s, 2))
    out["speedup_ratio"] = out["mbv3"]["speedup_ratio"]
    return out
