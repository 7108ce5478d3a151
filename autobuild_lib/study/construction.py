"""Building architectures from label equations and searching with them (chapters 05 and 06).

Paper Sec. 5.1 / 7.2 / 7.5 (Fig. 5).  The algorithms themselves live elsewhere
(:mod:`~autobuild_lib.core.scoring`: training, Eq. 5 and top-K construction;
:mod:`~autobuild_lib.core.search`: the evolutionary search and its mutation schemes;
:mod:`~autobuild_lib.core.pareto`: fronts and hypervolumes).  This module holds what
the two chapters need around them:

* :func:`build_equation` -- one AutoBuild predictor per label equation, with its
  moments and module scores; trained predictors are kept in an on-disk cache
  keyed by everything that determines their weights, so chapter 06 reuses the
  predictors of chapter 05 and a re-run does not retrain.
* :func:`train_cached` / :func:`latency_predictor_cached` / :func:`predict_archs`
  -- accuracy and latency predictors (the release has no evaluator; chapter 06
  can use an accuracy surrogate).
* :func:`reference_point`, :func:`hypervolume_clipped`, :func:`front_gain_table`
  -- how far constructed clusters go beyond the training front.
* :class:`SearchMetrics`, :func:`run_search_grid`, :func:`hypervolume_summary`,
  :func:`hypervolume_curves` -- the NAS comparison with provenance of every number
  (real evaluation or predictor, measured or predicted latency).
* :func:`uncached_archs`, :func:`seconds_per_new_arch` -- what an evaluation
  would cost without the committed evaluation cache.
* :func:`chapter05_settings`, :func:`plan_construction`, :func:`chapter05_archs`,
  :func:`fill_chapter05_cache` -- exactly which architectures chapter 05 evaluates, so that a
  background job can fill the evaluation cache before the chapter runs
  (``python -m autobuild_lib.study.construction --space mbv3 --list`` / ``--fill``).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.core import pareto
from autobuild_lib.benchmarks.labelled import LabelledSet
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.scoring import AutoBuildRun, construct, hop_moments, label_moments, score_modules, top_k
from autobuild_lib.core.search import MutationScheme, SearchResult, evolutionary_search
from autobuild_lib.core.spaces.ofa import OFAArch, OFAModule, OFASpace
from autobuild_lib.core.training import TrainConfig, TrainResult, load_result, predict, save_result, train_predictor

__all__ = ["OBJECTIVES", "EquationBuild", "build_equation", "train_cached", "latency_predictor_cached",
           "predict_archs", "LazyLatencyPredictor", "reference_point", "hypervolume_clipped",
           "front_gain_table", "SearchMetrics", "run_search_grid", "search_history", "hypervolume_summary",
           "hypervolume_curves", "uncached_archs", "seconds_per_new_arch", "resolve_eval_cache",
           "CHAPTER05_EQUATIONS", "DEFAULT_PREDICTOR_CACHE", "chapter05_settings", "chapter06_settings", "evenly_spaced",
           "ConstructionPlan", "plan_construction", "chapter05_plan", "chapter05_archs", "fill_chapter05_cache",
           "archs_digest", "main"]

OBJECTIVES: list[tuple[str, bool]] = [("acc", True), ("latency_cpu", False)]
"""Chapter 05/06 objectives: top-1 accuracy (%, maximised) and CPU latency (ms, minimised)."""

_CACHE_VERSION = 1
# Source files whose content determines a trained predictor's weights.
_MODEL_CODE = ("predictor.py", "training.py", "losses.py", "graphs.py")
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


def train_cached(table: GraphTable, y: np.ndarray, arch_keys: Sequence[str], config: TrainConfig,
                 cache_dir: str | Path | None = None, progress: bool = False) -> tuple[TrainResult, dict]:
    """:func:`~autobuild_lib.core.training.train_predictor`, or the same predictor loaded from ``cache_dir``.

    The cache key covers the architectures (``arch_keys``, one per graph), the labels, the
    training config and the source of the model/training code, so a hit returns exactly the
    weights a fresh training would produce.  Returns ``(result, info)``; ``info`` has
    ``cached`` (bool), ``train_s`` (seconds of the original training) and ``path``.
    """
    y = np.asarray(y, dtype=np.float64)
    if len(arch_keys) != len(table) or len(y) != len(table):
        raise ValueError(f"{len(table)} graphs, {len(arch_keys)} arch keys and {len(y)} labels must agree")
    key = _digest("autobuild-predictor", _CACHE_VERSION, list(arch_keys), y, asdict(config),
                  _code_digest(_MODEL_CODE))
    path = _cache_path(cache_dir, "predictor", key)
    if path is not None and path.is_file():
        try:
            result, extra = load_result(path, table.schema)
            if extra.get("key") == key:
                return result, {"cached": True, "train_s": float(extra.get("train_s", np.nan)), "path": str(path)}
        except (ValueError, RuntimeError, KeyError):
            pass  # a damaged cache file is retrained and overwritten
    t0 = time.perf_counter()
    result = train_predictor(table, y, config, progress=progress)
    train_s = time.perf_counter() - t0
    if path is not None:
        tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")  # unique: a cache filler may train at once
        save_result(result, tmp, key=key, train_s=train_s)
        tmp.replace(path)
    return result, {"cached": False, "train_s": train_s, "path": str(path) if path else None}


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


def build_equation(ls: LabelledSet, equation: str | LabelEquation, config: TrainConfig | None = None,
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
    t0 = time.perf_counter()
    hm = hop_moments(result.model, ls.graphs, result.train_idx)
    lm = label_moments(ls.space, [ls.archs[i] for i in result.train_idx], y[result.train_idx])
    scores = score_modules(result, ls.space, hm, lm, resolution)
    info = {**info, "score_s": time.perf_counter() - t0, **result.metrics}
    return EquationBuild(eq, AutoBuildRun(result, hm, lm, scores), info)


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

    def fit(self):
        if self.result is None:
            t0 = time.perf_counter()
            self.result, self.info = latency_predictor_cached(self.space, self.arch_keys, self.latencies_ms,
                                                              self.cache_dir, **self.kwargs)
            self.info["load_or_train_s"] = time.perf_counter() - t0
        return self.result

    def __call__(self, archs: Sequence[OFAArch | str]) -> np.ndarray:
        return self.fit().predict(archs)


# ----------------------------------------------------------------------------- fronts
def reference_point(frames: Sequence[pd.DataFrame], objectives: Sequence[tuple[str, bool]] = OBJECTIVES,
                    margin: float = 0.0) -> list[float]:
    """The nadir of all rows of ``frames``: the worst value of every objective, pushed out by
    ``margin`` times the objective's range.  A common reference point makes hypervolumes of
    different clusters / schemes comparable and is dominated (weakly) by every point."""
    rows = pd.concat([f[[n for n, _ in objectives]] for f in frames], ignore_index=True).astype(float)
    rows = rows[np.isfinite(rows.to_numpy()).all(axis=1)]
    if rows.empty:
        raise ValueError("reference_point needs at least one finite row")
    out = []
    for name, maximize in objectives:
        lo, hi = float(rows[name].min()), float(rows[name].max())
        span = (hi - lo) * margin
        out.append(lo - span if maximize else hi + span)
    return out


def hypervolume_clipped(points: object, ref_point: Sequence[float], maximize: Sequence[bool]) -> float:
    """:func:`~autobuild_lib.core.pareto.hypervolume` of the points that weakly dominate ``ref_point``
    (the others add no volume; :func:`pareto.hypervolume` refuses them)."""
    p = np.asarray(points, dtype=float).reshape(-1, len(maximize))
    p = p[np.isfinite(p).all(axis=1)]
    sign = np.where(maximize, -1.0, 1.0)
    keep = np.all(p * sign <= np.asarray(ref_point, dtype=float) * sign, axis=1)
    return pareto.hypervolume(p[keep].reshape(-1, len(maximize)), ref_point, list(maximize))


def front_gain_table(constructed: pd.DataFrame, reference: pd.DataFrame, group: str = "equation",
                     objectives: Sequence[tuple[str, bool]] = OBJECTIVES,
                     ref_point: Sequence[float] | None = None) -> pd.DataFrame:
    """Per group of ``constructed``: how many points lie beyond the Pareto front of ``reference``
    (:func:`~autobuild_lib.core.pareto.beyond_front`) and the hypervolume they add to it
    (:func:`~autobuild_lib.core.pareto.hypervolume_gain`, also as % of the reference front's volume).

    ``ref_point`` defaults to :func:`reference_point` over both frames (common to all groups).
    Rows with a non-finite objective are not counted.
    """
    names = [n for n, _ in objectives]
    maximize = [m for _, m in objectives]
    ref = reference[names].astype(float)
    ref = ref[np.isfinite(ref.to_numpy()).all(axis=1)]
    front = ref.loc[pareto.pareto_mask(ref.to_numpy(), maximize)].to_numpy()
    if ref_point is None:
        ref_point = reference_point([reference, constructed], objectives)
    base = hypervolume_clipped(front, ref_point, maximize)
    rows = []
    for g, sub in constructed.groupby(group, sort=False):
        pts = sub[names].astype(float).to_numpy()
        pts = pts[np.isfinite(pts).all(axis=1)]
        beyond = pareto.beyond_front(pts, front, maximize) if len(pts) else np.zeros(0, dtype=bool)
        union = hypervolume_clipped(np.vstack([front, pts]), ref_point, maximize)
        gain = max(union - base, 0.0)
        row = {group: g, "n": len(pts), "beyond front": int(beyond.sum()),
               "% beyond": 100.0 * beyond.mean() if len(pts) else np.nan,
               "HV gain": gain, "HV gain %": 100.0 * gain / base if base > 0 else np.nan}
        for n in names:
            row[f"median {n}"] = float(np.median(sub[n])) if len(sub) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- search
class SearchMetrics:
    """``arch -> {"acc", "latency_cpu"}`` for :func:`~autobuild_lib.core.search.evolutionary_search`,
    recording where every number came from.

    Two modes:

    * ``evaluator=ev`` (a Mini-OFA :class:`~autobuild_lib.benchmarks.miniofa.evaluator.Evaluator`): accuracy
      evaluated for real (benchmark table, cache or computed); latency as the evaluator gives it
      (``latency_source`` measured / predicted).
    * ``accuracy_fn=f`` (surrogate, ``archs -> acc``) with ``latency_fn`` (``archs -> ms``) and
      ``known`` (the labelled frame): an architecture of ``known`` takes its labels from there
      (``benchmark`` / ``measured``), any other its predictions (``predicted``).

    :meth:`provenance` gives one row per distinct architecture; repeated requests (another
    scheme or seed reaching the same architecture) are answered from memory.
    """

    def __init__(self, space: OFASpace, space_name: str | None = None, evaluator=None,
                 accuracy_fn: Callable[[Sequence[OFAArch]], np.ndarray] | None = None,
                 latency_fn: Callable[[Sequence[OFAArch]], np.ndarray] | None = None,
                 known: pd.DataFrame | None = None) -> None:
        if (evaluator is None) == (accuracy_fn is None):
            raise ValueError("give exactly one of evaluator= (real accuracy) or accuracy_fn= (surrogate)")
        if accuracy_fn is not None and latency_fn is None:
            raise ValueError("the surrogate mode needs latency_fn= as well")
        self.space, self.space_name = space, space_name or space.name
        self.evaluator, self.accuracy_fn, self.latency_fn = evaluator, accuracy_fn, latency_fn
        self.known = None
        if known is not None:
            self.known = known.set_index("arch")[["acc", "latency_cpu"]].astype(float)
        self.log: dict[str, dict] = {}
        self.requests = 0

    @property
    def mode(self) -> str:
        return "evaluator" if self.evaluator is not None else "predictor"

    def __call__(self, arch: OFAArch) -> dict[str, float]:
        self.requests += 1
        key = self.space.to_string(arch)
        if key not in self.log:
            t0 = time.perf_counter()
            if self.evaluator is not None:
                r = self.evaluator.evaluate(self.space_name, key)
                rec = {"acc": float(r["acc"]), "latency_cpu": float(r["latency_cpu"]),
                       "acc_source": "evaluated", "latency_source": r["latency_source"], "source": r["source"]}
            elif self.known is not None and key in self.known.index:
                acc, lat = self.known.loc[key]
                rec = {"acc": float(acc), "latency_cpu": float(lat), "acc_source": "benchmark",
                       "latency_source": "measured", "source": "benchmark"}
            else:
                rec = {"acc": float(self.accuracy_fn([arch])[0]), "latency_cpu": float(self.latency_fn([arch])[0]),
                       "acc_source": "predicted", "latency_source": "predicted", "source": "predictor"}
            rec["seconds"] = time.perf_counter() - t0
            self.log[key] = rec
        rec = self.log[key]
        return {"acc": rec["acc"], "latency_cpu": rec["latency_cpu"]}

    def provenance(self) -> pd.DataFrame:
        """One row per distinct architecture: metrics, ``acc_source``, ``latency_source``, ``source``, ``seconds``."""
        cols = ["arch", "acc", "latency_cpu", "acc_source", "latency_source", "source", "seconds"]
        return pd.DataFrame([{"arch": k, **v} for k, v in self.log.items()], columns=cols)


def run_search_grid(space: OFASpace, schemes: Mapping[str, MutationScheme], evaluate: Callable,
                    seeds: Sequence[int], n_initial: int = 50, n_iterations: int = 4, per_iteration: int = 50,
                    objectives: Sequence[tuple[str, bool]] = OBJECTIVES,
                    progress: bool = False) -> dict[tuple[str, int], SearchResult]:
    """:func:`~autobuild_lib.core.search.evolutionary_search` for every scheme and seed (same budget each)."""
    if not schemes or not seeds:
        raise ValueError("run_search_grid needs at least one scheme and one seed")
    out = {}
    for name, scheme in schemes.items():
        for s in seeds:
            out[(name, int(s))] = evolutionary_search(space, scheme, evaluate, objectives, n_initial=n_initial,
                                                      n_iterations=n_iterations, per_iteration=per_iteration,
                                                      seed=int(s), progress=progress)
    return out


def search_history(results: Mapping[tuple[str, int], SearchResult]) -> pd.DataFrame:
    """All evaluations of all runs: the runs' histories with ``scheme`` and ``seed`` columns."""
    return pd.concat([r.history.assign(scheme=name, seed=s) for (name, s), r in results.items()],
                     ignore_index=True)


def hypervolume_curves(results: Mapping[tuple[str, int], SearchResult],
                       ref_point: Sequence[float]) -> pd.DataFrame:
    """Hypervolume of every run's front after each iteration: scheme, seed, iteration, evaluated, HV."""
    rows = []
    for (name, s), r in results.items():
        names = [n for n, _ in r.objectives]
        maximize = [m for _, m in r.objectives]
        for it in range(int(r.history["iteration"].max()) + 1):
            front = r.front_at(it)
            rows.append({"scheme": name, "seed": s, "iteration": it,
                         "evaluated": int((r.history["iteration"] <= it).sum()),
                         "HV": hypervolume_clipped(front[names].to_numpy(dtype=float), ref_point, maximize)})
    return pd.DataFrame(rows)


def hypervolume_summary(results: Mapping[tuple[str, int], SearchResult],
                        ref_point: Sequence[float]) -> pd.DataFrame:
    """Final-front hypervolume per scheme over seeds: n seeds, mean, std (ddof 1), min, max,
    and the front size; schemes in the order of ``results``."""
    curves = hypervolume_curves(results, ref_point)
    final = curves.loc[curves.groupby(["scheme", "seed"], sort=False)["iteration"].idxmax()]
    sizes = {k: len(r.front) for k, r in results.items()}
    final = final.assign(front=[sizes[(a, b)] for a, b in zip(final["scheme"], final["seed"])])
    order = list(dict.fromkeys(name for name, _ in results))
    g = final.groupby("scheme", sort=False)
    table = pd.DataFrame({
        "seeds": g["seed"].count(),
        "HV mean": g["HV"].mean(),
        "HV std": g["HV"].std(ddof=1),
        "HV min": g["HV"].min(),
        "HV max": g["HV"].max(),
        "front size (mean)": g["front"].mean(),
    })
    return table.loc[order]


# ----------------------------------------------------------------------------- evaluation cost
def uncached_archs(evaluator, space: str, archs: Sequence[OFAArch | str], include_cache: bool = True) -> list[str]:
    """Canonical strings of ``archs`` (distinct, input order) that ``evaluator`` would compute:
    neither in the benchmark table nor in its SQLite cache in a form it accepts (a cached
    row with predicted latency does not count when the evaluator measures latency).
    ``include_cache=False`` ignores the cache: what an empty cache would have to compute."""
    from autobuild_lib.benchmarks.pipeline.manifest import sha256_file
    from autobuild_lib.benchmarks.miniofa.supernet import space_of

    sp = space_of(space)
    keys = list(dict.fromkeys(sp.to_string(a if isinstance(a, OFAArch) else sp.from_string(a)) for a in archs))
    known: set[str] = set()
    table = Path(evaluator.root) / f"{space}.csv"
    if evaluator.use_table and table.is_file():
        known |= set(pd.read_csv(table, usecols=["arch"])["arch"])
    rest = [k for k in keys if k not in known]
    if include_cache and rest and Path(evaluator.cache_path).is_file():
        sha = sha256_file(evaluator.weights(space))
        con = sqlite3.connect(f"file:{evaluator.cache_path}?mode=ro", uri=True)
        try:
            cached = {a: src for a, src in con.execute(
                "SELECT arch, latency_source FROM evaluations WHERE space=? AND weights_sha256=?", (space, sha))}
        except sqlite3.OperationalError:  # an empty cache file without the table
            cached = {}
        finally:
            con.close()
        ok = {a for a, src in cached.items() if src == "measured" or evaluator.latency != "measure"}
        known |= ok
    return [k for k in keys if k not in known]


def seconds_per_new_arch(root: str | Path, space: str,
                         stages: Sequence[str] = ("static", "latency", "acc")) -> float | None:
    """Single-core seconds one new architecture cost when the benchmark was generated, summed over
    ``stages`` (from ``runs.jsonl``: wall_s x n_jobs / units done); None when not recorded."""
    path = Path(root) / "runs.jsonl"
    if not path.is_file():
        return None
    per_stage: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("space") != space or rec.get("stage") not in stages or not rec.get("done_now"):
            continue
        per_stage.setdefault(rec["stage"], []).append(
            float(rec["wall_s"]) * float(rec.get("n_jobs", 1) or 1) / float(rec["done_now"]))
    if set(per_stage) != set(stages):
        return None
    return float(sum(np.median(v) for v in per_stage.values()))


def resolve_eval_cache(eval_cache: str, profile: str, root: str | Path) -> Path:
    """Where a chapter's evaluator keeps its SQLite cache.

    ``"auto"``: in the full profile the benchmark's own cache (``<root>/evaluations.sqlite``,
    the committed one, so a re-run is fast and new results are kept); in the smoke profile a
    fresh temporary copy of it, so smoke runs never write into ``data/``.  Anything else is a
    path (relative paths are taken from the repository root).
    """
    import atexit
    import shutil
    import tempfile

    from autobuild_lib.paths import REPO_ROOT

    default = Path(root) / "evaluations.sqlite"
    if eval_cache != "auto":
        p = Path(eval_cache)
        return p if p.is_absolute() else REPO_ROOT / p
    if profile != "smoke":
        return default
    tmp = Path(tempfile.mkdtemp(prefix="autobuild-eval-")) / "evaluations.sqlite"
    atexit.register(shutil.rmtree, tmp.parent, ignore_errors=True)  # removed when the kernel exits
    if default.is_file():
        shutil.copyfile(default, tmp)
    return tmp


# ----------------------------------------------------------------------------- chapter 05: what gets evaluated
CHAPTER05_EQUATIONS: tuple[str, ...] = (
    "100**(acc/100)",
    "100**(acc/100)/(log10(latency_cpu+1)+1)",
    "acc/latency_cpu",
    "acc - latency_cpu",
)
"""The default label equations of chapters 05 and 06 (the paper's forms, Sec. 5.1 / 7.2, with
``acc`` in % and ``latency_cpu`` in ms): accuracy only; accuracy discounted by log-latency; the
accuracy/latency ratio; their difference.  Chapter 05's ``equations`` parameter defaults to these."""

DEFAULT_PREDICTOR_CACHE = ".cache/predictors"
"""Where the chapters keep trained predictors (relative to the repository root; not committed)."""

PROFILES = ("smoke", "full")


def chapter05_settings(profile: str = "full", equations: Sequence[str] = CHAPTER05_EQUATIONS, k: int = 3,
                       epochs: int = 200, latency_epochs: int = 500) -> dict:
    """The effective settings of chapter 05 for ``profile``.

    ``full`` is the paper's setting: every equation, ``k`` modules per unit, every labelled
    architecture for training (``n_train`` None) and every constructed architecture evaluated
    (``n_eval`` None).  ``smoke`` is a plumbing run: the first and the last equation, K <= 2,
    at most 3 epochs, 300 training architectures and 1 evaluation per equation (the first constructed).
    Returns ``profile``, ``equations`` (list of str), ``k``, ``epochs``, ``latency_epochs``,
    ``n_train`` and ``n_eval``.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    eqs = [e.text if isinstance(e, LabelEquation) else str(e) for e in equations]
    if not eqs:
        raise ValueError("chapter 05 needs at least one label equation")
    for name, v in (("k", k), ("epochs", epochs), ("latency_epochs", latency_epochs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if profile == "smoke":
        return {"profile": profile, "equations": [eqs[0], eqs[-1]] if len(eqs) > 1 else eqs,
                "k": min(int(k), 2), "epochs": min(int(epochs), 3), "latency_epochs": min(int(latency_epochs), 3),
                "n_train": 300, "n_eval": 1}
    return {"profile": profile, "equations": eqs, "k": int(k), "epochs": int(epochs),
            "latency_epochs": int(latency_epochs), "n_train": None, "n_eval": None}


def chapter06_settings(profile: str = "full", k: int = 25, n_initial: int = 50, n_iterations: int = 4,
                       per_iteration: int = 50, epochs: int = 200, latency_epochs: int = 500,
                       accuracy: str = "auto", dataset: str = "mini-ofa") -> dict:
    """The effective settings of chapter 06 for ``profile``.

    ``full`` keeps the given values (paper: K=25, budget 250 = 50 + 4 x 50, 200 / 500 epochs).
    ``smoke`` is a plumbing run: K <= 5, at most 3 epochs, budget at most 6 + 2 x 3 and 300
    training architectures.  ``accuracy="auto"`` becomes ``"evaluator"`` for the full profile on
    the Mini-OFA benchmark (real evaluation, cached) and ``"predictor"`` (an accuracy-predictor
    surrogate) otherwise; ``"evaluator"`` on a dataset without an evaluator raises ValueError.
    Returns ``k``, ``n_initial``, ``n_iterations``, ``per_iteration``, ``budget``, ``epochs``,
    ``latency_epochs``, ``accuracy`` and ``n_train``.
    """
    from autobuild_lib.study.data import can_evaluate

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    for name, v in (("k", k), ("n_initial", n_initial), ("per_iteration", per_iteration), ("epochs", epochs),
                    ("latency_epochs", latency_epochs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, (int, np.integer)) or n_iterations < 0:
        raise ValueError(f"n_iterations must be an int >= 0, got {n_iterations!r}")
    if accuracy not in ("auto", "evaluator", "predictor"):
        raise ValueError(f"accuracy must be 'auto', 'evaluator' or 'predictor', got {accuracy!r}")
    if accuracy == "evaluator" and not can_evaluate(dataset):
        raise ValueError(f"accuracy='evaluator' needs the Mini-OFA benchmark; {dataset} has no evaluator "
                         "(ImageNet evaluation is not available here): use accuracy='predictor'")
    out = {"k": int(k), "n_initial": int(n_initial), "n_iterations": int(n_iterations),
           "per_iteration": int(per_iteration), "epochs": int(epochs), "latency_epochs": int(latency_epochs),
           "n_train": None}
    if profile == "smoke":
        out.update(k=min(out["k"], 5), epochs=min(out["epochs"], 3), latency_epochs=min(out["latency_epochs"], 3),
                   n_initial=min(out["n_initial"], 6), n_iterations=min(out["n_iterations"], 2),
                   per_iteration=min(out["per_iteration"], 3), n_train=300)
    if accuracy == "auto":
        accuracy = "evaluator" if (can_evaluate(dataset) and profile == "full") else "predictor"
    out["accuracy"] = accuracy
    out["budget"] = out["n_initial"] + out["n_iterations"] * out["per_iteration"]
    return out


def evenly_spaced(items: Sequence, n: int | None) -> list:
    """``n`` items of ``items`` at evenly spaced positions (first and last included; all of them
    when ``n`` is None or not smaller than ``len(items)``), in their order."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


@dataclass
class ConstructionPlan:
    """Chapter 05's builds and the architectures it constructs and evaluates, per equation."""

    space: OFASpace
    builds: dict[str, EquationBuild]
    constructed: dict[str, list[OFAArch]]
    to_evaluate: dict[str, list[OFAArch]]

    def keys(self) -> list[str]:
        """Distinct canonical strings of every architecture to evaluate (equation order, then
        construction order): the list a background job evaluates to fill the cache."""
        return list(dict.fromkeys(self.space.to_string(a) for archs in self.to_evaluate.values() for a in archs))

    def frame(self) -> pd.DataFrame:
        """One row per (equation, architecture to evaluate): ``equation``, ``arch``."""
        return pd.DataFrame([{"equation": t, "arch": self.space.to_string(a)}
                             for t, archs in self.to_evaluate.items() for a in archs], columns=["equation", "arch"])


def plan_construction(ls: LabelledSet, equations: Sequence[str | LabelEquation], k: int,
                      config: TrainConfig | None = None, cache_dir: str | Path | None = None,
                      n_eval: int | None = None, resolution: int = 224,
                      progress: bool = False) -> ConstructionPlan:
    """:func:`build_equation` for every equation, then its ``k ** n_units`` architectures
    (:meth:`EquationBuild.construct`); ``n_eval`` keeps that many evenly spaced ones per equation
    for evaluation (:func:`evenly_spaced`; None: all).  Deterministic for fixed data, equations
    and ``config`` (training runs on one thread with ``config.seed``)."""
    parsed = [e if isinstance(e, LabelEquation) else LabelEquation.parse(e) for e in equations]
    texts = [e.text for e in parsed]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
        raise ValueError(f"equations {twice} are listed twice")
    builds = {e.text: build_equation(ls, e, config, resolution=resolution, cache_dir=cache_dir, progress=progress)
              for e in parsed}
    constructed = {t: b.construct(ls.space, k, resolution=resolution) for t, b in builds.items()}
    to_eval = {t: evenly_spaced(a, n_eval) for t, a in constructed.items()}
    return ConstructionPlan(ls.space, builds, constructed, to_eval)


def _predictor_cache_dir(predictor_cache: str | Path | None) -> Path | None:
    from autobuild_lib.paths import REPO_ROOT

    if predictor_cache is None or str(predictor_cache) == "":
        return None
    p = Path(predictor_cache)
    return p if p.is_absolute() else REPO_ROOT / p


def chapter05_plan(space: str, dataset: str = "mini-ofa", data_dir: str | Path | None = None,
                   profile: str = "full", equations: Sequence[str] = CHAPTER05_EQUATIONS, k: int = 3,
                   epochs: int = 200, seed: int = 0,
                   predictor_cache: str | Path | None = DEFAULT_PREDICTOR_CACHE,
                   progress: bool = False) -> ConstructionPlan:
    """The :class:`ConstructionPlan` chapter 05 computes for these parameters (same names and
    defaults as the chapter's parameters cell; the Mini-OFA folder is
    :func:`~autobuild_lib.study.data.mini_ofa_dir`)."""
    from autobuild_lib.study import data as study

    st = chapter05_settings(profile, equations, k, epochs)
    ls = study.load_set(dataset, space, data_dir, n=st["n_train"], seed=seed)
    return plan_construction(ls, st["equations"], st["k"], TrainConfig(epochs=st["epochs"], seed=seed),
                             _predictor_cache_dir(predictor_cache), st["n_eval"], progress=progress)


def archs_digest(keys: Sequence[str]) -> str:
    """A short fingerprint (12 hex digits of sha256) of an ordered list of architecture strings:
    chapter 05 prints it so a run can be checked against a background job's list."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


def chapter05_archs(space: str, **kwargs) -> list[str]:
    """Canonical strings of the distinct architectures chapter 05 evaluates for ``space``
    (keyword arguments as :func:`chapter05_plan`; default: the full profile on Mini-OFA).
    Trains (or loads from the predictor cache) one predictor per equation."""
    return chapter05_plan(space, **kwargs).keys()


def fill_chapter05_cache(space: str, cache: str | Path | None = None, progress: bool = True,
                         **kwargs) -> pd.DataFrame:
    """Evaluate :func:`chapter05_archs` with the Mini-OFA evaluator (measured latency) so that
    the chapter's full profile finds them all cached.  ``cache`` defaults to the evaluator's
    (``<mini-ofa dir>/evaluations.sqlite``, the one the full profile reads).  Resumable: rows are
    committed one by one and never recomputed.  Returns :meth:`Evaluator.evaluate_many`'s frame."""
    from autobuild_lib.study import data as study

    if kwargs.get("dataset", "mini-ofa") != "mini-ofa":
        raise ValueError("only the Mini-OFA benchmark can evaluate new architectures")
    keys = chapter05_archs(space, **kwargs)
    ev = study.evaluator("mini-ofa", cache=cache)
    return ev.evaluate_many(space, keys, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m autobuild_lib.study.construction --space mbv3 pn [--list | --count | --fill]``."""
    import argparse
    import sys

    from autobuild_lib.study import data as study

    ap = argparse.ArgumentParser(prog="python -m autobuild_lib.study.construction",
                                 description="The architectures chapter 05 evaluates: list them, count what the "
                                             "evaluation cache lacks, or fill the cache.")
    ap.add_argument("--space", nargs="+", default=["mbv3", "pn"], choices=["mbv3", "pn"])
    ap.add_argument("--profile", default="full", choices=PROFILES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--equation", action="append", dest="equations",
                    help=f"label equation (repeat; default: {list(CHAPTER05_EQUATIONS)})")
    ap.add_argument("--predictor-cache", default=DEFAULT_PREDICTOR_CACHE)
    ap.add_argument("--cache", default=None, help="evaluation cache (default: <mini-ofa dir>/evaluations.sqlite)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="print one canonical architecture string per line")
    what.add_argument("--count", action="store_true", help="print counts as JSON (default)")
    what.add_argument("--fill", action="store_true", help="evaluate every architecture not cached yet")
    args = ap.parse_args(argv)
    kw = {"profile": args.profile, "seed": args.seed, "k": args.k, "epochs": args.epochs,
          "equations": args.equations or CHAPTER05_EQUATIONS, "predictor_cache": args.predictor_cache}
    for space in args.space:
        if args.fill:
            out = fill_chapter05_cache(space, cache=args.cache, **kw)
            print(json.dumps({"space": space, "archs": len(out), **out["source"].value_counts().to_dict()}))
            continue
        keys = chapter05_archs(space, **kw)
        if args.list:
            sys.stdout.write("".join(f"{space}\t{k}\n" for k in keys))
            continue
        ev = study.evaluator("mini-ofa", cache=args.cache)
        todo = uncached_archs(ev, space, keys)
        never = uncached_archs(ev, space, keys, include_cache=False)
        print(json.dumps({"space": space, "digest": archs_digest(keys), "distinct archs": len(keys),
                          "in benchmark table": len(keys) - len(never),
                          "cached": len(never) - len(todo), "to compute": len(todo)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
