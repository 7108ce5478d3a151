"""Training the predictor on chain (sequence) graphs: batches, Eq. 4 loss and the epoch loop.

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
order differs.  :class:`~autobuild_lib.core.chain_network.ChainNetwork` runs
the forward and backward of the whole predictor on these chains by hand
(the layers in C++); this module feeds it batches (:class:`ChainNodes`),
computes Eq. 4 with the soft ranks of all hops in one ``torchsort`` call
(:func:`chain_loss`) and runs the epochs (:func:`fit_chain`).  The trained
model is the ordinary :class:`AutoBuildPredictor`; prediction, scoring and
saving are unchanged.  IR and SD graphs are not chains and keep the PyG path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchsort
from tqdm.auto import tqdm

from autobuild_lib.core.chain_network import ChainNetwork
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
    net = ChainNetwork(model, flat)
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
            batch = nodes.slice(start, stop)
            pred, norms = net(batch)
            loss = chain_loss(ys_order[start:stop], pred, norms, config.hop_srcc)
            flat.grad.zero_()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * (stop - start)
        history.append(total / len(order))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
