"""Fast forward and training loop of the predictor on chain (sequence) graphs.

The OFA sequence graphs (paper Sec. 3.1) are chains: node ``i`` of a graph
receives a message from node ``i - 1`` and from its own self loop.  Stored
flat, graph after graph, the predecessor of node ``k`` is node ``k - 1``
unless ``k`` opens its graph.  So GATv2 (Brody et al., the message passing of
Sec. 3.2) needs no edge list, gather or scatter softmax here::

    e_ij = a^T LeakyReLU(W_l h_j + W_r h_i)           j in {i - 1, i}
    alpha_prev = softmax(e_{i,i-1}, e_{i,i}) = sigmoid(e_{i,i-1} - e_{i,i})
    out_i = W_l h_i + alpha_prev (W_l h_{i-1} - W_l h_i) + bias

which is the same function as PyG's ``GATv2Conv`` (heads 1, no dropout) with
self loops, on the same parameters of an
:class:`~autobuild_lib.core.predictor.AutoBuildPredictor`; only float summation
order differs.  The FE-MLP's categorical columns become one table of
per-value scalars ``f_c(v)`` and one gather, the hop norms
``||h_G^m||_1`` (Eq. 2) of all hops are one matrix product, and the soft
ranks of all hops (Eq. 4) one ``torchsort`` call.  The trained model is the
ordinary :class:`AutoBuildPredictor`; prediction, scoring and saving are
unchanged.  IR and SD graphs are not chains and keep the PyG path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchsort
from tqdm.auto import tqdm

from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor


def is_chain_table(table: GraphTable) -> bool:
    """True when every graph of ``table`` is the chain ``0 -> 1 -> ... -> n-1``."""
    counts = table.node_ptr.diff()
    if (counts < 1).any() or table.edge_index.shape[1] != int((counts - 1).sum()):
        return False
    src = torch.arange(int(table.node_ptr[-1]))
    opens = torch.zeros(len(src), dtype=torch.bool)
    opens[table.node_ptr[:-1]] = True
    src = src[~torch.roll(opens, -1)]  # every node except the last of its graph
    return torch.equal(table.edge_index, torch.stack([src, src + 1]))


@dataclass
class ChainNodes:
    """Node inputs of some graphs of a chain table, graph after graph.

    ``cat`` holds rows of the concatenated FE-MLP value table (category
    offsets added), ``follows`` is 1.0 where a node has a predecessor, and
    ``ptr`` the node offsets of the graphs.
    """

    cat: torch.Tensor
    num: torch.Tensor
    follows: torch.Tensor
    ptr: torch.Tensor

    @classmethod
    def gather(cls, table: GraphTable, idx: torch.Tensor) -> ChainNodes:
        """The graphs ``idx`` of ``table``, in that order."""
        batch = table.batch(idx)
        sizes = torch.tensor([0] + [len(f.values) for f in table.schema.categorical])
        cat = batch.x_cat + sizes.cumsum(0)[:-1]
        follows = torch.ones(len(batch.x_cat), 1)
        follows[batch.ptr[:-1]] = 0.0
        return cls(cat, batch.x_num, follows, batch.ptr)

    def slice(self, start: int, stop: int) -> ChainNodes:
        """Graphs ``start:stop`` as views."""
        n0, n1 = int(self.ptr[start]), int(self.ptr[stop])
        return ChainNodes(self.cat[n0:n1], self.num[n0:n1], self.follows[n0:n1],
                          self.ptr[start:stop + 1] - n0)


def fe_forward(model: AutoBuildPredictor, nodes: ChainNodes) -> torch.Tensor:
    """FE-MLP ``h^0 = |[f_1(x^1), ..., f_C(x^C)]|`` with one gather for all categories."""
    fe = model.fe
    cols = []
    if fe.cat:
        values = torch.cat([lin(emb.weight) for emb, lin in fe.cat]).squeeze(1)
        cols.append(values[nodes.cat])
    start = 0
    for f, lin in zip(fe.schema.numeric, fe.num):
        cols.append(lin(nodes.num[:, start:start + f.dim]))
        start += f.dim
    return torch.cat(cols, dim=1).abs()


def gatv2_chain(conv, h: torch.Tensor, follows: torch.Tensor) -> torch.Tensor:
    """PyG ``GATv2Conv`` (heads 1) on flat chains with self loops."""
    xlr = F.linear(h, torch.cat([conv.lin_l.weight, conv.lin_r.weight]),
                   torch.cat([conv.lin_l.bias, conv.lin_r.bias]))
    xl, xr = xlr.split(xl_width := conv.lin_l.weight.shape[0], dim=1)
    prev = F.pad(xl[:-1], (0, 0, 1, 0))
    scores = F.leaky_relu(torch.stack([prev, xl]) + xr, conv.negative_slope) @ conv.att.view(xl_width)
    alpha = torch.sigmoid(scores[0] - scores[1]).unsqueeze(1) * follows
    return torch.addcmul(xl, alpha, prev - xl) + conv.bias


def chain_forward(model: AutoBuildPredictor, nodes: ChainNodes,
                  pool_all: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction ``[B]`` and the hop norms ``||h_G^m||_1`` ``[B, M+1]`` (Eq. 2).

    Embeddings are non-negative, so the L1 norm of a hop's mean is the mean
    of the nodes' row sums; only those and the last hop are pooled.  With
    ``pool_all`` the second output is every hop's ``h_G^m`` side by side
    instead, ``[B, sum d_m]`` (:func:`split_hops`).
    """
    h = fe_forward(model, nodes)
    hs = [h]
    for m, (conv, norm) in enumerate(zip(model.convs, model.norms)):
        out = torch.relu(norm(gatv2_chain(conv, h, nodes.follows)))
        h = out if m == 0 else out + h
        hs.append(h)
    counts = nodes.ptr.diff()
    cols = hs if pool_all else [torch.stack([x.sum(dim=1) for x in hs], dim=1), h]
    pooled = torch.segment_reduce(torch.cat(cols, dim=1), "sum", lengths=counts) / counts.unsqueeze(1)
    pred = model.head(pooled[:, -h.shape[1]:]).squeeze(-1)
    return pred, pooled if pool_all else pooled[:, :len(hs)]


