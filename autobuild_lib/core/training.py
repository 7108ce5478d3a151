"""Training and evaluating an AutoBuild predictor (paper Sec. 4, 7.1).

AdamW (lr 1e-4, weight decay 1e-5), batch 128, a 90/10 train/test split and
labels standardised with the training mean and std; the loss is Eq. 4
(:class:`~autobuild_lib.core.losses.AutoBuildLoss`).  The test metrics are the
SRCC of the graph-embedding norm ``||h_G^m||_1`` at every hop ``m``, the SRCC
of the MLP prediction, and the MAE in label units.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from autobuild_lib.core.chain_predictor import fit_chain, is_chain_table
from autobuild_lib.core.graphs import FeatureSchema, GraphTable
from autobuild_lib.core.losses import AutoBuildLoss
from autobuild_lib.core.predictor import AutoBuildPredictor


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are the paper's classification setting."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-5
    test_fraction: float = 0.1
    hidden: int = 32
    n_layers: int = 4
    hop_srcc: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.hidden < 1:
            raise ValueError(f"epochs >= 1, batch_size >= 2 and hidden >= 1 required, got {self}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


@dataclass
class TrainResult:
    """A trained predictor with its split, label scaling and test metrics."""

    model: AutoBuildPredictor
    config: TrainConfig
    train_idx: np.ndarray
    test_idx: np.ndarray
    y_mean: float
    y_std: float
    metrics: dict = field(default_factory=dict)
    history: list[float] = field(default_factory=list)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the old count afterwards.

    The predictor's batches are small: extra threads add little (0.65 vs
    0.74 s per epoch on 2.7k graphs, idle 2-core machine), stall badly when
    another process holds a core (measured 2.9 s vs 37 ms per SD epoch), and
    make float sums depend on the machine's core count.  One thread keeps
    training fast under load and results identical across machines.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random train/test split of ``n`` items."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _check_labels(table: GraphTable, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(table):
        raise ValueError(f"labels must be 1-D with one value per graph ({len(table)}), got shape {y.shape}")
    if not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y))[:5].tolist()
        raise ValueError(f"labels contain NaN/inf at rows {bad}; clean the label column first")
    if len(y) > 1 and np.ptp(y) == 0:
        raise ValueError(f"every label is {y[0]:g}; a predictor cannot learn a ranking from constant labels")
    return y


def train_predictor(table: GraphTable, y: np.ndarray, config: TrainConfig | None = None,
                    train_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None,
                    progress: bool = True, fast: bool = True) -> TrainResult:
    """Train an AutoBuild predictor on ``table`` with labels ``y``.

    Pass ``train_idx``/``test_idx`` to fix the split (e.g. for k-fold
    ensembles); otherwise a 90/10 split is drawn with ``config.seed``.
    ``fast`` trains chain graphs (OFA sequence graphs) on the equivalent
    dense path of :mod:`~autobuild_lib.core.chain_predictor`; other graphs, or
    ``fast=False``, take the PyG path.
    """
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
    loss_fn = AutoBuildLoss(hop_srcc=config.hop_srcc)
    history = []
    with single_thread(), flat_parameters(model) as flat:
        opt = torch.optim.AdamW([flat], lr=config.lr, weight_decay=config.weight_decay)
        if fast and is_chain_table(table):
            fit_chain(model, opt, flat, table, ys, train_idx, rng, config, history, progress)
        else:
            _fit(model, opt, flat, loss_fn, table, ys, train_idx, rng, config, history, progress)
    result = TrainResult(model, config, train_idx, test_idx, y_mean, y_std, history=history)
    if len(test_idx) > 1:
        result.metrics = evaluate_predictor(result, table, y, test_idx)
    return result


@contextmanager
def flat_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Parameter]:
    """All parameters of ``model`` as views of one flat parameter, grads likewise.

    AdamW is elementwise, so one step on the flat vector is the same update,
    bit for bit, as a step on every parameter tensor; it runs a dozen kernels
    instead of a dozen per tensor (55 tensors in the OFA predictor: 1.9 ms of
    a ~15 ms training step).  Zero the gradients with ``flat.grad.zero_()``
    (never set them to ``None``): backward then accumulates into the views.
    On exit every parameter gets its own storage again.
    """
    params = list(model.parameters())
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    start = 0
    for p in params:
        p.data = flat.data[start:start + p.numel()].view_as(p)
        p.grad = flat.grad[start:start + p.numel()].view_as(p)
        start += p.numel()
    try:
        yield flat
    finally:
        for p in params:
            p.data = p.data.clone()
            p.grad = p.grad.clone() if p.grad is not None else None


def _fit(model: AutoBuildPredictor, opt: torch.optim.Optimizer, flat: torch.nn.Parameter,
         loss_fn: AutoBuildLoss, table: GraphTable, ys: torch.Tensor, train_idx: np.ndarray,
         rng: np.random.Generator, config: TrainConfig, history: list[float], progress: bool) -> None:
    """The epoch loop: shuffled mini-batches, Eq. 4 loss, AdamW steps."""
    bar = tqdm(range(config.epochs), desc="train", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        order = torch.as_tensor(rng.permutation(train_idx), dtype=torch.long)
        ys_order = ys[order]
        total = 0.0
        # the epoch's graphs are gathered once, each mini-batch is a slice of them;
        # slices of one graph are skipped: BatchNorm and SRCC need two graphs
        for start, stop, batch in table.batches(order, config.batch_size, min_size=2):
            pred, graph = model(batch)
            loss = loss_fn(ys_order[start:stop], pred, graph)
            flat.grad.zero_()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * (stop - start)
        history.append(total / len(order))
        bar.set_postfix(loss=f"{history[-1]:.4f}")


@torch.no_grad()
def predict(result: TrainResult, table: GraphTable, idx: np.ndarray | None = None,
            chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Predictions in label units and hop norms ``||h_G^m||_1`` ``[n, M+1]``."""
    model = result.model.eval()
    idx = np.arange(len(table)) if idx is None else np.asarray(idx)
    preds, norms = [], []
    with single_thread():
        for start in range(0, len(idx), chunk):
            pred, graph = model(table.batch(idx[start:start + chunk]))
            preds.append(pred.numpy() * result.y_std + result.y_mean)
            norms.append(torch.stack([g.abs().sum(dim=1) for g in graph], dim=1).numpy())
    return np.concatenate(preds), np.concatenate(norms)


