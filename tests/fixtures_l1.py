"""Synthetic stand-ins for the authors' ``l1_models/`` checkpoints, in their exact layout.

Each state dict has the 67 entries of the authors' MBv3 accuracy checkpoint (their
``GraphPredictor`` at commit c278de6: ``hop_moments``, ``mlp_moments``, ``test_metrics``,
``embed_layer.*`` with ``moment_tsr``, ``encoder.init_ff``, four ``GraphConv`` layers,
four PyG ``BatchNorm`` wrappers, ``post_proj``, ``regressor``), with random weights; the
config pickle holds the ``make_predictor`` arguments.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from fixtures_released import SPACES, sample_archs

from autobuild_lib.released_l1 import L1_TARGETS, L1Config, L1Predictor, _expected_shapes, l1_files, node_features

HIDDEN = 128
N_LAYERS = 4


def l1_state_dict(seed: int, family: str = "mbv3", mlp_moments: tuple[float, float] = (0.0, 1.0),
                  scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random weights in the authors' layout (67 entries), ordered as their module registers them."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g)

    n_stages = 4 if family == "mbv3" else 5
    sd: dict[str, torch.Tensor] = {
        "hop_moments": torch.cat([torch.zeros(1, N_LAYERS + 1), torch.ones(1, N_LAYERS + 1)]),
        "mlp_moments": torch.tensor(mlp_moments, dtype=torch.float32),
        "test_metrics": torch.tensor([0.01, 0.9, 0.8]),
    }
    for name, (n, d) in {"stage": (6, 3), "block": (4, 2), "mbconv": (2, 2), "exp": (3, 2), "kernel": (3, 3)}.items():
        sd[f"embed_layer.{name}_embed.weight"] = r(n, d)
        sd[f"embed_layer.{name}_mlp.weight"] = r(1, d)
        sd[f"embed_layer.{name}_mlp.bias"] = r(1)
    sd.update({"embed_layer.res_mlp.0.weight": r(3, 1), "embed_layer.res_mlp.0.bias": r(3),
               "embed_layer.res_mlp.1.weight": r(1, 3), "embed_layer.res_mlp.1.bias": r(1),
               "embed_layer.moment_tsr": torch.cat([torch.zeros(5, n_stages, 1), torch.ones(5, n_stages, 1)], -1)})
    sd["encoder.init_ff.weight"], sd["encoder.init_ff.bias"] = r(6, 12), r(6)
    for li in range(N_LAYERS):
        d_in = 6 if li == 0 else HIDDEN
        sd[f"encoder.gnn_layers.{li}.lin_rel.weight"] = r(HIDDEN, d_in) / d_in ** 0.5
        sd[f"encoder.gnn_layers.{li}.lin_rel.bias"] = r(HIDDEN)
        sd[f"encoder.gnn_layers.{li}.lin_root.weight"] = r(HIDDEN, d_in) / d_in ** 0.5
    for li in range(N_LAYERS):
        b = f"encoder.bns.{li}.module"
        sd[f"{b}.weight"] = 1 + r(HIDDEN)
        sd[f"{b}.bias"] = r(HIDDEN)
        sd[f"{b}.running_mean"] = r(HIDDEN)
        sd[f"{b}.running_var"] = 0.5 + torch.rand(HIDDEN, generator=g)
        sd[f"{b}.num_batches_tracked"] = torch.tensor(1000)
    for i in (0, 1, 3, 4):
        sd[f"post_proj.{i}.weight"] = r(HIDDEN, HIDDEN) / HIDDEN ** 0.5
        sd[f"post_proj.{i}.bias"] = r(HIDDEN)
    sd["regressor.weight"], sd["regressor.bias"] = r(1, HIDDEN) / HIDDEN ** 0.5, r(1)
    return sd


def l1_config(family: str, target: str) -> dict:
    """``make_predictor`` keyword arguments as the authors pickle them."""
    label = "acc" if target == "acc" else target
    return {"gnn_type": "GraphConv", "format": "custom", "families": f"ofa_{family}", "gnn_dim": HIDDEN,
            "num_layers": N_LAYERS, "aggr_method": "sum", "gnn_activ": "ReLU", "reg_activ": "ReLU",
            "residual": False, "dropout_prob": 0.0, "label": label}


#: Mean and spread each target's predictions are calibrated to (acc: a fraction, as released; latency: ms).
MOMENTS = {"acc": (0.75, 0.02), "latency_gpu": (20.0, 3.0), "latency_cpu": (60.0, 10.0), "latency_npu": (15.0, 2.0)}


def calibrated_state_dict(seed: int, family: str, target: str) -> dict[str, torch.Tensor]:
    """Random weights whose ``mlp_moments`` put the predictions of 64 random archs at ``MOMENTS[target]``."""
    sd = l1_state_dict(seed, family)
    cfg = L1Config(aggr_method="sum")
    raw = L1Predictor(cfg, {k: sd[k] for k in _expected_shapes(cfg)}, Path("fixture")).predict_features(
        [node_features(SPACES[family](), a) for a in sample_archs(SPACES[family](), 64, seed)])
    mean, std = MOMENTS[target]
    scale = std / max(float(raw.std()), 1e-6)
    sd["mlp_moments"] = torch.tensor([mean - scale * float(raw.mean()), scale], dtype=torch.float32)
    return sd


def write_l1_models(directory: str | Path, families: tuple[str, ...] = ("mbv3", "pn"),
                    targets: tuple[str, ...] = L1_TARGETS, seed: int = 0) -> Path:
    """Write ``directory/`` with one predictor + config per family and target; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for fi, family in enumerate(families):
        for ti, target in enumerate(targets):
            pt, cfg = l1_files(directory, family, target)
            torch.save(calibrated_state_dict(seed + 10 * fi + ti, family, target), pt)
            with cfg.open("wb") as f:
                pickle.dump(l1_config(family, target), f, protocol=4)
    return directory
