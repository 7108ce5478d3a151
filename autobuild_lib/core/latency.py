"""k-GNN latency predictor for fast search (paper notes, latency predictor).

The paper's fast-search latency predictor is a k-GNN (Morris et al., 2019;
PyTorch Geometric's :class:`~torch_geometric.nn.GraphConv` is that
operator, ``h_v' = W_1 h_v + W_2 sum_{u in N(v)} h_u``) over the OFA
*sequence graphs* of :func:`~autobuild_lib.core.graphs.ofa_graph`.  Recipe:

* hidden size 128, LeakyReLU, sum aggregation (``GraphConv(aggr="add")``)
  and a global sum-pool readout;
* loss = MAE + (1 - SRCC), SRCC the differentiable Spearman correlation of
  ``torchsort.soft_rank`` (:func:`~autobuild_lib.core.losses.soft_spearman`);
* 500 epochs, batch 32, AdamW.

Node inputs follow the study's encoding: one embedding table per
categorical feature of ``x_cat`` (stage, layer, block, expansion, kernel),
concatenated with ``x_num`` (resolution, as ``(r - 192) / 32``).  The number
of GraphConv layers (4, as the AutoBuild OFA predictor) and the embedding
width (8) are not in the notes; they are this study's choices.

Targets are **log-latencies**, standardised with the training split's mean
and std; latency is positive and multiplicative in resolution, so the log
scale evens out the errors of small and large networks.  ``predict``
returns milliseconds (``exp`` of the de-standardised output).  The MAE term
of the loss is taken on the standardised log scale; the reported
``test_mae_ms`` is in milliseconds.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch_geometric.nn import GraphConv, global_add_pool
from tqdm.auto import tqdm

from autobuild_lib.core.graphs import OFA_SCHEMA, FeatureSchema, GraphTable, ofa_graph
from autobuild_lib.core.losses import soft_spearman
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace
from autobuild_lib.core.training import single_thread, split_indices

MIN_ARCHS = 10
_FORMAT = "autobuild-latency-predictor"
_VERSION = 1


class LatencyGNN(nn.Module):
    """k-GNN latency regressor: embeddings -> GraphConv x L -> sum-pool -> MLP.

    Paper recipe: hidden 128, LeakyReLU, sum aggregation and sum readout.
    """

    def __init__(self, schema: FeatureSchema = OFA_SCHEMA, hidden: int = 128, n_layers: int = 4,
                 emb_dim: int = 8) -> None:
        super().__init__()
        if hidden < 1 or n_layers < 1 or emb_dim < 1:
            raise ValueError(f"hidden, n_layers and emb_dim must be >= 1, got {hidden}, {n_layers}, {emb_dim}")
        self.schema = schema
        self.hidden, self.n_layers, self.emb_dim = hidden, n_layers, emb_dim
        self.embs = nn.ModuleList(nn.Embedding(len(f.values), emb_dim) for f in schema.categorical)
        dims = [emb_dim * len(self.embs) + schema.num_width] + [hidden] * n_layers
        self.convs = nn.ModuleList(GraphConv(dims[i], hidden, aggr="add") for i in range(n_layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1))

    def forward(self, batch) -> torch.Tensor:
        """Standardised log-latency of every graph in ``batch``: ``[num_graphs]``."""
        cols = [emb(batch.x_cat[:, i]) for i, emb in enumerate(self.embs)]
        h = torch.cat(cols + [batch.x_num], dim=1)
        for conv in self.convs:
            h = nn.functional.leaky_relu(conv(h, batch.edge_index))
        g = global_add_pool(h, batch.batch, size=len(batch.ptr) - 1)
        return self.head(g).squeeze(-1)


def latency_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paper recipe: ``MAE + (1 - SRCC)`` with the soft (torchsort) Spearman."""
    loss = nn.functional.l1_loss(pred, target)
    if len(target) > 1:
        loss = loss + (1.0 - soft_spearman(pred, target))
    return loss


