"""The fast training path gives bit-identical results to the plain one.

``train_predictor`` slices mini-batches out of one gather per epoch
(:meth:`GraphTable.batches`), steps AdamW on one flat view of all parameters
(:func:`flat_parameters`), looks up FE-MLP embeddings with ``index_select`` and
mean-pools all hops in one scatter.  The reference below is the plain loop
(a ``table.batch`` per step, ``nn.Embedding``, one pool per hop, AdamW over the
parameter tensors); both must agree bit for bit.
"""
import numpy as np
import pytest
import torch
from torch_geometric.nn import global_mean_pool
from torch_geometric.utils import add_self_loops

from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.losses import AutoBuildLoss
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.sd_graphs import sd_table
from autobuild_lib.core.training import TrainConfig, flat_parameters, single_thread, train_predictor


def _ofa_table(n: int, seed: int = 0):
    from autobuild_lib.core.spaces import mbv3
    sp = mbv3()
    rng = np.random.default_rng(seed)
    archs = [sp.sample(rng) for _ in range(n)]
    y = np.array([sum(k * e for st in a.stages for k, e in st) / a.n_layers for a in archs])
    return GraphTable([ofa_graph(sp, a) for a in archs], OFA_SCHEMA), y


def _sd_table(sd, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    archs = [sd.sample(rng) for _ in range(n)]
    table = sd_table(sd, archs)
    return table, rng.normal(size=n) + np.asarray(table.node_ptr.diff(), dtype=float) / 10


def _reference_forward(model: AutoBuildPredictor, batch):
    fe = model.fe
    cols = [emb(batch.x_cat[:, i]) for i, emb in enumerate(fe.cat)]
    start = 0
    for f, lin in zip(fe.schema.numeric, fe.num):
        cols.append(lin(batch.x_num[:, start:start + f.dim]))
        start += f.dim
    h = torch.cat(cols, dim=1).abs()
    edge_index, _ = add_self_loops(batch.edge_index, num_nodes=h.shape[0])
    hs = [h]
    for m, (conv, norm) in enumerate(zip(model.convs, model.norms)):
        out = torch.relu(norm(conv(h, edge_index)))
        h = out if m == 0 else out + h
        hs.append(h)
    graph = [global_mean_pool(h, batch.batch, size=len(batch.ptr) - 1) for h in hs]
    return model.head(graph[-1]).squeeze(-1), graph


def _reference_train(table, y, config, train_idx):
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    y_mean, y_std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
    ys = torch.tensor((y - y_mean) / y_std, dtype=torch.float32)
    model = AutoBuildPredictor(table.schema, hidden=config.hidden, n_layers=config.n_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = AutoBuildLoss(hop_srcc=config.hop_srcc)
    history = []
    with single_thread():
        for _ in range(config.epochs):
            model.train()
            order = rng.permutation(train_idx)
            total = 0.0
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:
                    continue
                pred, graph = _reference_forward(model, table.batch(idx))
                loss = loss_fn(ys[idx], pred, graph)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(order))
    return model, history


@pytest.mark.parametrize("kind", ["ofa", "sd"])
def test_batches_are_slices_of_batch(kind, sd):
    table, _ = _ofa_table(40) if kind == "ofa" else _sd_table(sd, 40)
    order = np.random.default_rng(1).permutation(len(table))[:37]
    got = list(table.batches(order, 12, min_size=2))
    assert [(a, b) for a, b, _ in got] == [(0, 12), (12, 24), (24, 36)]  # the last one (1 graph) skipped
    for start, stop, fast in got:
        ref = table.batch(order[start:stop])
        for name in ("x_cat", "x_num", "edge_index", "batch", "ptr"):
            assert torch.equal(getattr(fast, name), getattr(ref, name)), name
        assert fast.num_graphs == ref.num_graphs


@pytest.mark.parametrize("kind", ["ofa", "sd"])
def test_training_is_bit_identical_to_reference_loop(kind, sd):
    table, y = _ofa_table(300) if kind == "ofa" else _sd_table(sd, 150)
    # 2 batches of 64 + one of a single graph, which both loops skip
    train_idx = np.sort(np.random.default_rng(2).permutation(len(table))[:129])
    config = TrainConfig(epochs=3, batch_size=64, seed=5)
    fast = train_predictor(table, y, config, train_idx=train_idx, test_idx=np.array([], dtype=np.int64),
                           progress=False, fast=False)
    model, history = _reference_train(table, y, config, train_idx)
    assert fast.history == history
    ref_state = model.state_dict()
    for name, value in fast.model.state_dict().items():
        assert torch.equal(value, ref_state[name]), name
    # parameters own their storage again, with the last step's gradients
    params = list(fast.model.parameters())
    assert len({p.untyped_storage().data_ptr() for p in params}) == len(params)
    assert all(p.grad is not None for p in params)


def test_flat_parameters_views_and_restore():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    before = [p.detach().clone() for p in model.parameters()]
    with flat_parameters(model) as flat:
        assert flat.numel() == sum(p.numel() for p in before)
        model(torch.ones(2, 3)).sum().backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert torch.equal(flat.grad, grads) and flat.grad.abs().sum() > 0
        with torch.no_grad():
            flat.add_(1.0)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b + 1.0)
        assert p.untyped_storage().size() == p.numel() * p.element_size()