def split_hops(model: AutoBuildPredictor, pooled: torch.Tensor) -> list[torch.Tensor]:
    """``[h_G^0, ..., h_G^M]`` from ``chain_forward(..., pool_all=True)``."""
    return list(pooled.split([model.fe.out_dim] + [model.norms[0].num_features] * model.n_layers, dim=1))


def chain_loss(y: torch.Tensor, pred: torch.Tensor, norms: torch.Tensor, hop_srcc: bool,
               strength: float = 1.0) -> torch.Tensor:
    """Eq. 4 with the soft ranks of all ``M+1`` hops in one call; ``norms`` is ``[B, M+1]``.

    The same function as :class:`~autobuild_lib.core.losses.AutoBuildLoss`.
    """
    loss = F.mse_loss(pred, y)
    if not hop_srcc or len(y) < 2:
        return loss
    kw = {"regularization": "l2", "regularization_strength": strength}
    rp = torchsort.soft_rank(norms.t().contiguous(), **kw)
    with torch.no_grad():
        rt = torchsort.soft_rank(y.unsqueeze(0), **kw).squeeze(0)
        rt = rt - rt.mean()
    rp = rp - rp.mean(dim=1, keepdim=True)
    srcc = (rp @ rt) / (rp.norm(dim=1) * rt.norm() + 1e-12)
    return loss + (1 - srcc).mean()


def fit_chain(model: AutoBuildPredictor, opt: torch.optim.Optimizer, flat: torch.nn.Parameter,
              table: GraphTable, ys: torch.Tensor, train_idx: np.ndarray, rng: np.random.Generator,
              config, history: list[float], progress: bool) -> None:
    """The epoch loop of ``training._fit`` (same shuffles and batches) on the chain path."""
    bar = tqdm(range(config.epochs), desc="train", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        order = torch.as_tensor(rng.permutation(train_idx), dtype=torch.long)
        ys_order = ys[order]
        nodes = ChainNodes.gather(table, order)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            stop = min(start + config.batch_size, len(order))
            if stop - start < 2:
                continue
            pred, norms = chain_forward(model, nodes.slice(start, stop))
            loss = chain_loss(ys_order[start:stop], pred, norms, config.hop_srcc)
            flat.grad.zero_()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * (stop - start)
        history.append(total / len(order))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
