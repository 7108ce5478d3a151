"""The predictor's training step on chain graphs, hand-fused in C++ (paper Sec. 3.2, Eqs. 2 and 4).

:class:`ChainNetwork` computes what :class:`AutoBuildPredictor` computes in
training mode on chain graphs (:mod:`~autobuild_lib.core.chain_predictor`
derives GATv2 on a chain) -- FE-MLP, M layers ``ReLU(BN(GATv2(h))) (+ h)``,
the mean-pooled hop norms ``||h_G^m||_1`` (Eq. 2) and the MLP prediction --
with hand-written backward passes, in a C++ extension (``csrc/``):

* ``chain_layer.cpp``: one encoder layer, one pass over the nodes for the
  attention and a few for BatchNorm, plus the layer's matrix products;
* ``chain_network.cpp``: the whole network, forward and backward, in one call
  each (FE-MLP, the layers, pooling and head), gradients written into views of
  the flat gradient of :func:`~autobuild_lib.core.training.flat_parameters`;
* ``rank_loss.cpp``: the Eq. 4 loss and its gradient, with torchsort's l2 soft
  rank re-implemented step for step.

A training step (:meth:`ChainNetwork.step`) is thus three C++ calls and the
fused AdamW kernel (:class:`FlatAdamW`), instead of ~300 tensor operations and
an autograd pass.  Calling the network instead gives an autograd node, for
losses written in torch.

The extension is compiled on first use with torch's ``cpp_extension`` (like
``torchsort``, it needs a C++ compiler) into ``<venv>/autobuild-ext`` and is
reused afterwards; ``scripts/setup.sh`` builds it.

:func:`train_fused` is :func:`~autobuild_lib.core.training.train_predictor`
(same split, seeds, shuffles, batches, AdamW) on this network.  It is not yet
``train_predictor``'s default: the committed full-profile predictors and
evaluation caches of chapters 03-06 are keyed by the code of the default path.
Retrained on a fused path, weights move within float summation order and a
top-K choice can flip (on this path's first version, chapter 05's predictors
swapped one stage-1 module of one equation's top 3, ``k5e4,k7e6,k7e6,k7e6`` for
``k7e6,k7e6,k7e6,k7e6``, changing 81 of its 972 architectures), so making it
the default waits for a refill of those caches.
Chapter 02 (36 predictors, no committed cache) trains on it through
:class:`~autobuild_lib.core.train_many.TrainTask` ``fused``.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from tqdm.auto import tqdm

from autobuild_lib.core.chain_predictor import ChainNodes, is_chain_table
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.training import (
    TrainConfig,
    TrainResult,
    _check_labels,
    evaluate_predictor,
    flat_parameters,
    single_thread,
    split_indices,
    train_predictor,
)

CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / "chain_layer.cpp", CSRC / "chain_network.cpp", CSRC / "rank_loss.cpp"]
# no -ffast-math, no FMA contraction: sums keep their source order on every x86 machine
_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math"]


@functools.cache
def kernels() -> ModuleType:
    """The compiled extension (built on first call, then loaded from the build folder)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPU machines
    from torch.utils import cpp_extension

    build = Path(os.environ.get("AUTOBUILD_EXT_DIR", Path(sys.prefix) / "autobuild-ext"))
    try:
        build.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(name="autobuild_chain_network", sources=[str(p) for p in SOURCES],
                                  extra_cflags=_CFLAGS, build_directory=str(build), verbose=False)
    except (RuntimeError, OSError) as exc:
        raise RuntimeError(f"could not build the fused predictor network (autobuild_lib/core/csrc) in {build} "
                           f"({' '.join(str(exc).split())[:160]}); install g++ and ninja (scripts/setup.sh "
                           "does), or train with train_predictor(..., fast=False)") from None


def _parameter_lists(model: AutoBuildPredictor) -> tuple[list, list, list, list]:
    """The model's parameters in the C++ network's layout (``csrc/chain_network.cpp``): FE-MLP,
    encoder layers, head, and the BatchNorm buffers."""
    fe = [t for emb, lin in model.fe.cat for t in (emb.weight, lin.weight, lin.bias)]
    fe += [t for lin1, lin2 in model.fe.num for t in (lin1.weight, lin1.bias, lin2.weight, lin2.bias)]
    convs = [t for conv, norm in zip(model.convs, model.norms)
             for t in (conv.lin_l.weight, conv.lin_l.bias, conv.lin_r.weight, conv.lin_r.bias, conv.att,
                       conv.bias, norm.weight, norm.bias)]
    head = [model.head[0].weight, model.head[0].bias, model.head[2].weight, model.head[2].bias]
    stats = [t for norm in model.norms for t in (norm.running_mean, norm.running_var, norm.num_batches_tracked)]
    return fe, convs, head, stats


