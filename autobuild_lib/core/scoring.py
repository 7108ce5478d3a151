"""Module scores and the distribution shift (Eq. 5); construction from them is in :mod:`~autobuild_lib.core.construction`.

Paper Sec. 4.2 / 7.3:

* The score of the m-hop subgraph rooted at node v is ``||h_v^m||_1``.  A
  stage module with l layers is scored as a standalone chain graph (its stage
  index, layer indices from 0); its score is the L1 norm of the *last* node's
  embedding at hop ``m = l - 1``, whose receptive field is the whole module.
* Hop moments ``N(mu_m^h, sigma_m^h)``: mean/std of the node-embedding L1
  norms at hop m over every node of every training graph.
* Label moments ``N(mu_{u,l}^y, sigma_{u,l}^y)``: mean/std of the labels of
  the training architectures whose unit u has l layers.
* Eq. 5: ``score* = (||h_v^m||_1 - mu_m^h) * sigma_{u,l}^y / sigma_m^h + mu_{u,l}^y``
  puts modules of different lengths on one (label) scale.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch

from autobuild_lib.core.graphs import OFA_SCHEMA, RES_OFFSET, RES_SCALE, GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.spaces.ofa import OFAArch, OFAModule, OFASpace
from autobuild_lib.core.training import TrainConfig, TrainResult, train_predictor


@torch.no_grad()
def hop_moments(model: AutoBuildPredictor, table: GraphTable,
                idx: np.ndarray | None = None, chunk: int = 4096) -> pd.DataFrame:
    """``mu_m^h``, ``sigma_m^h`` of node-embedding L1 norms per hop (Table 2)."""
    model.eval()
    idx = np.arange(len(table)) if idx is None else np.asarray(idx)
    norms: list[list[torch.Tensor]] = [[] for _ in range(model.n_hops)]
    for start in range(0, len(idx), chunk):
        hs = model.node_embeddings(table.batch(idx[start:start + chunk]))
        for m, h in enumerate(hs):
            norms[m].append(h.abs().sum(dim=1))
    rows = []
    for m, parts in enumerate(norms):
        v = torch.cat(parts).double()
        rows.append({"hop": m, "mu": float(v.mean()), "sigma": float(v.std())})
    return pd.DataFrame(rows).set_index("hop")


def label_moments(space: OFASpace, archs: Sequence[OFAArch], y: np.ndarray) -> pd.DataFrame:
    """``mu_{u,l}^y``, ``sigma_{u,l}^y`` per (unit, module length) (Table 2).

    Units are numbered from 1 in the table, as in the paper.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(archs) != len(y):
        raise ValueError(f"{len(archs)} architectures but {len(y)} labels")
    lengths = np.array([[len(m) for m in space.split(a)] for a in archs])
    rows = []
    for u in range(space.n_units):
        for ln in space.unit_depths(u):
            sel = y[lengths[:, u] == ln]
            rows.append({"unit": u + 1, "layers": ln, "n": len(sel),
                         "mu": float(sel.mean()) if len(sel) else np.nan,
                         "sigma": float(sel.std()) if len(sel) > 1 else np.nan})
    return pd.DataFrame(rows).set_index(["unit", "layers"])


def module_string(module: OFAModule) -> str:
    return ",".join(f"k{k}e{e}" for k, e in module)


