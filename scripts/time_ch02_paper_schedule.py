"""Wall time of chapter 02's 36 predictors at the paper's schedule (issue 19).

2 spaces x 3 labels (acc, latency_cpu, flops) x 2 losses x 3 seeds, 200 epochs at
lr 1e-4, batch 128, on the 3,000 Mini-OFA benchmark architectures per space with
the synthetic stand-in labels of ``tests/fixtures_released.py`` (until the real
labels exist), trained by :func:`autobuild_lib.core.analysis.hop_srcc_runs` on all cores.
On a shared machine the wall time includes waiting for cores; ``idle_estimate_minutes``
is the training threads' CPU time divided by the number of jobs (the 36 runs are
the same size, so they balance), plus the measured set-up time.  With ``--epochs``
below 200 the CPU time is also projected linearly to 200 epochs.

    python scripts/time_ch02_paper_schedule.py [--epochs 200] [--n 3000] [--n-jobs -1]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests" / "fixtures")]

from fixtures_released import fixture_labels  # noqa: E402

from autobuild_lib.benchmarks.miniofa.generate import benchmark_archs  # noqa: E402
from autobuild_lib.benchmarks.miniofa.supernet import space_of  # noqa: E402
from autobuild_lib.core import analysis  # noqa: E402
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph  # noqa: E402
from autobuild_lib.study.bench import cpu_model  # noqa: E402

LABELS = ("acc", "latency_cpu", "flops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--n-jobs", type=int, default=-1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs, setup = [], 0.0
    for space in ("mbv3", "pn"):
        t = time.perf_counter()
        archs = benchmark_archs(space, args.n)
        table = GraphTable([ofa_graph(space_of(space), a) for a in archs], OFA_SCHEMA)
        labels = {lab: np.array([fixture_labels(a)[lab] for a in archs], dtype=float) for lab in LABELS}
        setup += time.perf_counter() - t
        runs.append(analysis.hop_srcc_runs(table, labels, [0, 1, 2], args.epochs, space=space,
                                           lr=1e-4, batch_size=128, n_jobs=args.n_jobs))
    wall = time.perf_counter() - t0
    cpu = sum(float(r["cpu_seconds"].sum()) for r in runs)
    jobs = os.cpu_count() if args.n_jobs == -1 else args.n_jobs
    print(json.dumps({"predictors": sum(len(r) for r in runs), "epochs": args.epochs, "archs": args.n,
                      "wall_seconds": round(wall, 1), "setup_seconds": round(setup, 1),
                      "sum_of_run_cpu_seconds": round(cpu, 1), "n_jobs": jobs,
                      "idle_estimate_minutes": round((setup + cpu / jobs) / 60, 2),
                      "idle_estimate_minutes_at_200_epochs": round((setup + cpu / jobs * 200 / args.epochs) / 60, 2),
                      "cpus": os.cpu_count(), "cpu_model": cpu_model()}, indent=2))


if __name__ == "__main__":
    main()
