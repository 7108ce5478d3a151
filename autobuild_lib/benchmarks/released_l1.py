"""The authors' L1 predictors (``l1_models/``), evaluated without running their code.

The AutoBuild authors ship, in their public repository (Ascend-Research/AutoBuild,
commit c278de6, MIT licence), the GNN predictors that ``iterators/ofa_manager.py``
uses to attach accuracy and latency to constructed OFA architectures.  One file pair
per family (``mbv3``, ``pn``) and target::

    l1_models/minMAE_ofa_{family}_custom_acc_GraphConv_sum_directed_srcc1_{predictor.pt,config.pkl}
    l1_models/minMAE_ofa_{family}_latency_{dev}_custom_latency_{dev}_GraphConv_sum_directed_srcc1_{...}

``*_predictor.pt`` is a plain state dict (read with ``torch.load(weights_only=True)``),
``*_config.pkl`` the keyword arguments of their ``make_predictor`` (read only through
:class:`~autobuild_lib.benchmarks.released.RestrictedUnpickler`).

The forward pass rebuilt here follows their ``GraphPredictor.forward_denorm``
(``ge_utils/model.py``):

1. custom-format node features, one node per MBConv layer, a directed chain
   ``i -> i+1`` (``ge_utils/torch_geo_data.py``, ``_mobilenet_custom_as_torch_geo``):
   ``[stage, layer, mbconv2->0/mbconv3->1, expansion index, kernel index, (r-192)/32]``;
2. ``MobileNetNodeEmbedding`` (``ge_utils/custom_embeds.py``): five embeddings each
   through a 1-unit linear layer, the resolution through ``Linear(1,3)->Linear(3,1)``,
   concatenated (6 values) and rectified with ``abs``;
3. ``TGeoPreEmbeddedGraphEncoder`` (``ge_utils/components.py``): per layer
   ``GraphConv`` (``lin_rel`` of the summed in-neighbours + ``lin_root`` of the node),
   ``BatchNorm`` with its running statistics, activation, optional residual;
4. the readout named by ``aggr_method`` (``sum`` for the released files), ``post_proj``
   (Linear, Linear, ReLU, Linear, Linear), the regressor activation and ``regressor``;
5. de-standardisation ``y * mlp_moments[1] + mlp_moments[0]``.

The message passing is written out with ``index_add_`` (no PyG module), so the tests can
compare it with an independent PyG ``GraphConv`` model.  Units: the accuracy predictor was
trained on the released caches, where ``acc`` is a fraction; it is returned in % like every
table of the study (:func:`autobuild_lib.benchmarks.released.load_ofa_cache`).  Latencies are returned
as predicted (ms, the caches' unit).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autobuild_lib.benchmarks.released import AUTHORS_REPO, ReleasedDataError, RestrictedUnpickler
from autobuild_lib.core.spaces.ofa import KERNELS, OFAArch, OFASpace, mbv3, pn

__all__ = ["L1_SOURCE", "L1_TARGETS", "L1Evaluator", "L1Predictor", "l1_files", "load_l1_predictor",
           "find_l1", "node_features"]

L1_TARGETS: tuple[str, ...] = ("acc", "latency_gpu", "latency_cpu", "latency_npu")
L1_SOURCE = "the authors' L1 predictors"
_SPACES = {"mbv3": mbv3, "pn": pn}
_EXPANSION_INDEX = {3: 0, 4: 1, 6: 2}            # constants.MBCONV_EXPAND_MAP
_KERNEL_INDEX = {k: i for i, k in enumerate(KERNELS)}  # constants.MBCONV_KERNEL_MAP: 3->0, 5->1, 7->2
_ACTIVATIONS = {"ReLU": torch.relu, "Tanh": torch.tanh, "Sigmoid": torch.sigmoid,
                "ELU": torch.nn.functional.elu, "GELU": torch.nn.functional.gelu,
                "LeakyReLU": torch.nn.functional.leaky_relu, "Identity": lambda x: x}
_EMBEDS = {"stage": (6, 3), "block": (4, 2), "mbconv": (2, 2), "exp": (3, 2), "kernel": (3, 3)}


def l1_files(l1_dir: str | Path, family: str, target: str) -> tuple[Path, Path]:
    """``(predictor.pt, config.pkl)`` paths of one family and target, named as the authors name them."""
    if family not in _SPACES:
        raise ValueError(f"family must be one of {sorted(_SPACES)}, got {family!r}")
    if target not in L1_TARGETS:
        raise ValueError(f"target must be one of {list(L1_TARGETS)}, got {target!r}")
    if target == "acc":
        stem = f"minMAE_ofa_{family}_custom_acc_GraphConv_sum_directed_srcc1"
    else:
        dev = target.split("_")[1]
        stem = f"minMAE_ofa_{family}_latency_{dev}_custom_latency_{dev}_GraphConv_sum_directed_srcc1"
    d = Path(l1_dir)
    return d / f"{stem}_predictor.pt", d / f"{stem}_config.pkl"


# ----------------------------------------------------------------------- features
def node_features(space: OFASpace, arch: OFAArch) -> torch.Tensor:
    """Custom-format node features of ``arch`` (one row per layer, see module docstring)."""
    arch = space.validate(arch)
    mbconv = 1.0 if space.block_prefix == "mbconv3" else 0.0
    res = (arch.resolution - 192) / 32
    rows = [[float(s), float(j), mbconv, float(_EXPANSION_INDEX[e]), float(_KERNEL_INDEX[k]), res]
            for s, stage in enumerate(arch.stages) for j, (k, e) in enumerate(stage)]
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------- config
@dataclass(frozen=True)
class L1Config:
    """The ``make_predictor`` settings the forward pass depends on (defaults: theirs)."""

    gnn_dim: int = 128
    num_layers: int = 4
    aggr_method: str = "mean"
    gnn_activ: str = "ReLU"
    reg_activ: str = "ReLU"
    residual: bool = False


def _read_config(path: Path) -> L1Config:
    if not path.is_file():
        raise ReleasedDataError(f"{path}: config file missing; each *_predictor.pt of l1_models/ needs its "
                                "*_config.pkl beside it (both are in the authors' repository)")
    try:
        with path.open("rb") as f:
            raw = RestrictedUnpickler(f, path, {}).load()
    except ReleasedDataError:
        raise
    except Exception as err:  # noqa: BLE001 -- any failure of a corrupt stream
        raise ReleasedDataError(f"{path}: corrupt or truncated config pickle ({type(err).__name__}: {err})") from err
    if not isinstance(raw, dict):
        raise ReleasedDataError(f"{path}: config is a {type(raw).__name__}; expected a dict of make_predictor arguments")
    checks = {"gnn_type": ("GraphConv",), "format": ("custom",), "aggr_method": ("sum", "mean", "max"),
              "gnn_activ": tuple(_ACTIVATIONS), "reg_activ": tuple(_ACTIVATIONS)}
    for key, allowed in checks.items():
        if key in raw and raw[key] not in allowed:
            raise ReleasedDataError(f"{path}: config key {key!r} is {raw[key]!r}; this loader supports {list(allowed)}")
    kw = {}
    for key, typ in (("gnn_dim", int), ("num_layers", int), ("aggr_method", str), ("gnn_activ", str),
                     ("reg_activ", str), ("residual", bool)):
        if key in raw:
            value = raw[key]
            if not isinstance(value, typ) or (typ is int and (isinstance(value, bool) or value < 1)):
                raise ReleasedDataError(f"{path}: config key {key!r} is {value!r}; expected a {typ.__name__}"
                                        + (" >= 1" if typ is int else ""))
            kw[key] = value
    return L1Config(**kw)


# ------------------------------------------------------------------- state dict
def _expected_shapes(cfg: L1Config) -> dict[str, tuple[int, ...]]:
    """Keys the forward pass reads, with their shapes."""
    h, out = cfg.gnn_dim, {}
    for name, (n, d) in _EMBEDS.items():
        out[f"embed_layer.{name}_embed.weight"] = (n, d)
        out[f"embed_layer.{name}_mlp.weight"] = (1, d)
        out[f"embed_layer.{name}_mlp.bias"] = (1,)
    out.update({"embed_layer.res_mlp.0.weight": (3, 1), "embed_layer.res_mlp.0.bias": (3,),
                "embed_layer.res_mlp.1.weight": (1, 3), "embed_layer.res_mlp.1.bias": (1,)})
    for li in range(cfg.num_layers):
        d_in = 6 if li == 0 else h
        out[f"encoder.gnn_layers.{li}.lin_rel.weight"] = (h, d_in)
        out[f"encoder.gnn_layers.{li}.lin_rel.bias"] = (h,)
        out[f"encoder.gnn_layers.{li}.lin_root.weight"] = (h, d_in)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"encoder.bns.{li}.module.{p}"] = (h,)
    for i in (0, 1, 3, 4):
        out[f"post_proj.{i}.weight"] = (h, h)
        out[f"post_proj.{i}.bias"] = (h,)
    out.update({"regressor.weight": (1, h), "regressor.bias": (1,), "mlp_moments": (2,)})
    return out


def _read_state(path: Path, cfg: L1Config) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ReleasedDataError(f"{path}: predictor file missing")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 -- any failure of a corrupt or unsafe file
        raise ReleasedDataError(f"{path}: corrupt or truncated checkpoint, or not a plain state dict "
                                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
    if not isinstance(state, Mapping):
        raise ReleasedDataError(f"{path}: holds a {type(state).__name__}; expected a state dict (name -> tensor)")
    extra = {"hop_moments": (2, cfg.num_layers + 1), "encoder.init_ff.weight": (6, 12), "encoder.init_ff.bias": (6,)}
    expected = _expected_shapes(cfg)
    for key, shape in {**expected, **extra}.items():
        if key not in state:
            if key in extra:
                continue
            raise ReleasedDataError(f"{path}: missing key {key!r} (expected shape {shape}); "
                                    "not a checkpoint of the authors' GraphConv predictor with this config")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ReleasedDataError(f"{path}: key {key!r} is a {type(value).__name__}; expected a tensor")
        if tuple(value.shape) != shape:
            raise ReleasedDataError(f"{path}: key {key!r} has shape {tuple(value.shape)}; expected {shape} "
                                    f"(config: gnn_dim={cfg.gnn_dim}, num_layers={cfg.num_layers})")
    return {k: state[k].detach().to(torch.float32) for k in expected}


# -------------------------------------------------------------------- predictor
class L1Predictor:
    """One authors' L1 predictor: config + validated weights, evaluated in eval mode."""

    def __init__(self, cfg: L1Config, weights: dict[str, torch.Tensor], path: Path) -> None:
        self.cfg, self.w, self.path = cfg, weights, path

    def _lin(self, name: str, x: torch.Tensor, bias: bool = True) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"] if bias else None)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        cols = []
        for i, name in enumerate(_EMBEDS):
            emb = self.w[f"embed_layer.{name}_embed.weight"][x[:, i].long()]
            cols.append(self._lin(f"embed_layer.{name}_mlp", emb))
        cols.append(self._lin("embed_layer.res_mlp.1", self._lin("embed_layer.res_mlp.0", x[:, -1:])))
        return torch.cat(cols, dim=-1).abs()

    @torch.inference_mode()
    def predict_features(self, feats: Sequence[torch.Tensor]) -> np.ndarray:
        """De-standardised predictions for graphs given by their node-feature matrices (chains)."""
        if not feats:
            return np.zeros(0)
        x = torch.cat(list(feats))
        sizes = torch.tensor([len(f) for f in feats])
        batch = torch.repeat_interleave(torch.arange(len(feats)), sizes)
        offsets = torch.cumsum(sizes, 0) - sizes
        src = torch.cat([torch.arange(n - 1) + o for n, o in zip(sizes.tolist(), offsets.tolist())])
        dst = src + 1
        act, eps = _ACTIVATIONS[self.cfg.gnn_activ], 1e-5
        h = self._embed(x)
        for li in range(self.cfg.num_layers):
            g = f"encoder.gnn_layers.{li}"
            agg = torch.zeros(h.shape[0], h.shape[1]).index_add_(0, dst, h[src])
            z = self._lin(f"{g}.lin_rel", agg) + self._lin(f"{g}.lin_root", h, bias=False)
            b = f"encoder.bns.{li}.module"
            z = (z - self.w[f"{b}.running_mean"]) / torch.sqrt(self.w[f"{b}.running_var"] + eps)
            z = act(z * self.w[f"{b}.weight"] + self.w[f"{b}.bias"])
            h = z + h if self.cfg.residual and li > 0 else z
        n_graphs = len(feats)
        if self.cfg.aggr_method == "max":
            ge = torch.full((n_graphs, h.shape[1]), -torch.inf).scatter_reduce(
                0, batch[:, None].expand_as(h), h, reduce="amax")
        else:
            ge = torch.zeros(n_graphs, h.shape[1]).index_add_(0, batch, h)
            if self.cfg.aggr_method == "mean":
                ge = ge / sizes[:, None]
        p = self._lin("post_proj.4", self._lin("post_proj.3", torch.relu(
            self._lin("post_proj.1", self._lin("post_proj.0", ge)))))
        out = self._lin("regressor", _ACTIVATIONS[self.cfg.reg_activ](p)).squeeze(1)
        m = self.w["mlp_moments"]
        return (out * m[1] + m[0]).double().numpy()