@dataclass
class LatencyPredictorResult:
    """A trained latency predictor, its normalisation, split and test metrics.

    ``y_mean``/``y_std`` standardise ``log(latency_ms)`` (training split).
    ``test_srcc`` is NaN when the test split has fewer than two archs.
    """

    model: LatencyGNN
    space: OFASpace
    y_mean: float
    y_std: float
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_mae_ms: float
    test_srcc: float
    train_wall_s: float
    config: dict = field(default_factory=dict)
    history: list[float] = field(default_factory=list)

    @torch.no_grad()
    def predict(self, archs: Sequence[OFAArch | str], chunk: int = 4096) -> np.ndarray:
        """Predicted latencies in ms, one per arch (OFAArch or canonical string)."""
        if len(archs) == 0:
            return np.zeros(0)
        table = _table(self.space, archs)
        model = self.model.eval()
        out = []
        with single_thread():
            for start in range(0, len(table), chunk):
                idx = torch.arange(start, min(start + chunk, len(table)))
                out.append(model(table.batch(idx)).double().numpy())
        return np.exp(np.concatenate(out) * self.y_std + self.y_mean)


# --------------------------------------------------------------------------
def _table(space: OFASpace, archs: Sequence[OFAArch | str]) -> GraphTable:
    """Sequence graphs of ``archs``; an invalid arch raises ``ValueError`` naming its index."""
    if not isinstance(space, OFASpace):
        raise ValueError(f"the latency predictor needs an OFASpace, got {type(space).__name__}")
    graphs = []
    for i, arch in enumerate(archs):
        try:
            if isinstance(arch, str):
                arch = space.from_string(arch)
            graphs.append(ofa_graph(space, arch))
        except ValueError as exc:
            raise ValueError(f"archs[{i}] is not a valid {space.name} architecture: {exc}") from None
    return GraphTable(graphs, OFA_SCHEMA)


def _check_latencies(latencies_ms: Sequence[float], n: int) -> np.ndarray:
    try:
        y = np.asarray(latencies_ms, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"latencies_ms must be numbers: {exc}") from None
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"latencies_ms must be 1-D with one value per arch ({n}), got shape {y.shape}")
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise ValueError(f"latencies_ms contain NaN/inf at rows {bad[:5].tolist()}")
    bad = np.flatnonzero(y <= 0)
    if len(bad):
        raise ValueError(f"latencies_ms must be positive; rows {bad[:5].tolist()} are "
                         f"{y[bad[:5]].tolist()}")
    return y


def train_latency_predictor(space: OFASpace, archs: Sequence[OFAArch | str],
                            latencies_ms: Sequence[float], epochs: int = 500, batch_size: int = 32,
                            lr: float = 1e-3, seed: int = 0, test_frac: float = 0.1,
                            progress: bool = True, weight_decay: float = 1e-5, hidden: int = 128,
                            n_layers: int = 4) -> LatencyPredictorResult:
    """Train the k-GNN latency predictor (paper recipe: 500 epochs, batch 32, AdamW).

    A fixed ``seed`` fixes the split (``split_indices``), the weights and the
    batch order, and training runs on one torch thread, so the same seed
    gives identical predictions.  ``test_frac`` of the archs is held out and
    scored (``test_mae_ms``, ``test_srcc``).  Raises ``ValueError`` on
    mismatched lengths, non-positive or non-finite latencies, fewer than
    10 archs or an invalid architecture.
    """
    if len(archs) < MIN_ARCHS:
        raise ValueError(f"need at least {MIN_ARCHS} archs to train a latency predictor, got {len(archs)}")
    y = _check_latencies(latencies_ms, len(archs))
    if epochs < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"epochs >= 1, batch_size >= 2 and lr > 0 required, got {epochs}, {batch_size}, {lr}")
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    table = _table(space, archs)
    train_idx, test_idx = split_indices(len(y), test_frac, seed)
    if len(train_idx) < 2 or len(test_idx) < 1:
        raise ValueError(f"test_frac={test_frac} leaves {len(train_idx)} train / {len(test_idx)} test "
                         "archs; need >= 2 and >= 1")

    logy = np.log(y)
    y_mean, y_std = float(logy[train_idx].mean()), float(logy[train_idx].std()) or 1.0
    ys = torch.tensor((logy - y_mean) / y_std, dtype=torch.float32)
    rng = np.random.default_rng(seed + 1)
    history: list[float] = []
    start_t = time.perf_counter()
    with single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LatencyGNN(OFA_SCHEMA, hidden=hidden, n_layers=n_layers)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        bar = tqdm(range(epochs), desc="latency", disable=not progress, leave=False)
        for _ in bar:
            model.train()
            order = rng.permutation(train_idx)
            total = 0.0
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                if len(idx) < 2:  # SRCC needs two graphs
                    continue
                loss = latency_loss(model(table.batch(idx)), ys[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(order))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    wall = time.perf_counter() - start_t

    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "test_frac": test_frac,
              "weight_decay": weight_decay, "hidden": hidden, "n_layers": n_layers, "emb_dim": model.emb_dim}
    result = LatencyPredictorResult(model.eval(), space, y_mean, y_std, train_idx, test_idx,
                                    float("nan"), float("nan"), wall, config, history)
    pred = result.predict([archs[i] for i in test_idx])
    result.test_mae_ms = float(np.abs(pred - y[test_idx]).mean())
    if len(test_idx) > 1:
        result.test_srcc = float(spearmanr(pred, y[test_idx]).statistic)
    return result


