"""Exact, deduplicated inference of an :class:`AutoBuildPredictor` over many graphs.

In eval mode every layer of the predictor is node-wise given the in-neighbours:

    h_v^{m+1} = BN(ReLU(GATv2(h_v^m, {h_j^m : j -> v or j = v})) + R(h_v^m))

(BatchNorm uses its running statistics), so two nodes whose m-hop
in-neighbourhoods carry the same features have the same ``h^m``.  A plan
numbers these neighbourhoods once per table, independent of the weights:

    id^0(v)     = id of the node's feature row
    id^{m+1}(v) = id of (id^m(v), sorted id^m of v's in-neighbours)

and each predictor then evaluates only one node per id.  The graph embedding
``h_G^M = mean_v h_v^M`` (Eq. 2) pools through a sparse (graphs x ids)
matrix.  On the 884,736 SD U-Nets (~26M nodes) there are fewer than 30k ids at
any hop, which turns hours of message passing into about a minute.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.training import TrainResult, single_thread


def _fold(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the distinct rows of ``columns`` (non-negative ints) and one row index per id.

    Columns are packed into one int64 code, compacted through ``np.unique``
    whenever the next column could overflow it.
    """
    code = np.zeros(len(columns[0]), dtype=np.int64)
    bound = 1
    for col in columns:
        k = int(col.max()) + 1 if len(col) else 1
        if bound * k >= 2 ** 62:
            code = np.unique(code, return_inverse=True)[1].ravel()
            bound = int(code.max()) + 1
        code, bound = code * k + col, bound * k
    ids = np.unique(code, return_inverse=True)[1].ravel()
    rep = np.empty(int(ids.max()) + 1 if len(ids) else 0, dtype=np.int64)
    rep[ids] = np.arange(len(ids))  # any node of an id represents it
    return ids, rep


@dataclass
class InferencePlan:
    """Neighbourhood ids of one table for ``n_layers`` hops (see the module docstring).

    ``rows0[i]``: a node whose feature row has id i.  ``layers[m] = (self_, nbrs)``:
    for every hop-(m+1) id, its hop-m self id and in-neighbour ids (``-1`` pads).
    ``pool``: (graphs x hop-M ids) matrix of ``1 / n_nodes`` weights.
    """

    rows0: torch.Tensor
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    pool: sp.csr_matrix

    @property
    def n_ids(self) -> list[int]:
        """Distinct neighbourhoods at every hop 0..M."""
        return [len(self.rows0)] + [len(s) for s, _ in self.layers]


def build_plan(table: GraphTable, n_layers: int) -> InferencePlan:
    """Number the 0..``n_layers``-hop in-neighbourhoods of every node of ``table``."""
    n = int(table.node_ptr[-1])
    feats = [table.x_cat[:, i].numpy() for i in range(table.x_cat.shape[1])]
    feats += [np.unique(table.x_num[:, i].numpy(), return_inverse=True)[1].ravel()
              for i in range(table.x_num.shape[1])]
    ids, first = _fold(feats)
    rows0 = torch.from_numpy(first)
    # in-neighbours of every node, padded with -1 (self loops are added by the model)
    src, dst = table.edge_index.numpy()
    order = np.argsort(dst, kind="stable")
    src, dst = src[order], dst[order]
    deg = np.bincount(dst, minlength=n)
    width = int(deg.max()) if len(dst) else 0
    rank = np.arange(len(dst)) - (np.cumsum(deg) - deg)[dst]
    nbr = np.full((n, width), -1, dtype=np.int64)
    nbr[dst, rank] = src
    layers = []
    for _ in range(n_layers):
        nb_ids = np.sort(np.where(nbr >= 0, ids[np.maximum(nbr, 0)], -1), axis=1)
        ids_next, first = _fold([ids] + [c + 1 for c in nb_ids.T])
        layers.append((torch.from_numpy(ids[first]), torch.from_numpy(nb_ids[first])))
        ids = ids_next
    counts = (table.node_ptr[1:] - table.node_ptr[:-1]).numpy()
    owner = np.repeat(np.arange(len(counts)), counts)
    pool = sp.csr_matrix((1.0 / counts[owner], (owner, ids)), shape=(len(counts), int(ids.max()) + 1),
                         dtype=np.float32)
    return InferencePlan(rows0, layers, pool)


@torch.no_grad()
def plan_embeddings(model: AutoBuildPredictor, table: GraphTable, plan: InferencePlan) -> list[torch.Tensor]:
    """``h^m`` of one node per hop-m id, m = 0..M (same maths as ``node_embeddings``)."""
    if len(plan.layers) != model.n_layers:
        raise ValueError(f"plan covers {len(plan.layers)} hops but the model has {model.n_layers} layers")
    model.eval()
    with single_thread():
        return _embed(model, table, plan)


def _embed(model: AutoBuildPredictor, table: GraphTable, plan: InferencePlan) -> list[torch.Tensor]:
    h = model.fe(table.x_cat[plan.rows0], table.x_num[plan.rows0])
    hs = [h]
    for m, (conv, norm, (self_, nbrs)) in enumerate(zip(model.convs, model.norms, plan.layers)):
        heads, out = conv.heads, conv.out_channels
        x_l = conv.lin_l(h).view(-1, heads, out)
        x_r = conv.lin_r(h).view(-1, heads, out)
        nb = torch.cat([self_[:, None], nbrs], dim=1)  # self loop first
        x_j = x_l[nb.clamp(min=0)]  # [U, 1 + D, heads, out]
        e = (torch.nn.functional.leaky_relu(x_r[self_][:, None] + x_j, conv.negative_slope)
             * conv.att).sum(-1)
        alpha = torch.softmax(e.masked_fill((nb < 0)[..., None], float("-inf")), dim=1)
        msg = (alpha[..., None] * x_j).sum(1).mean(1) + conv.bias
        out = torch.relu(norm(msg))  # the order of AutoBuildPredictor.node_embeddings
        h = out if m == 0 else out + h[self_]
        hs.append(h)
    return hs


@torch.no_grad()
def plan_predict(result: TrainResult, table: GraphTable, plan: InferencePlan) -> np.ndarray:
    """Predictions in label units, equal to ``training.predict(result, table)[0]``."""
    h = plan_embeddings(result.model, table, plan)[-1].numpy()
    graph = torch.from_numpy(np.asarray(plan.pool @ h, dtype=np.float32))
    with single_thread():
        pred = result.model.head(graph).squeeze(-1).numpy()
    return pred * result.y_std + result.y_mean
