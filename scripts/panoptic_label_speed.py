"""Seconds per Mini-Panoptic pseudo and full label under the current ``PanopticConfig`` (issue 15).

Labels the first ``--n-archs`` benchmark architectures exactly as the ``pseudo`` and ``full`` stages
do (:func:`~autobuild_lib.benchmarks.panoptic.generate.pseudo_unit` / ``full_unit``: one torch
thread, the committed ``supernet.pt``) and prints, per label, the wall time and the CPU time of
this process (``time.process_time``; on a loaded machine the CPU time is the better estimate of
the cost on a free core), plus the one-off cost of building the mosaics in each worker.
Writes nothing.

    python scripts/panoptic_label_speed.py --n-archs 2
"""
from __future__ import annotations

import argparse
import json
import os
import time

from autobuild_lib.benchmarks.miniofa.labels import machine_info
from autobuild_lib.benchmarks.panoptic import generate as gen


def _timed(fn, *args) -> tuple[dict, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-archs", type=int, default=2, help="architectures to label with each kind (default 2)")
    args = ap.parse_args()
    if args.n_archs < 1:
        raise SystemExit(f"--n-archs must be >= 1, got {args.n_archs}")
    root, cfg = str(gen.MINI_PANOPTIC_DIR), gen.CONFIG
    _, setup_wall, setup_cpu = _timed(gen._worker_state, root, cfg)
    rows = []
    for key in gen.benchmark_archs(gen.N_FULL)[:args.n_archs]:
        for kind, fn in (("pseudo", gen.pseudo_unit), ("full", gen.full_unit)):
            out, wall, cpu = _timed(fn, root, cfg, key)
            rows.append({"kind": kind, "arch": key, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "flops": round(out["flops"], 3), "pq": round(out.get("pq", out.get("pq_full")), 3)})
            print(json.dumps(rows[-1]), flush=True)
    mean = {k: {m: round(sum(r[m] for r in rows if r["kind"] == k) / args.n_archs, 2) for m in ("wall_s", "cpu_s")}
            for k in ("pseudo", "full")}
    print(json.dumps({"n_val": cfg.n_val, "n_test": cfg.n_test, "n_archs": args.n_archs, "mean": mean,
                      "setup_wall_s": round(setup_wall, 1), "setup_cpu_s": round(setup_cpu, 1),
                      "loadavg_1min": round(os.getloadavg()[0], 2), "machine": machine_info()}))


if __name__ == "__main__":
    main()