def _module_batch(space: OFASpace, unit: int, length: int, resolution: int
                  ) -> tuple[Batch, list[OFAModule]]:
    """All modules of ``unit`` with ``length`` layers as one batch of chains."""
    types = np.array(space.layer_types)
    combos = np.array(list(itertools.product(range(len(types)), repeat=length)), dtype=np.int64)
    n = len(combos)
    f = OFA_SCHEMA.features
    probe = tuple(tuple(types[0]) for _ in range(length))
    stage_idx = [f[0].index(u + 1) for u in space.module_stage_of_layer(unit, probe)]
    layer_idx = [f[1].index(i + 1) for i in space.module_layer_index(unit, probe)]
    e_idx = np.array([f[3].index(int(e)) for e in types[:, 1]])
    k_idx = np.array([f[4].index(int(k)) for k in types[:, 0]])
    x_cat = np.stack([
        np.broadcast_to(stage_idx, (n, length)),
        np.broadcast_to(layer_idx, (n, length)),
        np.full((n, length), f[2].index(space.family)),
        e_idx[combos],
        k_idx[combos],
    ], axis=-1).reshape(n * length, 5)
    x_num = np.full((n * length, 1), (resolution - RES_OFFSET) / RES_SCALE, dtype=np.float32)
    src = (np.arange(n)[:, None] * length + np.arange(length - 1)[None, :]).ravel()
    edge_index = np.stack([src, src + 1])
    batch = Batch(x_cat=torch.from_numpy(np.ascontiguousarray(x_cat)),
                  x_num=torch.from_numpy(x_num), edge_index=torch.from_numpy(edge_index),
                  batch=torch.arange(n).repeat_interleave(length),
                  ptr=torch.arange(n + 1) * length)
    modules = [tuple(tuple(int(v) for v in types[c]) for c in row) for row in combos]
    return batch, modules


@torch.no_grad()
def score_modules(result: TrainResult, space: OFASpace, hop_mom: pd.DataFrame,
                  label_mom: pd.DataFrame, resolution: int = 224,
                  units: Sequence[int] | None = None, shift: bool = True) -> pd.DataFrame:
    """Score every module of every unit: raw ``||h_v^m||_1`` and Eq. 5 shifted.

    Returns one row per module with columns unit (1-based), module (string),
    layers, hop, raw and score (shifted when ``shift``, raw otherwise).
    """
    model = result.model.eval()
    if model.schema != OFA_SCHEMA:
        raise ValueError("score_modules needs a predictor trained on OFA sequence graphs")
    if resolution not in space.resolutions:
        raise ValueError(f"resolution {resolution} not in {space.resolutions}")
    frames = []
    for u in (range(space.n_units) if units is None else units):
        for length in space.unit_depths(u):
            m = length - 1
            if m >= model.n_hops:
                raise ValueError(f"a {length}-layer module needs hop {m}; the model has {model.n_hops - 1}")
            batch, modules = _module_batch(space, u, length, resolution)
            h = model.node_embeddings(batch)[m]
            raw = h[batch.ptr[1:] - 1].abs().sum(dim=1).double().numpy()
            if shift:
                mu_h, sd_h = hop_mom.loc[m, "mu"], hop_mom.loc[m, "sigma"]
                mu_y, sd_y = label_mom.loc[(u + 1, length), ["mu", "sigma"]]
                if not (np.isfinite(mu_y) and np.isfinite(sd_y)):
                    raise ValueError(f"no label moments for unit {u + 1} with {length} layers: "
                                     "too few training architectures of that shape")
                score = (raw - mu_h) * sd_y / sd_h + mu_y
            else:
                score = raw
            frames.append(pd.DataFrame({
                "unit": u + 1, "module": [module_string(x) for x in modules],
                "layers": length, "hop": m, "raw": raw, "score": score}))
    return pd.concat(frames, ignore_index=True)


def parse_module(text: str) -> OFAModule:
    """Inverse of :func:`module_string`."""
    out = []
    for tok in text.split(","):
        if not (tok.startswith("k") and "e" in tok):
            raise ValueError(f"module {text!r}: layer {tok!r} is not 'k<kernel>e<expansion>'")
        k, e = tok[1:].split("e")
        out.append((int(k), int(e)))
    return tuple(out)


@dataclass
class AutoBuildRun:
    """Everything one AutoBuild predictor yields for construction."""

    result: TrainResult
    hop_moments: pd.DataFrame
    label_moments: pd.DataFrame
    scores: pd.DataFrame


def run_autobuild(space: OFASpace, archs: Sequence[OFAArch], table: GraphTable, y: np.ndarray,
                  config: TrainConfig | None = None, resolution: int = 224,
                  progress: bool = True) -> AutoBuildRun:
    """Train on ``y``, take the moments on the training split and score every module."""
    result = train_predictor(table, y, config, progress=progress)
    hm = hop_moments(result.model, table, result.train_idx)
    lm = label_moments(space, [archs[i] for i in result.train_idx], np.asarray(y)[result.train_idx])
    return AutoBuildRun(result, hm, lm, score_modules(result, space, hm, lm, resolution))