# --------------------------------------------------------------------------
def save_latency_predictor(result: LatencyPredictorResult, path: str | Path) -> None:
    """Save weights, space, normalisation, split and metrics (atomic write)."""
    path = Path(path)
    sp = result.space
    blob = {
        "format": _FORMAT, "version": _VERSION,
        "state_dict": result.model.state_dict(),
        "model": {"hidden": result.model.hidden, "n_layers": result.model.n_layers,
                  "emb_dim": result.model.emb_dim},
        "space": {"name": sp.name, "family": sp.family, "depths": [list(d) for d in sp.depths],
                  "layer_types": [list(t) for t in sp.layer_types], "resolutions": list(sp.resolutions)},
        "y_mean": result.y_mean, "y_std": result.y_std,
        "train_idx": result.train_idx.tolist(), "test_idx": result.test_idx.tolist(),
        "test_mae_ms": result.test_mae_ms, "test_srcc": result.test_srcc,
        "train_wall_s": result.train_wall_s, "config": dict(result.config), "history": list(result.history),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(blob, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_latency_predictor(path: str | Path) -> LatencyPredictorResult:
    """Inverse of :func:`save_latency_predictor` (``torch.load(weights_only=True)``).

    A missing file raises ``FileNotFoundError``; an unreadable or foreign
    file raises ``ValueError``; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latency predictor file {path} not found; "
                                "train one and save it with save_latency_predictor")
    try:
        blob = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ValueError(f"{path} is not a readable latency predictor file: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a saved latency predictor (no '{_FORMAT}' header)")
    if blob.get("version") != _VERSION:
        raise ValueError(f"{path}: latency predictor format version {blob.get('version')!r}, "
                         f"this code reads version {_VERSION}")
    try:
        s = blob["space"]
        space = OFASpace(s["name"], s["family"], s["depths"], [tuple(t) for t in s["layer_types"]],
                         s["resolutions"])
        model = LatencyGNN(OFA_SCHEMA, **blob["model"])
        model.load_state_dict(blob["state_dict"])
        return LatencyPredictorResult(
            model.eval(), space, float(blob["y_mean"]), float(blob["y_std"]),
            np.asarray(blob["train_idx"], dtype=np.int64), np.asarray(blob["test_idx"], dtype=np.int64),
            float(blob["test_mae_ms"]), float(blob["test_srcc"]), float(blob["train_wall_s"]),
            dict(blob["config"]), list(blob["history"]))
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path} is a damaged latency predictor file: {exc!r}") from exc
