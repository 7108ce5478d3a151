"""Building architectures from label equations and searching with them (chapters 05 and 06).

Paper Sec. 5.1 / 7.2 / 7.5 (Fig. 5).  The algorithms themselves live elsewhere
(:mod:`~autobuild_lib.core.scoring`: training, Eq. 5 and top-K construction;
:mod:`~autobuild_lib.core.search`: the evolutionary search and its mutation schemes;
:mod:`~autobuild_lib.core.pareto`: fronts and hypervolumes).  This module holds what
the two chapters need around them:

Trained predictors (one per label equation, and latency predictors) come from
:mod:`~autobuild_lib.core.build`, whose on-disk cache lets chapter 06 reuse chapter 05's.
* :func:`reference_point`, :func:`hypervolume_clipped`, :func:`front_gain_table`
  -- how far constructed clusters go beyond the training front.
* :class:`SearchMetrics`, :func:`run_search_grid`, :func:`hypervolume_summary`,
  :func:`hypervolume_curves` -- the NAS comparison with provenance of every number
  (real evaluation or predictor, measured or predicted latency).
* :func:`seconds_per_new_arch` -- what an evaluation would cost without the committed
  evaluation cache (which architectures are not cached: ``Evaluator.uncached``).
* :func:`chapter05_settings`, :func:`plan_construction`, :func:`chapter05_archs`,
  :func:`fill_chapter05_cache` -- exactly which architectures chapter 05 evaluates, so that a
  background job can fill the evaluation cache before the chapter runs
  (``python -m autobuild_lib chapter05 --space mbv3 --list`` / ``--fill``).
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.labelled import LabelledSet
from autobuild_lib.benchmarks.pipeline.stages import read_runs
from autobuild_lib.core import pareto
from autobuild_lib.core.build import EquationBuild, build_equations
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.core.search import MutationScheme, SearchResult, evolutionary_search
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace
from autobuild_lib.core.training import TrainConfig
from autobuild_lib.study.params import ChapterParams

__all__ = ["OBJECTIVES", "reference_point", "hypervolume_clipped",
           "front_gain_table", "SearchMetrics", "run_search_grid", "search_history", "hypervolume_summary",
           "hypervolume_curves", "seconds_per_new_arch", "fill_seconds_per_eval", "resolve_eval_cache",
           "CHAPTER05_EQUATIONS", "DEFAULT_PREDICTOR_CACHE", "resolve_predictor_cache", "ConstructionParams", "chapter05_settings", "chapter06_settings", "evenly_spaced",
           "ConstructionPlan", "plan_construction", "with_predicted_latency", "chapter05_plan", "chapter05_archs", "measure_constructed_latency", "fill_chapter05_cache",
           "archs_digest"]

OBJECTIVES: list[tuple[str, bool]] = [("acc", True), ("latency_cpu", False)]
"""Chapter 05/06 objectives: top-1 accuracy (%, maximised) and CPU latency (ms, minimised)."""

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
      With ``latency_fn`` (``archs -> ms``) an architecture outside the benchmark table takes its
      latency from there (``predicted``, :func:`with_predicted_latency`).
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
                if self.latency_fn is not None and r["source"] != "benchmark":
                    rec.update(latency_cpu=float(self.latency_fn([arch])[0]), latency_source="predicted")
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


def with_predicted_latency(evaluated: pd.DataFrame, latency: Callable[[Sequence[str]], np.ndarray]) -> pd.DataFrame:
    """Evaluator rows with ``latency_cpu`` from ``latency`` (``arch keys -> ms``) for every architecture
    outside the benchmark table, ``latency_source`` "predicted"; benchmark rows keep their measured value.

    The paper predicts the latency of new architectures (Sec. 4, a k-GNN); measuring them beside
    other jobs would mix noisy single runs with the benchmark's repeated rounds.
    """
    out = evaluated.copy()
    new = (out["source"] != "benchmark").to_numpy()
    if new.any():
        out.loc[new, "latency_cpu"] = np.asarray(latency(list(out.loc[new, "arch"])), dtype=float)
        out.loc[new, "latency_source"] = "predicted"
    return out


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
def seconds_per_new_arch(root: str | Path, space: str,
                         stages: Sequence[str] = ("static", "latency", "acc")) -> float | None:
    """Single-core seconds one new architecture cost when the benchmark was generated, summed over
    ``stages`` (from ``runs.jsonl``: wall_s x n_jobs / units done); None when not recorded."""
    per_stage: dict[str, list[float]] = {}
    for rec in read_runs(root):
        if rec.get("space") != space or rec.get("stage") not in stages or not rec.get("done_now"):
            continue
        per_stage.setdefault(rec["stage"], []).append(
            float(rec["wall_s"]) * float(rec.get("n_jobs", 1) or 1) / float(rec["done_now"]))
    if set(per_stage) != set(stages):
        return None
    return float(sum(np.median(v) for v in per_stage.values()))


def fill_seconds_per_eval(root: str | Path, space: str, stage: str) -> float | None:
    """Single-core seconds per evaluation that a chapter's cache fill measured (``stage`` records of
    ``runs.jsonl``: ``wall_s x n_jobs`` summed over their ``computed`` evaluations); None when no record
    computed anything."""
    seconds = computed = 0.0
    for rec in read_runs(root):
        if rec.get("space") == space and rec.get("stage") == stage and rec.get("computed"):
            seconds += float(rec["wall_s"]) * float(rec.get("n_jobs", 1) or 1)
            computed += float(rec["computed"])
    return seconds / computed if computed else None


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

DEFAULT_PREDICTOR_CACHE = "auto"
"""Where the chapters keep trained predictors by default: see :func:`resolve_predictor_cache`."""


def resolve_predictor_cache(predictor_cache: str | Path | None, profile: str, dataset: str) -> Path | None:
    """Where a chapter keeps its trained predictors (the one predictor cache of ``core.build``).

    ``"auto"``: in the full profile on the Mini-OFA benchmark, ``<benchmark>/predictors/`` next to
    ``evaluations.sqlite``: committed, so a fresh clone rebuilds the constructed architectures
    of chapters 04-06 without retraining on another CPU.  Otherwise (smoke runs, the authors'
    release) ``.cache/predictors``, which is not committed, so smoke runs never write into
    ``data/``.  ``""`` or None: no cache.  Anything else is a folder (relative paths are taken
    from the repository root).
    """
    from autobuild_lib.paths import REPO_ROOT
    from autobuild_lib.study.data import mini_ofa_dir

    if predictor_cache is None or str(predictor_cache) == "":
        return None
    if str(predictor_cache) == "auto":
        return mini_ofa_dir() / "predictors" if (profile == "full" and dataset == "mini-ofa") \
            else REPO_ROOT / ".cache" / "predictors"
    p = Path(predictor_cache)
    return p if p.is_absolute() else REPO_ROOT / p

PROFILES = ("smoke", "full")



@dataclass(frozen=True, kw_only=True)
class ConstructionParams(ChapterParams):
    """The parameters chapters 05 and 06 share (their notebooks' cells name them alike): label
    equations, K, predictor schedules and the two caches; a subclass resolves the profile and
    fills ``eqs``, ``n_train``, ``config`` and ``pcache``."""

    seed: int
    seeds: list[int]
    data_dir: str
    space: str
    equations: list[str]
    k: int
    epochs: int
    latency_epochs: int
    eval_cache: str
    predictor_cache: str
    eqs: list[LabelEquation] = field(init=False, default_factory=list)
    n_train: int | None = field(init=False, default=None)  # None: every labelled architecture
    config: TrainConfig | None = field(init=False, default=None)
    pcache: Path | None = field(init=False, default=None)

    def _check_caches(self) -> None:
        for name in ("eval_cache", "predictor_cache"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a path string, got {getattr(self, name)!r}")

    def _set_training(self, epochs: int) -> None:
        """The predictors' training config and cache folder for the resolved ``epochs``."""
        self._set(config=TrainConfig(epochs=epochs, seed=self.seed),
                  pcache=resolve_predictor_cache(self.predictor_cache, self.profile, self.dataset))

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
                      n_eval: int | None = None, resolution: int = 224) -> ConstructionPlan:
    """:func:`build_equations` (cache misses trained in parallel), then every equation's ``k ** n_units`` architectures
    (:meth:`EquationBuild.construct`); ``n_eval`` keeps that many evenly spaced ones per equation
    for evaluation (:func:`evenly_spaced`; None: all).  Deterministic for fixed data, equations
    and ``config`` (training runs on one thread with ``config.seed``)."""
    parsed = [e if isinstance(e, LabelEquation) else LabelEquation.parse(e) for e in equations]
    texts = [e.text for e in parsed]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
        raise ValueError(f"equations {twice} are listed twice")
    builds = {e.text: b for e, b in zip(parsed, build_equations(ls, parsed, config, resolution=resolution,
                                                                 cache_dir=cache_dir))}
    constructed = {t: b.construct(ls.space, k, resolution=resolution) for t, b in builds.items()}
    to_eval = {t: evenly_spaced(a, n_eval) for t, a in constructed.items()}
    return ConstructionPlan(ls.space, builds, constructed, to_eval)


