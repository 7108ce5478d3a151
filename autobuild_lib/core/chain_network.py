"""The predictor's training forward and backward on chain graphs, hand-fused (paper Sec. 3.2, Eq. 2).

:class:`ChainNetwork` computes what :class:`AutoBuildPredictor` computes in
training mode on chain graphs (:mod:`~autobuild_lib.core.chain_predictor`
derives GATv2 on a chain) -- FE-MLP, M layers ``ReLU(BN(GATv2(h))) (+ h)``,
the mean-pooled hop norms ``||h_G^m||_1`` (Eq. 2) and the MLP prediction --
as one autograd node over the flat parameter vector of
:func:`~autobuild_lib.core.training.flat_parameters`.
Its backward is written out by hand: the encoder layers run in a C++ kernel
(``csrc/chain_layer.cpp``: one pass over the nodes for the attention and a
few for BatchNorm, plus the layer's matrix products), the FE-MLP, pooling and
head in a few dozen tensor operations, and every parameter's gradient lands
in one flat tensor.  A step thus runs ~100 operations instead of ~300, with
one gradient accumulation instead of 55.

The extension is compiled on first use with torch's ``cpp_extension`` (like
``torchsort``, it needs a C++ compiler) into ``<venv>/autobuild-ext`` and is
reused afterwards; ``scripts/setup.sh`` builds it.

:func:`train_fused` is :func:`~autobuild_lib.core.training.train_predictor`
(same split, seeds, shuffles, batches, AdamW) on this network.  It is not yet
``train_predictor``'s default: the committed full-profile predictors and
evaluation caches of chapters 03-06 are keyed by the code of the default path,
and retrained on this one, chapter 05's predictors swap one stage-1 module of
one equation's top 3 (``k5e4,k7e6,k7e6,k7e6`` for ``k7e6,k7e6,k7e6,k7e6``), which
changes 81 of its 972 architectures, so making it the default waits for a
refill of those caches.
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
import torch.nn.functional as F
from tqdm.auto import tqdm

from autobuild_lib.core.chain_predictor import ChainNodes, chain_loss, is_chain_table
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

SOURCE = Path(__file__).with_name("csrc") / "chain_layer.cpp"
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
        return cpp_extension.load(name="autobuild_chain_layer", sources=[str(SOURCE)], extra_cflags=_CFLAGS,
                                  build_directory=str(build), verbose=False)
    except (RuntimeError, OSError) as exc:
        raise RuntimeError(f"could not build the fused predictor layer {SOURCE.name} in {build} "
                           f"({' '.join(str(exc).split())[:160]}); install g++ and ninja (scripts/setup.sh "
                           "does), or train with train_predictor(..., fast=False)") from None


class ChainNetwork:
    """Fused training-mode forward/backward of one :class:`AutoBuildPredictor` on chain graphs.

    ``flat`` must be the flat parameter whose views are ``model``'s parameters
    (:func:`~autobuild_lib.core.training.flat_parameters`); calling the network
    returns the prediction ``[B]`` and the hop norms ``[B, M+1]`` with a
    gradient path to ``flat`` only, and updates the BatchNorm running statistics.
    """

    def __init__(self, model: AutoBuildPredictor, flat: torch.nn.Parameter) -> None:
        if model.convs[0].heads != 1 or any(n.momentum is None for n in model.norms):
            raise ValueError("ChainNetwork fuses one attention head and BatchNorm with a fixed momentum only")
        self.model, self.flat = model, flat
        self.kernels = kernels()
        n_values = sum(p.numel() for p in model.parameters())
        if n_values != flat.numel():
            raise ValueError(f"flat parameter has {flat.numel()} values, the model {n_values}: pass the one "
                             "flat_parameters(model) yields")
        # every parameter's gradient is a view into one buffer, which backward fills completely
        self._grad = torch.empty_like(flat)
        self.grads: dict[int, torch.Tensor] = {}
        start = 0
        for p in model.parameters():
            self.grads[id(p)] = self._grad[start:start + p.numel()].view_as(p)
            start += p.numel()

    def __call__(self, nodes: ChainNodes) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction ``[B]`` and hop norms ``||h_G^m||_1`` ``[B, M+1]`` (Eq. 2) of the graphs in ``nodes``."""
        if len(nodes.cat) < 2:
            raise ValueError("ChainNetwork trains BatchNorm on batch statistics: it needs at least 2 nodes")
        return _Fused.apply(self.flat, self, nodes.cat, nodes.num, nodes.follows.reshape(-1).contiguous(), nodes.ptr)


