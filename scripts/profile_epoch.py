"""Where one training epoch of the AutoBuild predictor spends its time (issue 19, item 1).

Trains on 2,700 MBv3 sequence graphs (the ``bench`` set: random architectures with a
cheap deterministic label) on one thread, with the fused trainer
(:func:`~autobuild_lib.core.chain_network.train_fused`), under :mod:`torch.profiler`.
Each part of a training step is wrapped in a ``record_function`` range for the profile
only (the library code is not changed): data movement (gathering and slicing the
epoch's graphs), the network's C++ forward and backward, the C++ Eq. 4 loss with its
soft ranks, and the AdamW step.  The matrix products inside the network (``aten::addmm``
and ``aten::mm``, the encoder layers' ``h W^T`` and its two gradients) are reported
from the profiler's operator events.  The encoder layers are then timed one by one on
a typical batch, outside the profiler (median of 50 calls each, scaled to the epoch's
batches), which splits the network's time into the four GATv2 + BatchNorm layers and
the rest (FE-MLP, pooling, head).  Prints markdown tables in milliseconds per epoch
and, with ``--out``, writes them as JSON.

    python scripts/profile_epoch.py [--epochs 3] [--out profile.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import autobuild_lib.core.chain_network as cn
from autobuild_lib.core.chain_predictor import ChainNodes
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.core.training import TrainConfig, flat_parameters, single_thread
from autobuild_lib.study.bench import _labelled, cpu_model

PARTS = {
    "data": "data movement (gather, slices)",
    "fwd": "network forward (C++)",
    "bwd": "network backward (C++)",
    "loss": "loss and its gradient (Eq. 4, soft ranks, C++)",
    "opt": "optimiser (fused AdamW kernel)",
}
MATMULS = ("aten::addmm", "aten::mm")


def _wrapped(name: str, fn: Callable) -> Callable:
    def inner(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)
    return inner


class _TimedKernels:
    """The C++ extension with ``rank_loss`` in a profiler range."""

    def __init__(self, k) -> None:
        self._k = k
        self.rank_loss = _wrapped(PARTS["loss"], k.rank_loss)

    def __getattr__(self, name: str):
        return getattr(self._k, name)


@contextlib.contextmanager
def instrumented():
    """Patch the fused trainer's parts with profiler ranges; undo on exit."""
    kernels = cn.kernels()
    patches = [
        (cn, "kernels", lambda: _TimedKernels(kernels)),
        (cn.ChainNetwork, "forward", _wrapped(PARTS["fwd"], cn.ChainNetwork.forward)),
        (cn.ChainNetwork, "backward", _wrapped(PARTS["bwd"], cn.ChainNetwork.backward)),
        (cn.ChainTable, "gather", _wrapped(PARTS["data"], cn.ChainTable.gather)),
        (ChainNodes, "slice", _wrapped(PARTS["data"], ChainNodes.slice)),
        (cn.FlatAdamW, "step", _wrapped(PARTS["opt"], cn.FlatAdamW.step)),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, new in patches:
            setattr(obj, attr, new)
        yield
    finally:
        for obj, attr, old in saved:
            setattr(obj, attr, old)


def _median_ms(fn: Callable, repeats: int = 50) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def layer_times(table, batch_size: int = 128) -> list[tuple[float, float]]:
    """Forward and backward milliseconds of each encoder layer on one batch of ``batch_size`` graphs."""
    model = AutoBuildPredictor(table.schema).train()
    out = []
    with single_thread(), flat_parameters(model) as flat:
        net = cn.ChainNetwork(model, flat)
        nodes = cn.ChainTable(table).gather(torch.arange(batch_size))
        _, _, saved = net.forward(nodes)
        hops = model.n_layers + 1
        hs, per_layer = saved[6:6 + hops], saved[6 + hops:]
        follows, k = nodes.follows.reshape(-1), net.kernels
        for m, (conv, norm) in enumerate(zip(model.convs, model.norms)):
            w, xlr, alpha, z, rstd = per_layer[5 * m:5 * m + 5]
            b = torch.cat([conv.lin_l.bias, conv.lin_r.bias]).detach()
            stats = (norm.running_mean.clone(), norm.running_var.clone())
            fwd = _median_ms(lambda: k.layer_forward(
                hs[m], follows, w, b, conv.att.view(-1), conv.bias, norm.weight, norm.bias, *stats,
                0.1, 1e-5, 0.2, m > 0))
            dout = torch.ones_like(hs[m + 1])
            bwd = _median_ms(lambda: k.layer_backward(
                dout, hs[m], follows, w, xlr, alpha, z, rstd, conv.att.view(-1), norm.weight, norm.bias, 0.2,
                m > 0))
            out.append((fwd, bwd))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    _, table, y = _labelled(mbv3(), 2700, 0)
    config = TrainConfig(epochs=args.epochs, test_fraction=0.0)
    cn.train_fused(table, y, TrainConfig(epochs=1, test_fraction=0.0), progress=False)  # warm-up
    with instrumented(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0, c0 = time.perf_counter(), time.thread_time()
        cn.train_fused(table, y, config, progress=False)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    events = prof.key_averages()
    ms = {name: sum(ev.cpu_time_total for ev in events if ev.key == name) / 1000 / args.epochs
          for name in PARTS.values()}
    matmul = sum(ev.cpu_time_total for ev in events if ev.key in MATMULS) / 1000 / args.epochs
    epoch_ms = 1000 * wall / args.epochs  # the profiler's ranges are wall-clock intervals
    rows = sorted(ms.items(), key=lambda kv: -kv[1])
    rows.append(("other (epoch loop, Python)", epoch_ms - sum(ms.values())))
    print(f"{cpu_model()}, 1 thread, {args.epochs} epochs of 2,700 MBv3 graphs (batch 128), profiled: "
          f"{epoch_ms:.0f} ms wall per epoch ({1000 * cpu / args.epochs:.0f} ms CPU of the thread)")
    print("| part | ms / epoch | share |\n|---|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.1f} | {100 * v / epoch_ms:.0f} % |")
    print(f"\nmatrix products of the encoder layers ({', '.join(MATMULS)}), inside the network: "
          f"{matmul:.1f} ms / epoch ({100 * matmul / epoch_ms:.0f} %)")

    batches = -(-len(table) // config.batch_size)
    layers = layer_times(table, config.batch_size)
    net_ms = ms[PARTS["fwd"]] + ms[PARTS["bwd"]]
    split = [(f"encoder layer {m + 1} (GATv2 + BatchNorm + ReLU{' + residual' if m else ''})",
              f * batches, b * batches) for m, (f, b) in enumerate(layers)]
    rest_f = ms[PARTS["fwd"]] - sum(r[1] for r in split)
    rest_b = ms[PARTS["bwd"]] - sum(r[2] for r in split)
    split.append(("FE-MLP, pooling, head (the rest)", rest_f, rest_b))
    print(f"\nthe network's {net_ms:.1f} ms / epoch by part (layers timed alone on one batch x {batches})")
    print("| part | forward ms / epoch | backward ms / epoch |\n|---|---|---|")
    for name, f, b in split:
        print(f"| {name} | {f:.1f} | {b:.1f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"cpu_model": cpu_model(), "epochs": args.epochs, "wall_ms_per_epoch": epoch_ms,
                       "cpu_ms_per_epoch": 1000 * cpu / args.epochs, "parts_ms": dict(rows),
                       "matmul_ms": matmul, "network_ms": {n: [f, b] for n, f, b in split}}, fh, indent=1)


if __name__ == "__main__":
    main()