class ChainNetwork:
    """Fused training-mode forward/backward of one :class:`AutoBuildPredictor` on chain graphs.

    ``flat`` must be the flat parameter whose views are ``model``'s parameters
    (:func:`~autobuild_lib.core.training.flat_parameters`).  Calling the network
    returns the prediction ``[B]`` and the hop norms ``[B, M+1]`` with a
    gradient path to ``flat`` only; :meth:`step` computes the Eq. 4 loss and
    writes its gradient into ``flat.grad`` without autograd.  Both update the
    BatchNorm running statistics.
    """

    def __init__(self, model: AutoBuildPredictor, flat: torch.nn.Parameter) -> None:
        if model.convs[0].heads != 1 or any(n.momentum is None for n in model.norms):
            raise ValueError("ChainNetwork fuses one attention head and BatchNorm with a fixed momentum only")
        self.model, self.flat = model, flat
        self.kernels = kernels()
        *self.params, self.stats = _parameter_lists(model)
        listed = {id(p) for group in self.params for p in group}
        if listed != {id(p) for p in model.parameters()} or len(listed) != sum(map(len, self.params)):
            raise ValueError("ChainNetwork does not know every parameter of this model (an edge or residual "
                             "projection in GATv2Conv?)")
        n_values = sum(p.numel() for p in model.parameters())
        if n_values != flat.numel():
            raise ValueError(f"flat parameter has {flat.numel()} values, the model {n_values}: pass the one "
                             "flat_parameters(model) yields")
        # gradients as views of a private buffer (autograd path) and of flat.grad (step)
        self._grad = torch.empty_like(flat)
        self._grads = self._views(self._grad)
        self._flat_grads = self._views(flat.grad) if flat.grad is not None else None
        self._scalars = (float(model.norms[0].momentum), float(model.norms[0].eps),
                         float(model.convs[0].negative_slope))

    def _views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        where, start = {}, 0
        for p in self.model.parameters():
            where[id(p)] = buffer[start:start + p.numel()].view_as(p)
            start += p.numel()
        return [where[id(p)] for group in self.params for p in group]

    def forward(self, nodes: ChainNodes) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Prediction, hop norms and the saved tensors of the backward, without autograd."""
        if len(nodes.cat) < 2:
            raise ValueError("ChainNetwork trains BatchNorm on batch statistics: it needs at least 2 nodes")
        out = self.kernels.network_forward(*self.params, self.stats, nodes.cat, nodes.num,
                                           nodes.follows.reshape(-1), nodes.ptr, *self._scalars)
        return out[0], out[1], out

    def backward(self, saved: list[torch.Tensor], nodes: ChainNodes, dpred: torch.Tensor,
                 dnorms: torch.Tensor, grads: list[torch.Tensor]) -> None:
        """Write the gradient of ``dpred . pred + dnorms . norms`` into the views ``grads``."""
        self.kernels.network_backward(*self.params, grads, saved, nodes.cat, nodes.num, nodes.follows.reshape(-1),
                                      nodes.ptr, dpred, dnorms, self._scalars[2])

    def __call__(self, nodes: ChainNodes) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction ``[B]`` and hop norms ``||h_G^m||_1`` ``[B, M+1]`` (Eq. 2) of the graphs in ``nodes``."""
        return _Fused.apply(self.flat, self, nodes)

    def step(self, nodes: ChainNodes, y: torch.Tensor, hop_srcc: bool = True, strength: float = 1.0) -> float:
        """The Eq. 4 loss of the graphs in ``nodes``; its gradient lands in ``flat.grad`` (overwritten)."""
        if self._flat_grads is None:
            raise ValueError("step() writes into flat.grad: create the flat parameter with flat_parameters()")
        pred, norms, saved = self.forward(nodes)
        loss, dpred, dnorms = self.kernels.rank_loss(y, pred, norms, hop_srcc, strength)
        self.backward(saved, nodes, dpred, dnorms, self._flat_grads)
        return float(loss)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, flat, net: ChainNetwork, nodes: ChainNodes):
        pred, norms, saved = net.forward(nodes)
        ctx.net, ctx.nodes, ctx.saved = net, nodes, saved
        return pred, norms

    @staticmethod
    def backward(ctx, dpred, dnorms):
        net = ctx.net
        net.backward(ctx.saved, ctx.nodes, dpred, dnorms, net._grads)
        return net._grad.clone(), None, None


