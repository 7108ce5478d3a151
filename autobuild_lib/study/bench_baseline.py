"""Frozen copy of ``train_predictor``'s PyG training loop (as of issue 19), for ``autobuild bench``.

The speed-up of the chain fast path is measured against this loop in the
same run: mini-batches sliced by :meth:`GraphTable.batches`, the
``AutoBuildPredictor`` forward through PyG ``GATv2Conv``, the per-hop
:class:`~autobuild_lib.core.losses.AutoBuildLoss` and AdamW on one flat parameter,
on one thread.  It is kept here unchanged so that later changes to
:mod:`~autobuild_lib.core.training` do not move the baseline.
"""
from __future__ import annotations

import numpy as np
import torch

from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.losses import AutoBuildLoss
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.training import TrainConfig, flat_parameters, single_thread


def train_baseline(table: GraphTable, y: np.ndarray, config: TrainConfig) -> tuple[AutoBuildPredictor, list[float]]:
    """Train on all graphs of ``table`` with the frozen loop; the model and per-epoch losses."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    train_idx = np.arange(len(table))
    ys = torch.tensor((y - y.mean()) / (y.std() or 1.0), dtype=torch.float32)
    model = AutoBuildPredictor(table.schema, hidden=config.hidden, n_layers=config.n_layers)
    loss_fn = AutoBuildLoss(hop_srcc=config.hop_srcc)
    history = []
    with single_thread(), flat_parameters(model) as flat:
        opt = torch.optim.AdamW([flat], lr=config.lr, weight_decay=config.weight_decay)
        for _ in range(config.epochs):
            model.train()
            order = torch.as_tensor(rng.permutation(train_idx), dtype=torch.long)
            ys_order = ys[order]
            total = 0.0
            for start, stop, batch in table.batches(order, config.batch_size, min_size=2):
                pred, graph = model(batch)
                loss = loss_fn(ys_order[start:stop], pred, graph)
                flat.grad.zero_()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * (stop - start)
            history.append(total / len(order))
    return model, history