def evaluate_predictor(result: TrainResult, table: GraphTable, y: np.ndarray,
                       idx: np.ndarray) -> dict:
    """Test SRCC of every hop norm and of the prediction, and the MAE."""
    y = _check_labels(table, y)[idx]
    pred, norms = predict(result, table, idx)
    return {
        "srcc_hop": [float(spearmanr(norms[:, m], y).statistic) for m in range(norms.shape[1])],
        "srcc_pred": float(spearmanr(pred, y).statistic),
        "mae": float(np.abs(pred - y).mean()),
        "n_test": int(len(idx)),
    }


def save_result(result: TrainResult, path: str | Path, **extra: object) -> None:
    """Save weights, config, split and label scaling (plus JSON-able ``extra``)."""
    torch.save({"state_dict": result.model.state_dict(), "config": asdict(result.config),
                "train_idx": result.train_idx.tolist(), "test_idx": result.test_idx.tolist(),
                "y_mean": result.y_mean, "y_std": result.y_std, "metrics": result.metrics,
                "history": result.history, "extra": extra}, path)


def load_result(path: str | Path, schema: FeatureSchema) -> tuple[TrainResult, dict]:
    """Inverse of :func:`save_result`; returns the result and the ``extra`` dict."""
    try:
        blob = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"predictor file {path} not found; create it with `autobuild train`") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise ValueError(f"{path} is not a predictor saved by `autobuild train` (torch cannot read it: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}); pass the .pt file "
                         "that `autobuild train --out` wrote") from None
    try:
        config = TrainConfig(**blob["config"])
        model = AutoBuildPredictor(schema, hidden=config.hidden, n_layers=config.n_layers)
        model.load_state_dict(blob["state_dict"])
        result = TrainResult(model.eval(), config, np.array(blob["train_idx"]), np.array(blob["test_idx"]),
                             blob["y_mean"], blob["y_std"], blob["metrics"], blob["history"])
        extra = dict(blob["extra"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path} is a torch file but not a predictor saved by `autobuild train` "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); retrain it") from None
    return result, extra