def _fe(model: AutoBuildPredictor, cat: torch.Tensor, num: torch.Tensor):
    """FE-MLP pre-activations ``[N, C]`` and the numeric branches' hidden activations."""
    fe = model.fe
    cols, hidden = [], []
    if fe.cat:
        values = torch.cat([F.linear(emb.weight, lin.weight, lin.bias) for emb, lin in fe.cat]).squeeze(1)
        cols.append(values[cat])
    start = 0
    for f, (lin1, lin2) in zip(fe.schema.numeric, fe.num):
        x = num[:, start:start + f.dim]
        a1 = F.linear(x, lin1.weight, lin1.bias)
        hidden.append((x, a1))
        cols.append(F.linear(a1, lin2.weight, lin2.bias))
        start += f.dim
    return torch.cat(cols, dim=1), hidden


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, flat, net: ChainNetwork, cat, num, follows, ptr):
        model, k = net.model, net.kernels
        raw, hidden = _fe(model, cat, num)
        h = raw.abs()
        hs, saved = [h], []
        for m, (conv, norm) in enumerate(zip(model.convs, model.norms)):
            w = torch.cat([conv.lin_l.weight, conv.lin_r.weight])
            b = torch.cat([conv.lin_l.bias, conv.lin_r.bias])
            out, xlr, alpha, z, rstd = k.layer_forward(
                h, follows, w, b, conv.att.view(-1), conv.bias, norm.weight, norm.bias, norm.running_mean,
                norm.running_var, float(norm.momentum), float(norm.eps), float(conv.negative_slope), m > 0)
            norm.num_batches_tracked.add_(1)
            saved.append((w, xlr, alpha, z, rstd))
            h = out
            hs.append(h)
        counts = ptr.diff()
        rows = torch.stack([x.sum(dim=1) for x in hs], dim=1)
        pooled = torch.segment_reduce(torch.cat([rows, h], dim=1), "sum", lengths=counts) / counts.unsqueeze(1)
        lin1, lin2 = model.head[0], model.head[2]
        x = pooled[:, len(hs):]
        a = F.linear(x, lin1.weight, lin1.bias)
        r = torch.relu(a)
        pred = F.linear(r, lin2.weight, lin2.bias).squeeze(-1)
        ctx.net, ctx.cat, ctx.follows, ctx.counts = net, cat, follows, counts
        ctx.raw, ctx.hidden, ctx.hs, ctx.saved, ctx.head = raw, hidden, hs, saved, (x, a, r)
        return pred, pooled[:, :len(hs)]

    @staticmethod
    def backward(ctx, dpred, dnorms):
        net = ctx.net
        model, k = net.model, net.kernels
        g = net.grads
        # head: pred = lin2(ReLU(lin1(x)))
        lin1, lin2 = model.head[0], model.head[2]
        x, a, r = ctx.head
        dp = dpred.unsqueeze(1)
        torch.mm(dp.t(), r, out=g[id(lin2.weight)])
        g[id(lin2.bias)].copy_(dp.sum(0))
        da = (dp @ lin2.weight) * (a > 0)
        torch.mm(da.t(), x, out=g[id(lin1.weight)])
        torch.sum(da, 0, out=g[id(lin1.bias)])
        # mean pooling of [row sums of h^0..h^M, h^M] per graph
        n_hops = len(ctx.hs)
        dpooled = torch.cat([dnorms, da @ lin1.weight], dim=1) / ctx.counts.unsqueeze(1)
        dcols = dpooled.repeat_interleave(ctx.counts, dim=0)
        dh = dcols[:, n_hops:] + dcols[:, n_hops - 1:n_hops]
        for m in range(model.n_layers - 1, -1, -1):
            conv, norm = model.convs[m], model.norms[m]
            w, xlr, alpha, z, rstd = ctx.saved[m]
            dh, dw, db, datt, dbias, dgamma, dbeta = k.layer_backward(
                dh, ctx.hs[m], ctx.follows, w, xlr, alpha, z, rstd, conv.att.view(-1), norm.weight, norm.bias,
                float(conv.negative_slope), m > 0)
            width = conv.lin_l.weight.shape[0]
            g[id(conv.lin_l.weight)].copy_(dw[:width])
            g[id(conv.lin_r.weight)].copy_(dw[width:])
            g[id(conv.lin_l.bias)].copy_(db[:width])
            g[id(conv.lin_r.bias)].copy_(db[width:])
            g[id(conv.att)].copy_(datt.view_as(conv.att))
            g[id(conv.bias)].copy_(dbias)
            g[id(norm.weight)].copy_(dgamma)
            g[id(norm.bias)].copy_(dbeta)
            dh = dh + dcols[:, m:m + 1]
        # FE-MLP: h^0 = |raw|
        draw = dh * ctx.raw.sign()
        fe = model.fe
        if fe.cat:
            n_cat = len(fe.cat)
            sizes = [emb.weight.shape[0] for emb, _ in fe.cat]
            dvalues = torch.zeros(sum(sizes)).index_add_(0, ctx.cat.reshape(-1), draw[:, :n_cat].reshape(-1))
            for dv, (emb, lin) in zip(dvalues.split(sizes), fe.cat):
                dv = dv.unsqueeze(1)
                torch.mm(dv, lin.weight, out=g[id(emb.weight)])
                torch.mm(dv.t(), emb.weight, out=g[id(lin.weight)])
                g[id(lin.bias)].copy_(dv.sum(0))
        col = len(fe.cat)
        for (xn, a1), (lin1, lin2) in zip(ctx.hidden, fe.num):
            dout = draw[:, col:col + 1]
            torch.mm(dout.t(), a1, out=g[id(lin2.weight)])
            g[id(lin2.bias)].copy_(dout.sum(0))
            da1 = dout @ lin2.weight
            torch.mm(da1.t(), xn, out=g[id(lin1.weight)])
            torch.sum(da1, 0, out=g[id(lin1.bias)])
            col += 1
        return net._grad.clone(), None, None, None, None, None


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
        opt = torch.optim.AdamW([flat], lr=config.lr, weight_decay=config.weight_decay, fused=True)
        net = ChainNetwork(model, flat)
        for _ in (bar := tqdm(range(config.epochs), desc="train", disable=not progress, leave=False)):
            model.train()
            order = torch.as_tensor(rng.permutation(train_idx), dtype=torch.long)
            ys_order = ys[order]
            nodes = ChainNodes.gather(table, order)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                stop = min(start + config.batch_size, len(order))
                if stop - start < 2:  # BatchNorm and SRCC need two graphs
                    continue
                pred, norms = net(nodes.slice(start, stop))
                loss = chain_loss(ys_order[start:stop], pred, norms, config.hop_srcc)
                flat.grad.zero_()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * (stop - start)
            history.append(total / len(order))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    result = TrainResult(model, config, train_idx, test_idx, y_mean, y_std, history=history)
    if len(test_idx) > 1:
        result.metrics = evaluate_predictor(result, table, y, test_idx)
    return result
