"""Where one training epoch of the AutoBuild predictor spends its time (issue 19, item 1).

Trains on 2,700 MBv3 sequence graphs (the ``bench`` set: random architectures with a
cheap deterministic label) on one thread, on the chain path that ``train_predictor``
takes for OFA graphs, under :mod:`torch.profiler`.  Each part of a training step is
wrapped in a ``record_function`` range for the profile only (the library code is not
changed): data movement (gathering and slicing the epoch's graphs), FE-MLP, each
GATv2 layer, BatchNorm, pooling and head, the Eq. 4 loss with its soft ranks,
backward and the AdamW step.  Prints a table of milliseconds per epoch and
their share of the epoch's wall time, and, with ``--out``, writes it as JSON.

    python scripts/profile_epoch.py [--epochs 3] [--out profile.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import autobuild_lib.core.chain_predictor as cp
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.core.training import TrainConfig, train_predictor
from autobuild_lib.study.bench import _labelled, cpu_model


def _wrapped(name: Callable[[], str], fn: Callable) -> Callable:
    def inner(*args, **kwargs):
        with record_function(name()):
            return fn(*args, **kwargs)
    return inner


@contextlib.contextmanager
def instrumented():
    """Patch the chain path's parts with profiler ranges; undo on exit."""
    layer = {"m": 0}

    def gat_name() -> str:
        layer["m"] += 1
        return f"GATv2 layer {(layer['m'] - 1) % 4 + 1}"

    patches = [
        (cp, "fe_forward", _wrapped(lambda: "FE-MLP", cp.fe_forward)),
        (cp, "gatv2_chain", _wrapped(gat_name, cp.gatv2_chain)),
        (cp, "chain_loss", _wrapped(lambda: "loss (Eq. 4, soft ranks)", cp.chain_loss)),
        (cp.ChainNodes, "gather", classmethod(_wrapped(lambda: "data movement",
                                                       cp.ChainNodes.gather.__func__))),
        (cp.ChainNodes, "slice", _wrapped(lambda: "data movement", cp.ChainNodes.slice)),
        (torch.nn.BatchNorm1d, "forward", _wrapped(lambda: "BatchNorm", torch.nn.BatchNorm1d.forward)),
        (torch.Tensor, "backward", _wrapped(lambda: "backward", torch.Tensor.backward)),
        (torch.optim.AdamW, "step", _wrapped(lambda: "optimiser (AdamW)", torch.optim.AdamW.step)),
        (torch, "segment_reduce", _wrapped(lambda: "pooling", torch.segment_reduce)),
    ]
    saved = [(obj, attr, obj.__dict__.get(attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, new in patches:
            setattr(obj, attr, new)
        yield
    finally:
        for obj, attr, old in saved:
            if old is None:  # inherited (BatchNorm1d.forward): drop the patch
                delattr(obj, attr)
            else:
                setattr(obj, attr, old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    _, table, y = _labelled(mbv3(), 2700, 0)
    config = TrainConfig(epochs=args.epochs, test_fraction=0.0)
    train_predictor(table, y, TrainConfig(epochs=1, test_fraction=0.0), progress=False)  # warm-up
    with instrumented(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0, c0 = time.perf_counter(), time.thread_time()
        train_predictor(table, y, config, progress=False)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    ms: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith(("FE-MLP", "GATv2 layer", "loss (", "data movement", "BatchNorm", "backward",
                              "optimiser", "pooling")):
            ms[ev.key] += ev.cpu_time_total / 1000 / args.epochs
    # The ranges do not nest: BatchNorm and pooling are called by chain_forward, not by the
    # GATv2 or loss ranges; backward holds the whole autograd pass (soft-rank gradients included).
    epoch_ms = 1000 * wall / args.epochs  # the profiler's ranges are wall-clock intervals
    rows = sorted(ms.items(), key=lambda kv: -kv[1])
    rows.append(("other (head, ReLU, residual adds, Python)", epoch_ms - sum(ms.values())))
    print(f"{cpu_model()}, 1 thread, {args.epochs} epochs of 2,700 MBv3 graphs (batch 128), profiled: "
          f"{epoch_ms:.0f} ms wall per epoch ({1000 * cpu / args.epochs:.0f} ms CPU of the thread)")
    print("| part | ms / epoch | share |\n|---|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.1f} | {100 * v / epoch_ms:.0f} % |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu_model": cpu_model(), "epochs": args.epochs, "wall_ms_per_epoch": epoch_ms,
                       "cpu_ms_per_epoch": 1000 * cpu / args.epochs,
                       "parts_ms": dict(rows)}, f, indent=1)


if __name__ == "__main__":
    main()