def chapter05_plan(space: str, dataset: str = "mini-ofa", data_dir: str | Path | None = None,
                   profile: str = "full", equations: Sequence[str] = CHAPTER05_EQUATIONS, k: int = 3,
                   epochs: int = 200, seed: int = 0,
                   predictor_cache: str | Path | None = DEFAULT_PREDICTOR_CACHE) -> ConstructionPlan:
    """The :class:`ConstructionPlan` chapter 05 computes for these parameters (same names and
    defaults as the chapter's parameters cell; the Mini-OFA folder is
    :func:`~autobuild_lib.study.data.mini_ofa_dir`)."""
    from autobuild_lib.study import data as study

    st = chapter05_settings(profile, equations, k, epochs)
    ls = study.load_set(dataset, space, data_dir, n=st["n_train"], seed=seed)
    return plan_construction(ls, st["equations"], st["k"], TrainConfig(epochs=st["epochs"], seed=seed),
                             resolve_predictor_cache(predictor_cache, profile, dataset), st["n_eval"])


def archs_digest(keys: Sequence[str]) -> str:
    """A short fingerprint (12 hex digits of sha256) of an ordered list of architecture strings:
    chapter 05 prints it so a run can be checked against a background job's list."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


def chapter05_archs(space: str, **kwargs) -> list[str]:
    """Canonical strings of the distinct architectures chapter 05 evaluates for ``space``
    (keyword arguments as :func:`chapter05_plan`; default: the full profile on Mini-OFA).
    Trains (or loads from the predictor cache) one predictor per equation."""
    return chapter05_plan(space, **kwargs).keys()


def measure_constructed_latency(space: str, keys: Sequence[str], n: int = 100, progress: bool = True) -> dict:
    """Measure ``n`` evenly spaced architectures of ``keys`` (chapter 05's list) that are not in the
    benchmark table with the space's latency-round protocol, and the latency predictor's error on
    them (:func:`~autobuild_lib.benchmarks.miniofa.latency_outside.measure_outside`; run it with
    nothing else on the machine).  Returns the figures."""
    from autobuild_lib.benchmarks.miniofa.constants import load_mini_ofa
    from autobuild_lib.benchmarks.miniofa.latency_outside import measure_outside
    from autobuild_lib.study import data as study

    root = study.mini_ofa_dir()
    known = set(load_mini_ofa(space, root)["arch"])
    outside = [k for k in keys if k not in known]
    if len(outside) < n:
        raise ValueError(f"only {len(outside)} of the {len(keys)} constructed {space} architectures are outside "
                         f"the benchmark; ask for at most that many")
    return measure_outside(space, evenly_spaced(outside, n), root, tag="constructed",
                           source=f"chapter 05 full profile, {n} of {len(outside)} constructed, list {archs_digest(keys)}",
                           progress=progress)


def log_fill(stage: str, record: dict, started_utc: str, wall_s: float) -> None:
    """Log one finished cache fill (``record`` has ``space``) as stage ``stage`` of the Mini-OFA
    benchmark in ``runs.jsonl``, then rewrite the data card and the manifest: the card's wall-time
    table shows what the committed caches cost, and on which machine."""
    from autobuild_lib.benchmarks.miniofa.card import write_card
    from autobuild_lib.benchmarks.miniofa.constants import MANIFEST_EXCLUDE
    from autobuild_lib.benchmarks.miniofa.labels import machine_info
    from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
    from autobuild_lib.benchmarks.pipeline.stages import log_run
    from autobuild_lib.benchmarks.pipeline.workunits import folder_lock
    from autobuild_lib.study import data as study

    root = study.mini_ofa_dir()
    with folder_lock(root):
        log_run(root, {**record, "stage": stage, "started_utc": started_utc, "wall_s": round(wall_s, 2),
                       "n_jobs": 1, "machine": machine_info()})
        write_card(root)
        write_manifest(root, exclude=MANIFEST_EXCLUDE)


def fill_chapter05_cache(space: str, cache: str | Path | None = None, progress: bool = True,
                         **kwargs) -> pd.DataFrame:
    """Evaluate :func:`chapter05_archs` with the Mini-OFA evaluator (accuracy only: the chapter predicts
    the latency of new architectures with the benchmark's latency model) so that
    the chapter's full profile finds them all cached.  ``cache`` defaults to the evaluator's
    (``<mini-ofa dir>/evaluations.sqlite``, the one the full profile reads); a fill of that cache is
    logged as the benchmark's stage ``chapter05_fill`` (:func:`log_fill`).  Resumable: rows are
    committed one by one and never recomputed.  Returns :meth:`Evaluator.evaluate_many`'s frame."""
    from autobuild_lib.study import data as study

    if kwargs.get("dataset", "mini-ofa") != "mini-ofa":
        raise ValueError("only the Mini-OFA benchmark can evaluate new architectures")
    from autobuild_lib.benchmarks.pipeline.stages import now_utc

    t0, started = time.perf_counter(), now_utc()
    keys = chapter05_archs(space, **kwargs)
    ev = study.evaluator("mini-ofa", cache=cache, latency="skip")  # latency: the benchmark's predictor
    frame = ev.evaluate_many(space, keys, progress=progress)
    if cache is None:
        log_fill("chapter05_fill", {"space": space, "archs": len(keys), "list": archs_digest(keys),
                                    **{str(k): int(v) for k, v in frame["source"].value_counts().items()}},
                 started, time.perf_counter() - t0)
    return frame
