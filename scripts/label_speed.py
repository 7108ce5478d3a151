"""Mini-OFA accuracy labels before and after the evaluation speed-up (issue 20, item 1).

For each space it re-labels the 40 reliability subnets of the committed design-C pilot with
today's :func:`~autobuild_lib.benchmarks.miniofa.labels.acc_unit` path and compares every value with the
row stored in ``pilots/C-<space>/reliability.json`` (measured by the code before the speed-up).
It also times the pre-speed-up evaluation loop (:func:`baseline_evaluate`: inputs converted batch
by batch, BN not folded, batch 500, ``no_grad``) against today's on the first ``--n-timed``
subnets, alternating the two in one process so that machine drift hits both alike.

    python scripts/label_speed.py --out data/mini-ofa/label-speed.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autobuild_lib.benchmarks.miniofa.constants import MINI_OFA_DIR
from autobuild_lib.benchmarks.miniofa.labels import load_supernet, machine_info
from autobuild_lib.benchmarks.miniofa.reliability import split_halves
from autobuild_lib.benchmarks.miniofa.supernet import (
    build_data,
    evaluate_subnet,
    extract_subnet,
    recalibrate_bn,
    space_of,
    to_input,
)


@torch.no_grad()
def baseline_evaluate(net, space, arch, data, batch_size: int = 500) -> dict:
    """The evaluation loop as it stood before the speed-up (commit 01baacb)."""
    sub, r = extract_subnet(net, space, arch)
    recalibrate_bn(sub, data.calib_x, r)
    correct, nll = [], []
    for i in range(0, data.eval_x.shape[0], batch_size):
        logits = sub(to_input(data.eval_x[i:i + batch_size], r))
        yb = data.eval_y[i:i + batch_size]
        correct.append(logits.argmax(1) == yb)
        nll.append(F.cross_entropy(logits, yb, reduction="none"))
    c, l = torch.cat(correct).numpy(), torch.cat(nll).numpy()
    return {"acc": 100.0 * float(c.mean()), "ce": float(l.mean())}


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def check_space(space: str, root: Path, n_timed: int) -> dict:
    torch.set_num_threads(1)
    pilot = root / "pilots" / f"C-{space}"
    rows = json.loads((pilot / "reliability.json").read_text())["rows"]
    cfg, net = load_supernet(pilot / "supernet.pt")
    data, sp = build_data(cfg), space_of(space)
    ia, ib = split_halves(data)
    diffs = {k: [] for k in ("acc", "acc_a", "acc_b", "ce")}
    new_s, old_s = [], []
    for i, row in enumerate(rows):
        arch = sp.from_string(row["arch"])
        r, wall, cpu = _timed(lambda: evaluate_subnet(net, sp, arch, data))
        new = {"acc": r["acc"], "ce": r["ce"], "acc_a": 100.0 * float(r["correct"][ia].mean()),
               "acc_b": 100.0 * float(r["correct"][ib].mean())}
        for k in diffs:
            if k in row:
                diffs[k].append(abs(new[k] - row[k]))
        if i < n_timed:
            new_s.append((wall, cpu))
            old, owall, ocpu = _timed(lambda: baseline_evaluate(net, sp, arch, data))
            old_s.append((owall, ocpu))
            diffs.setdefault("acc_vs_baseline", []).append(abs(old["acc"] - r["acc"]))
        print(f"{space} {i + 1}/{len(rows)} acc {new['acc']:.4f} stored {row['acc']:.4f}", flush=True)
    new_a, old_a = np.array(new_s), np.array(old_s)
    return {
        "n_subnets": len(rows),
        "n_eval": int(data.eval_x.shape[0]),
        "max_abs_diff_vs_stored": {k: float(max(v)) for k, v in diffs.items() if v},
        "acc_identical_to_stored": bool(max(diffs["acc"]) == 0.0),
        "n_timed": n_timed,
        "baseline_s_per_label": {"wall": float(old_a[:, 0].mean()), "cpu": float(old_a[:, 1].mean())},
        "new_s_per_label": {"wall": float(new_a[:, 0].mean()), "cpu": float(new_a[:, 1].mean())},
        "speedup_cpu": float(old_a[:, 1].sum() / new_a[:, 1].sum()),
        "note": "new timings include the once-per-resolution input preparation the first time a resolution appears",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=MINI_OFA_DIR)
    ap.add_argument("--space", nargs="+", default=["mbv3", "pn"], choices=["mbv3", "pn"])
    ap.add_argument("--n-timed", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = {"machine": machine_info(), "torch": torch.__version__, "threads": 1,
           "spaces": {s: check_space(s, a.root, a.n_timed) for s in a.space}}
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(a.out)
    print(json.dumps({s: {k: v for k, v in r.items() if k != "note"} for s, r in res["spaces"].items()}, indent=1))


if __name__ == "__main__":
    main()
