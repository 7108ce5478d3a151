"""Where one training epoch of the AutoBuild predictor spends its time (issue 19, item 1).

Trains on 2,700 MBv3 sequence graphs (the ``bench`` set: random architectures with a
cheap deterministic label) on one thread, with the fused trainer
(:func:`~autobuild_lib.core.chain_network.train_fused`, :class:`ChainNetwork`), under
:mod:`torch.profiler`.  Each part of a training step is wrapped in a ``record_function``
range for the profile only (the library code is not changed): data movement (gathering
and slicing the epoch's graphs), the encoder layers' C++ forward and backward (GATv2,
BatchNorm, ReLU, residual), the rest of the network's forward (FE-MLP, pooling, head)
and of its hand-written backward, the Eq. 4 loss with its soft ranks, the autograd pass
outside the network (loss gradients, soft-rank backward) and the AdamW step.  Prints a
table of milliseconds per epoch and their share of the epoch's wall time, and, with
``--out``, writes it as JSON.

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

import autobuild_lib.core.chain_network as cn
import autobuild_lib.core.chain_predictor as cp
from autobuild_lib.core.chain_network import train_fused
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.core.training import TrainConfig
from autobuild_lib.study.bench import _labelled, cpu_model

PARTS = {
    "data": "data movement",
    "layers_fwd": "encoder layers, forward (C++)",
    "layers_bwd": "encoder layers, backward (C++)",
    "net_fwd": "network forward (FE-MLP, pooling, head)",
    "net_bwd": "network backward (FE-MLP, pooling, head)",
    "loss": "loss (Eq. 4, soft ranks)",
    "backward": "autograd outside the network (loss, soft-rank backward)",
    "optimiser": "optimiser (AdamW)",
}


def _wrapped(name: str, fn: Callable) -> Callable:
    def inner(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return inner


class _TimedKernels:
    """The C++ extension with each call in a profiler range."""

    def __init__(self, k) -> None:
        self.layer_forward = _wrapped(PARTS["layers_fwd"], k.layer_forward)
        self.layer_backward = _wrapped(PARTS["layers_bwd"], k.layer_backward)


@contextlib.contextmanager
def instrumented():
    """Patch the chain path's parts with profiler ranges; undo on exit."""
    kernels = cn.kernels()
    patches = [
        (cn, "kernels", lambda: _TimedKernels(kernels)),
        (cn._Fused, "forward", staticmethod(_wrapped(PARTS["net_fwd"], cn._Fused.forward))),
        (cn._Fused, "backward", staticmethod(_wrapped(PARTS["net_bwd"], cn._Fused.backward))),
        (cn, "chain_loss", _wrapped(PARTS["loss"], cn.chain_loss)),
        (cp.ChainNodes, "gather", classmethod(_wrapped(PARTS["data"], cp.ChainNodes.gather.__func__))),
        (cp.ChainNodes, "slice", _wrapped(PARTS["data"], cp.ChainNodes.slice)),
        (torch.Tensor, "backward", _wrapped(PARTS["backward"], torch.Tensor.backward)),
        (torch.optim.AdamW, "step", _wrapped(PARTS["optimiser"], torch.optim.AdamW.step)),
    ]
    saved = [(obj, attr, obj.__dict__.get(attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, new in patches:
            setattr(obj, attr, new)
        yield
    finally:
        for obj, attr, old in saved:
            if old is None:  # inherited (AdamW.step): drop the patch
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
    train_fused(table, y, TrainConfig(epochs=1, test_fraction=0.0), progress=False)  # warm-up
    with instrumented(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0, c0 = time.perf_counter(), time.thread_time()
        train_fused(table, y, config, progress=False)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    total: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key in PARTS.values():
            total[ev.key] += ev.cpu_time_total / 1000 / args.epochs
    # Ranges nest: the network's ranges hold the C++ layer ranges, and "autograd outside
    # the network" holds the network's backward.  Each row counts its own part only.
    ms = dict(total)
    ms[PARTS["net_fwd"]] -= total[PARTS["layers_fwd"]]
    ms[PARTS["net_bwd"]] -= total[PARTS["layers_bwd"]]
    ms[PARTS["backward"]] -= total[PARTS["net_bwd"]]
    epoch_ms = 1000 * wall / args.epochs  # the profiler's ranges are wall-clock intervals
    rows = sorted(ms.items(), key=lambda kv: -kv[1])
    rows.append(("other (loop, loss.item(), Python)", epoch_ms - sum(ms.values())))
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