def load_l1_predictor(predictor: str | Path, config: str | Path | None = None) -> L1Predictor:
    """Read one ``*_predictor.pt`` (and its ``*_config.pkl``, by default beside it), validated."""
    predictor = Path(predictor)
    if config is None:
        config = predictor.with_name(predictor.name.replace("_predictor.pt", "_config.pkl"))
    cfg = _read_config(Path(config))
    return L1Predictor(cfg, _read_state(predictor, cfg), predictor)


# -------------------------------------------------------------------- evaluator
class L1Evaluator:
    """Evaluate MBv3 / PN architectures with the authors' L1 predictors in ``l1_dir``.

    Same interface as the Mini-OFA :class:`~autobuild_lib.benchmarks.miniofa.evaluator.Evaluator`:
    ``evaluate(space, arch)`` and ``evaluate_many(space, archs)``; columns ``arch``,
    ``acc`` (%), ``latency_gpu``, ``latency_cpu``, ``latency_npu`` (ms, NaN where that
    predictor is not in the folder) and ``source`` (:data:`L1_SOURCE`).
    """

    def __init__(self, l1_dir: str | Path) -> None:
        self.l1_dir = Path(l1_dir)
        if not self.l1_dir.is_dir():
            raise FileNotFoundError(f"{self.l1_dir}: no such folder; clone {AUTHORS_REPO} "
                                    "and point at its l1_models/ folder")
        self._models: dict[tuple[str, str], L1Predictor] = {}

    def targets(self, space: str) -> list[str]:
        """Targets whose predictor file is in the folder for ``space``."""
        return [t for t in L1_TARGETS if l1_files(self.l1_dir, space, t)[0].is_file()]

    def has(self, space: str, targets: Sequence[str] = ("acc", "latency_cpu")) -> bool:
        """Whether every one of ``targets`` has a predictor for ``space``."""
        return set(targets) <= set(self.targets(space))

    def predictor(self, space: str, target: str) -> L1Predictor:
        if (space, target) not in self._models:
            pt, cfg = l1_files(self.l1_dir, space, target)
            self._models[space, target] = load_l1_predictor(pt, cfg)
        return self._models[space, target]

    def predict(self, space: str, archs: Sequence[OFAArch | str], target: str) -> np.ndarray:
        """One target for ``archs`` (acc in %), without running the other predictors."""
        if space not in _SPACES:
            raise ValueError(f"space must be one of {sorted(_SPACES)}, got {space!r}")
        sp = _SPACES[space]()
        feats = [node_features(sp, a if isinstance(a, OFAArch) else sp.from_string(a)) for a in archs]
        y = self.predictor(space, target).predict_features(feats)
        return 100.0 * y if target == "acc" else y   # acc: fraction (released caches) -> %

    def evaluate(self, space: str, arch: OFAArch | str) -> dict:
        """Predictions for one architecture (see :meth:`evaluate_many`)."""
        return self.evaluate_many(space, [arch]).iloc[0].to_dict()

    def evaluate_many(self, space: str, archs: Sequence[OFAArch | str], progress: bool = False) -> pd.DataFrame:
        """One row per architecture, input order (``progress`` is accepted for interface parity)."""
        if space not in _SPACES:
            raise ValueError(f"space must be one of {sorted(_SPACES)}, got {space!r}")
        found = self.targets(space)
        if not found:
            names = ", ".join(l1_files(self.l1_dir, space, t)[0].name for t in L1_TARGETS)
            raise FileNotFoundError(f"{self.l1_dir}: no L1 predictor for {space!r}; expected files such as {names}")
        sp = _SPACES[space]()
        parsed = [sp.validate(a) if isinstance(a, OFAArch) else sp.from_string(a) for a in archs]
        out = pd.DataFrame({"arch": [sp.to_string(a) for a in parsed]})
        for t in L1_TARGETS:
            out[t] = self.predict(space, parsed, t) if t in found else np.nan
        out["source"] = L1_SOURCE
        return out


def find_l1(data_dir: str | Path, space: str, targets: Sequence[str] = ("acc", "latency_cpu")) -> L1Evaluator | None:
    """An :class:`L1Evaluator` on ``data_dir/l1_models`` when it has ``targets`` for ``space``, else ``None``."""
    d = Path(data_dir) / "l1_models"
    if not d.is_dir():
        return None
    ev = L1Evaluator(d)
    return ev if ev.has(space, targets) else None
