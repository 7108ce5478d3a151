"""Trained predictors for label equations, kept in one on-disk cache (paper Sec. 4, Eq. 4 / Eq. 5).

* :func:`build_equation` -- one AutoBuild predictor per label equation, with its moments and module
  scores (Eq. 5, :mod:`~autobuild_lib.core.scoring`) and the top-K construction of the reduced space.
* :func:`train_cached` / :func:`latency_predictor_cached` -- the one cache of trained predictors:
  keyed by everything that determines the weights (architectures, labels, config, model code), so a
  hit returns exactly what a fresh training would.
* :func:`predict_archs`, :class:`LazyLatencyPredictor` -- predictions for new architectures.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from autobuild_lib.core.construction import construct, top_k
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.scoring import AutoBuildRun, hop_moments, label_moments, score_modules
from autobuild_lib.core.spaces.ofa import OFAArch, OFAModule, OFASpace
from autobuild_lib.core.training import TrainConfig, TrainResult, load_result, predict, save_result, train_predictor

__all__ = ["EquationBuild", "build_equation", "build_equations", "train_cached", "latency_predictor_cached", "predict_archs",
           "LazyLatencyPredictor", "LabelledArchs"]


class LabelledArchs(Protocol):
    """Labelled architectures of one space with their graphs (e.g. a benchmark's ``LabelledSet``)."""

    space: OFASpace
    archs: list[OFAArch]
    graphs: GraphTable

    def labels(self, equation: LabelEquation) -> np.ndarray: ...

_CACHE_VERSION = 1
# Source files whose content determines a trained predictor's weights.
_MODEL_CODE = ("predictor.py", "training.py", "chain_predictor.py", "losses.py", "graphs.py")
_LATENCY_CODE = ("latency.py", "losses.py", "graphs.py")


# ----------------------------------------------------------------------------- predictor cache
def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _code_digest(files: Sequence[str]) -> str:
    here = Path(__file__).resolve().parent
    return _digest(*[(here / f).read_bytes() for f in files])


def _cache_path(cache_dir: str | Path | None, prefix: str, key: str) -> Path | None:
    if cache_dir is None or str(cache_dir) == "":
        return None
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{prefix}-{key[:24]}.pt"


def _predictor_key(table: GraphTable, y: np.ndarray, arch_keys: Sequence[str], config: TrainConfig) -> str:
    """The cache key of a predictor trained on ``y``.

    The labels enter rounded to float32, the precision the predictor trains in: float64 label
    arithmetic can differ in its last bit between CPUs (numpy's SIMD ``power`` of the
    ``100**(acc/100)`` equations on AVX-512 and on AVX2 machines), which must not make a committed
    predictor miss.
    """
    if len(arch_keys) != len(table) or len(y) != len(table):
        raise ValueError(f"{len(table)} graphs, {len(arch_keys)} arch keys and {len(y)} labels must agree")
    return _digest("autobuild-predictor", _CACHE_VERSION, list(arch_keys), np.asarray(y, dtype=np.float32),
                   asdict(config), _code_digest(_MODEL_CODE))


def _load_cached(path: Path | None, key: str, table: GraphTable) -> tuple[TrainResult, dict] | None:
    if path is None or not path.is_file():
        return None
    try:
        result, extra = load_result(path, table.schema)
    except (ValueError, RuntimeError, KeyError):
        return None  # a damaged cache file is retrained and overwritten
    if extra.get("key") != key:
        return None
    return result, {"cached": True, "train_s": float(extra.get("train_s", np.nan)), "path": str(path)}


def _store(result: TrainResult, path: Path | None, key: str, train_s: float) -> dict:
    if path is not None:
        tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")  # unique: a cache filler may train at once
        save_result(result, tmp, key=key, train_s=train_s)
        tmp.replace(path)
    return {"cached": False, "train_s": train_s, "path": str(path) if path else None}


def train_cached(table: GraphTable, y: np.ndarray, arch_keys: Sequence[str], config: TrainConfig,
                 cache_dir: str | Path | None = None, progress: bool = False) -> tuple[TrainResult, dict]:
    """:func:`~autobuild_lib.core.training.train_predictor`, or the same predictor loaded from ``cache_dir``.

    The cache key covers the architectures (``arch_keys``, one per graph), the labels, the
    training config and the source of the model/training code, so a hit returns exactly the
    weights a fresh training would produce.  Returns ``(result, info)``; ``info`` has
    ``cached`` (bool), ``train_s`` (seconds of the original training) and ``path``.
    """
    y = np.asarray(y, dtype=np.float64)
    key = _predictor_key(table, y, arch_keys, config)
    path = _cache_path(cache_dir, "predictor", key)
    hit = _load_cached(path, key, table)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    result = train_predictor(table, y, config, progress=progress)
    return result, _store(result, path, key, time.perf_counter() - t0)


@dataclass
class EquationBuild:
    """One label equation's AutoBuild predictor, moments and module scores (see :func:`build_equation`)."""

    equation: LabelEquation
    run: AutoBuildRun
    info: dict = field(default_factory=dict)

    def top(self, k: int) -> list[list[OFAModule]]:
        """The ranked top-``k`` modules of every unit (highest score first)."""
        return top_k(self.run.scores, k, maximize=True)

    def construct(self, space: OFASpace, k: int, resolution: int = 224) -> list[OFAArch]:
        """The ``k ** n_units`` architectures of the reduced space (paper: K=3 -> 243)."""
        return construct(space, self.top(k), resolution=resolution)


def build_equation(ls: LabelledArchs, equation: str | LabelEquation, config: TrainConfig | None = None,
                   resolution: int = 224, cache_dir: str | Path | None = None,
                   progress: bool = False) -> EquationBuild:
    """Train AutoBuild on ``equation``'s labels, take the moments on the training split, score every module.

    Same steps as :func:`~autobuild_lib.core.scoring.run_autobuild`, with the trained predictor
    cached in ``cache_dir`` (None or "" disables the cache).  ``info`` holds ``cached``,
    ``train_s`` (seconds of the training, also when loaded), ``score_s`` and the test metrics.
    """
    eq = equation if isinstance(equation, LabelEquation) else LabelEquation.parse(equation)
    config = config or TrainConfig()
    y = ls.labels(eq)
    keys = [ls.space.to_string(a) for a in ls.archs]
    result, info = train_cached(ls.graphs, y, keys, config, cache_dir, progress)
    return _scored(ls, eq, y, result, info, resolution)


def _scored(ls: LabelledArchs, eq: LabelEquation, y: np.ndarray, result: TrainResult, info: dict,
            resolution: int) -> EquationBuild:
    """Moments on the training split and every module's Eq. 5 score for a trained predictor."""
    t0 = time.perf_counter()
    hm = hop_moments(result.model, ls.graphs, result.train_idx)
    lm = label_moments(ls.space, [ls.archs[i] for i in result.train_idx], y[result.train_idx])
    scores = score_modules(result, ls.space, hm, lm, resolution)
    info = {**info, "score_s": time.perf_counter() - t0, **result.metrics}
    return EquationBuild(eq, AutoBuildRun(result, hm, lm, scores), info)


def build_equations(ls: LabelledArchs, equations: Sequence[str | LabelEquation], config: TrainConfig | None = None,
                    resolution: int = 224, cache_dir: str | Path | None = None,
                    n_jobs: int = -1) -> list[EquationBuild]:
    """:func:`build_equation` for several equations, the predictors not in the cache trained in parallel.

    The missing predictors train ``n_jobs`` at a time on one thread each
    (:func:`~autobuild_lib.core.train_many.train_many`), so they are the same as
    :func:`build_equation` would train one after another.  One build per equation, in order.
    """
    from autobuild_lib.core.train_many import TrainTask, train_many

    config = config or TrainConfig()
    eqs = [e if isinstance(e, LabelEquation) else LabelEquation.parse(e) for e in equations]
    keys = [ls.space.to_string(a) for a in ls.archs]
    ys = {e.text: ls.labels(e) for e in eqs}
    found: dict[str, tuple[TrainResult, dict]] = {}
    todo: list[tuple[str, str, Path | None]] = []
    for e in eqs:
        key = _predictor_key(ls.graphs, np.asarray(ys[e.text], dtype=np.float64), keys, config)
        path = _cache_path(cache_dir, "predictor", key)
        hit = _load_cached(path, key, ls.graphs)
        if hit is not None:
            found[e.text] = hit
        else:
            todo.append((e.text, key, path))
    if todo:
        trained = train_many([TrainTask(ls.graphs, ys[t], config) for t, _, _ in todo], n_jobs=n_jobs)
        for (text, key, path), run in zip(todo, trained):
            found[text] = (run.result, _store(run.result, path, key, run.seconds))
    return [_scored(ls, e, ys[e.text], *found[e.text], resolution) for e in eqs]


# ----------------------------------------------------------------------------- predictors for new archs
def _graph_table(space: OFASpace, archs: Sequence[OFAArch | str]) -> GraphTable:
    graphs = []
    for i, a in enumerate(archs):
        try:
            graphs.append(ofa_graph(space, space.from_string(a) if isinstance(a, str) else space.validate(a)))
        except ValueError as exc:
            raise ValueError(f"archs[{i}] is not a valid {space.name} architecture: {exc}") from None
    return GraphTable(graphs, OFA_SCHEMA)


def predict_archs(result: TrainResult, space: OFASpace, archs: Sequence[OFAArch | str]) -> np.ndarray:
    """The predictor's output (label units) for architectures that need not be in any table."""
    if len(archs) == 0:
        return np.zeros(0)
    pred, _ = predict(result, _graph_table(space, archs))
    return np.asarray(pred, dtype=np.float64)


def latency_predictor_cached(space: OFASpace, arch_keys: Sequence[str], latencies_ms: Sequence[float],
                             cache_dir: str | Path | None = None, progress: bool = False, **kwargs):
    """:func:`~autobuild_lib.core.latency.train_latency_predictor`, or the same predictor from ``cache_dir``.

    ``kwargs`` go to the trainer (``epochs``, ``seed``, ...).  Returns ``(result, info)`` with
    ``info["cached"]``; ``result.train_wall_s`` is the original training time.
    """
    from autobuild_lib.core.latency import load_latency_predictor, save_latency_predictor, train_latency_predictor

    y = np.asarray(latencies_ms, dtype=np.float64)
    key = _digest("latency-predictor", _CACHE_VERSION, space.name, list(arch_keys), y,
                  sorted(kwargs.items()), _code_digest(_LATENCY_CODE))
    path = _cache_path(cache_dir, "latency", key)
    if path is not None and path.is_file() and path.with_suffix(".key").is_file() \
            and path.with_suffix(".key").read_text() == key:
        try:
            return load_latency_predictor(path), {"cached": True, "path": str(path)}
        except (ValueError, FileNotFoundError):
            pass
    result = train_latency_predictor(space, list(arch_keys), y, progress=progress, **kwargs)
    if path is not None:
        save_latency_predictor(result, path)
        path.with_suffix(".key").write_text(key)
    return result, {"cached": False, "path": str(path) if path else None}


class LazyLatencyPredictor:
    """A latency predictor that is trained (or loaded) only when first asked for a prediction.

    When every latency a chapter needs is already measured or cached, no predictor is
    trained at all.  ``archs -> ms``; :attr:`result` / :attr:`info` exist after the first call.
    """

    def __init__(self, space: OFASpace, arch_keys: Sequence[str], latencies_ms: Sequence[float],
                 cache_dir: str | Path | None = None, **kwargs) -> None:
        self.space, self.arch_keys, self.latencies_ms = space, list(arch_keys), list(latencies_ms)
        self.cache_dir, self.kwargs = cache_dir, kwargs
        self.result = None
        self.info: dict = {}

    @classmethod
    def of(cls, result, info: dict) -> LazyLatencyPredictor:
        """A predictor that is already trained (e.g. a benchmark's committed latency model)."""
        out = cls(result.space, [], [])
        out.result, out.info = result, dict(info)
        return out

    def fit(self):
        if self.result is None:
            t0 = time.perf_counter()
            self.result, self.info = latency_predictor_cached(self.space, self.arch_keys, self.latencies_ms,
                                                              self.cache_dir, **self.kwargs)
            self.info["load_or_train_s"] = time.perf_counter() - t0
        return self.result

    def __call__(self, archs: Sequence[OFAArch | str]) -> np.ndarray:
        return self.fit().predict(archs)