def rank_loss(y: torch.Tensor, pred: torch.Tensor, norms: torch.Tensor, hop_srcc: bool = True,
              strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4 (:func:`~autobuild_lib.core.chain_predictor.chain_loss`) and its gradients to ``pred`` and
    ``norms``, computed in C++ without autograd."""
    return tuple(kernels().rank_loss(y, pred, norms, hop_srcc, strength))


class ChainTable:
    """A chain table's node inputs, laid out once, for gathering an epoch's graphs in a few operations.

    :meth:`gather` returns what :meth:`ChainNodes.gather
    <autobuild_lib.core.chain_predictor.ChainNodes.gather>` does, without the edge
    list and PyG ``Batch`` of :meth:`GraphTable.batch`.
    """

    def __init__(self, table: GraphTable) -> None:
        nodes = ChainNodes.gather(table, torch.arange(len(table)))
        self.cat, self.num, self.follows, self.ptr = nodes.cat, nodes.num, nodes.follows, nodes.ptr

    def gather(self, idx: torch.Tensor) -> ChainNodes:
        """The graphs ``idx``, in that order."""
        counts = self.ptr[idx + 1] - self.ptr[idx]
        nodes, _ = GraphTable._ranges(self.ptr[idx], counts)
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        return ChainNodes(self.cat[nodes], self.num[nodes], self.follows[nodes], ptr)


class FlatAdamW:
    """``torch.optim.AdamW(fused=True)`` on one flat parameter, without the optimiser's per-step bookkeeping.

    Each :meth:`step` runs the kernel the optimiser runs (``torch._fused_adamw_``,
    after the same step-count increment) on the same state, so the updates are
    the optimiser's bit for bit (``tests/core/test_chain_predictor.py``), for
    ~30 us instead of ~0.5 ms per step on this CPU.
    """

    def __init__(self, flat: torch.nn.Parameter, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.flat, self.lr, self.weight_decay, self.betas, self.eps = flat, lr, weight_decay, betas, eps
        self.exp_avg = torch.zeros_like(flat, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(flat, memory_format=torch.preserve_format)
        self.step_count = torch.zeros((), dtype=torch.float32)

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of ``flat`` from ``flat.grad``."""
        self.step_count.add_(1)
        torch._fused_adamw_([self.flat], [self.flat.grad], [self.exp_avg], [self.exp_avg_sq], [],
                            [self.step_count], amsgrad=False, lr=self.lr, beta1=self.betas[0],
                            beta2=self.betas[1], weight_decay=self.weight_decay, eps=self.eps, maximize=False,
                            grad_scale=None, found_inf=None)


def train_fused(table: GraphTable, y: np.ndarray, config: TrainConfig | None = None,
                train_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
                progress: bool = True) -> TrainResult:
    """:func:`~autobuild_lib.core.training.train_predictor` with the fused :class:`ChainNetwork`.

    Chain tables only (OFA sequence graphs); any other table goes to
    ``train_predictor`` unchanged.  Same split, seeds, epoch shuffles and
    batches as ``train_predictor``, so the two agree within float summation
    order (``tests/core/test_chain_predictor.py``).
    """
    if not is_chain_table(table):
        return train_predictor(table, y, config, train_idx, test_idx, progress=progress)
    config = config or TrainConfig()
    y = _check_labels(table, y)
    if train_idx is None:
        train_idx, test_idx = split_indices(len(y), config.test_fraction, config.seed)
    train_idx = np.asarray(train_idx)
    test_idx = np.asarray(test_idx if test_idx is not None else [], dtype=np.int64)
    if len(train_idx) < 2:
        raise ValueError(f"need at least 2 training graphs, got {len(train_idx)}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    y_mean, y_std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
    ys = torch.tensor((y - y_mean) / y_std, dtype=torch.float32)
    model = AutoBuildPredictor(table.schema, hidden=config.hidden, n_layers=config.n_layers)
    history: list[float] = []
    with single_thread(), flat_parameters(model) as flat:
        opt = FlatAdamW(flat, lr=config.lr, weight_decay=config.weight_decay)
        net, chains = ChainNetwork(model, flat), ChainTable(table)
        for _ in (bar := tqdm(range(config.epochs), desc="train", disable=not progress, leave=False)):
            model.train()
            order = torch.as_tensor(rng.permutation(train_idx), dtype=torch.long)
            ys_order = ys[order]
            nodes = chains.gather(order)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                stop = min(start + config.batch_size, len(order))
                if stop - start < 2:  # BatchNorm and SRCC need two graphs
                    continue
                loss = net.step(nodes.slice(start, stop), ys_order[start:stop], config.hop_srcc)
                opt.step()
                total += loss * (stop - start)
            history.append(total / len(order))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    result = TrainResult(model, config, train_idx, test_idx, y_mean, y_std, history=history)
    if len(test_idx) > 1:
        result.metrics = evaluate_predictor(result, table, y, test_idx)
    return result
