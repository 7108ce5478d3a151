"""Evolutionary neural architecture search: AutoBuild-NAS and its baselines.

Paper Sec. 4 / 7.5. AutoBuild-NAS takes, per unit (stage), the top-K modules
(K=25) by score from each of up to P=4 label equations and searches the
union-per-unit space ((4*25)^5 = 1e10 MBv3 architectures) with stage-wise
mutation. The baselines mutate the whole space: Stage-Full replaces one whole
stage subgraph, Layer-Full adds, removes or edits one layer, and
Layer-Insight runs Layer-Full on the hand-reduced MBv3 spaces.  For the SD
U-Net the baseline is the Exhaustive Search (Sec. 5.3,
:func:`exhaustive_search`): an MSE-only ensemble ranks every architecture.

The evolutionary algorithm (paper: "random initial pool, population = current
Pareto front, each iteration mutates front members into a fixed number of new
architectures which are evaluated and merged"; budget 250 = 50 + 4 x 50) is
:func:`evolutionary_search`.

Input resolution, for spaces that have one (``space.resolutions`` with more
than one value, architectures with a ``resolution`` attribute): every scheme
changes the resolution with probability ``1 / (n_units + 1)`` -- as if the
resolution were one more unit -- to a different allowed value drawn
uniformly, and otherwise mutates the structure and keeps the resolution.
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from autobuild_lib.core import pareto
from autobuild_lib.core.ensemble import Ensemble, ensemble_predict
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.spaces.base import Arch, Module, SearchSpace
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace, mbv3_insight
from autobuild_lib.core.spaces.sd import SDArch, SDSpace

Objective = tuple[str, bool]
"""(metric name, maximize): e.g. ``("acc", True)``, ``("latency_cpu", False)``."""

MAX_ATTEMPTS_PER_ARCH = 1000
"""Draws allowed per requested new architecture before the search gives up."""


def _arch_globals(arch: Arch) -> dict[str, object]:
    """Global (non-unit) choices of ``arch`` to pass to ``space.assemble``."""
    return {"resolution": arch.resolution} if hasattr(arch, "resolution") else {}


class MutationScheme(ABC):
    """A mutation operator plus the initial-population sampler that goes with it.

    ``mutate(arch, rng)`` returns a valid architecture of :attr:`space` that
    differs from ``arch``; ``sample_initial(rng)`` draws one architecture of
    the scheme's (possibly restricted) space. The resolution rule of the
    module docstring is applied here; subclasses implement the structural
    mutation.
    """

    name: str

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.resolutions: tuple[int, ...] = tuple(getattr(space, "resolutions", ()))
        if not self._structure_mutable() and len(self.resolutions) < 2:
            raise ValueError(f"{self.name}: {space.name} offers nothing to mutate (a single architecture)")

    @abstractmethod
    def _structure_mutable(self) -> bool:
        """Whether some structural mutation exists in this scheme's space."""

    @abstractmethod
    def _mutate_structure(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A different architecture with the same resolution."""

    @abstractmethod
    def sample_initial(self, rng: np.random.Generator) -> Arch:
        """One architecture of the initial random pool."""

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A valid architecture different from ``arch`` (resolution or structure changed)."""
        arch = self.space.validate(arch)
        if len(self.resolutions) > 1 and (
            not self._structure_mutable() or rng.random() < 1.0 / (self.space.n_units + 1)
        ):
            others = [r for r in self.resolutions if r != arch.resolution]
            new = others[int(rng.integers(len(others)))]
            return self.space.assemble(self.space.split(arch), resolution=new)
        return self._mutate_structure(arch, rng)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.space.name!r})"


class StageFull(MutationScheme):
    """Stage-Full baseline: replace one whole unit's module by a random module of that unit.

    The unit is drawn uniformly among units with more than one module; the new
    module is drawn with ``space.sample_module`` until it differs from the old
    one. The initial pool is ``space.sample``.
    """

    name = "Stage-Full"

    def __init__(self, space: SearchSpace) -> None:
        self._units = [u for u in range(space.n_units) if space.n_modules(u) > 1]
        super().__init__(space)

    def _structure_mutable(self) -> bool:
        return bool(self._units)

    def sample_initial(self, rng: np.random.Generator) -> Arch:
        return self.space.validate(self.space.sample(rng))

    def _mutate_structure(self, arch: Arch, rng: np.random.Generator) -> Arch:
        modules = self.space.split(arch)
        unit = self._units[int(rng.integers(len(self._units)))]
        for _ in range(MAX_ATTEMPTS_PER_ARCH):
            new = self.space.sample_module(unit, rng)
            if new != modules[unit]:
                modules[unit] = new
                return self.space.assemble(modules, **_arch_globals(arch))
        raise RuntimeError(
            f"{self.name}: sample_module({unit}) returned the current module {MAX_ATTEMPTS_PER_ARCH} times"
        )


class LayerFull(MutationScheme):
    """Layer-Full baseline on an OFA space: add, remove or edit one layer of one stage.

    A stage is drawn uniformly among the stages that allow some change, then
    one of the changes it allows, uniformly: *add* (depth + 1 allowed by
    ``space.depths``) inserts a random layer type at a random position,
    *remove* (depth - 1 allowed) deletes a random layer, *edit* replaces the
    (k, e) of a random layer by another type of ``space.layer_types``. PN's
    last stage (always one layer) can thus only be edited. The initial pool is
    ``space.sample``.
    """

    name = "Layer-Full"

    def __init__(self, space: OFASpace) -> None:
        if not isinstance(space, OFASpace):
            raise ValueError(f"{type(self).__name__} needs an OFASpace, got {type(space).__name__}")
        super().__init__(space)

    def _structure_mutable(self) -> bool:
        return len(self.space.layer_types) > 1 or any(d + 1 in ds for ds in self.space.depths for d in ds)

    def sample_initial(self, rng: np.random.Generator) -> OFAArch:
        return self.space.validate(self.space.sample(rng))

    def _stage_changes(self, stage_index: int, depth: int) -> list[str]:
        allowed = self.space.depths[stage_index]
        changes = []
        if depth + 1 in allowed:
            changes.append("add")
        if depth - 1 in allowed:
            changes.append("remove")
        if len(self.space.layer_types) > 1:
            changes.append("edit")
        return changes

    def _mutate_structure(self, arch: OFAArch, rng: np.random.Generator) -> OFAArch:
        options = [
            (s, changes)
            for s, stage in enumerate(arch.stages)
            if (changes := self._stage_changes(s, len(stage)))
        ]
        if not options:
            raise ValueError(f"{self.name}: no single-layer change of {self.space.to_string(arch)} stays in {self.space.name}")
        s, changes = options[int(rng.integers(len(options)))]
        change = changes[int(rng.integers(len(changes)))]
        types = self.space.layer_types
        layers = list(arch.stages[s])
        if change == "add":
            layers.insert(int(rng.integers(len(layers) + 1)), types[int(rng.integers(len(types)))])
        elif change == "remove":
            del layers[int(rng.integers(len(layers)))]
        else:
            pos = int(rng.integers(len(layers)))
            others = [t for t in types if t != layers[pos]]
            layers[pos] = others[int(rng.integers(len(others)))]
        stages = arch.stages[:s] + (tuple(layers),) + arch.stages[s + 1 :]
        return self.space.validate(OFAArch(arch.resolution, stages))


class LayerInsight(LayerFull):
    """Layer-Insight baseline: Layer-Full on a hand-reduced MBv3 space (paper Sec. 7.5).

    ``device`` is ``"gpu"``, ``"cpu"`` or ``"npu"`` (see
    :func:`autobuild_lib.core.spaces.ofa.mbv3_insight`); the initial pool and every
    mutant stay inside that restricted space, a subset of full MBv3.
    """

    def __init__(self, device: str) -> None:
        self.name = f"Layer-Insight-{device}"
        super().__init__(mbv3_insight(device))


def union_candidates(per_equation: Sequence[Sequence[Sequence[Module]]]) -> list[list[Module]]:
    """Per unit, the union of every label equation's top-K modules (paper Sec. 7.5).

    ``per_equation[p][u]`` is equation ``p``'s ranked module list for unit
    ``u`` (the paper uses up to P=4 equations with K=25). The result keeps the
    first occurrence of each module: equation 0's modules in rank order, then
    the modules of equation 1 not seen yet, and so on.
    """
    if not per_equation:
        raise ValueError("union_candidates needs at least one equation's per-unit module lists")
    n_units = len(per_equation[0])
    for p, per_unit in enumerate(per_equation):
        if len(per_unit) != n_units:
            raise ValueError(f"equation {p} has {len(per_unit)} units; equation 0 has {n_units}")
    return [list(dict.fromkeys(m for per_unit in per_equation for m in per_unit[u])) for u in range(n_units)]


class AutoBuildNAS(MutationScheme):
    """AutoBuild-NAS: stage-wise mutation inside the space of candidate modules.

    ``candidates[u]`` lists the modules unit ``u`` may take (see
    :func:`union_candidates`; duplicates are dropped, order kept). A mutation
    replaces one unit's module (unit drawn uniformly among units with at
    least two candidates) by a different candidate drawn uniformly. The
    initial pool draws one candidate per unit uniformly (and a uniform
    resolution where the space has several).
    """

    name = "AutoBuild-NAS"

    def __init__(self, space: SearchSpace, candidates: Sequence[Sequence[Module]]) -> None:
        if len(candidates) != space.n_units:
            raise ValueError(f"{self.name}: {space.name} has {space.n_units} units, got {len(candidates)} candidate lists")
        self.candidates = [list(dict.fromkeys(mods)) for mods in candidates]
        for u, mods in enumerate(self.candidates):
            if not mods:
                raise ValueError(f"{self.name}: unit {u} has no candidate modules")
        self._units = [u for u, mods in enumerate(self.candidates) if len(mods) > 1]
        super().__init__(space)
        # Check each candidate inside one fixed valid architecture of the space.
        reference = space.validate(space.sample(np.random.default_rng(0)))
        base = space.split(reference)
        globals_ = _arch_globals(reference)
        for u, mods in enumerate(self.candidates):
            for i, module in enumerate(mods):
                try:
                    space.assemble(base[:u] + [module] + base[u + 1 :], **globals_)
                except ValueError as err:
                    raise ValueError(f"{self.name}: candidate {i} of unit {u} ({module!r}) is invalid: {err}") from None

    def _structure_mutable(self) -> bool:
        return bool(self._units)

    def sample_initial(self, rng: np.random.Generator) -> Arch:
        modules = [mods[int(rng.integers(len(mods)))] for mods in self.candidates]
        if self.resolutions:
            return self.space.assemble(modules, resolution=self.resolutions[int(rng.integers(len(self.resolutions)))])
        return self.space.assemble(modules)

    def _mutate_structure(self, arch: Arch, rng: np.random.Generator) -> Arch:
        modules = self.space.split(arch)
        unit = self._units[int(rng.integers(len(self._units)))]
        others = [m for m in self.candidates[unit] if m != modules[unit]]
        modules[unit] = others[int(rng.integers(len(others)))]
        return self.space.assemble(modules, **_arch_globals(arch))


@dataclass
class SearchResult:
    """Everything one :func:`evolutionary_search` run evaluated.

    ``history`` has one row per evaluated architecture in evaluation order:
    ``arch`` (canonical string, ``space.to_string``), ``iteration`` (0 for the
    initial pool, then 1..n_iterations) and every metric ``evaluate`` returned.
    ``front`` is the final Pareto front over ``objectives``, sorted by the
    first objective.
    """

    history: pd.DataFrame
    objectives: list[Objective]
    front: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.front = self.front_at(int(self.history["iteration"].max()))

    @property
    def _names(self) -> list[str]:
        return [name for name, _ in self.objectives]

    @property
    def _maximize(self) -> list[bool]:
        return [maximize for _, maximize in self.objectives]

    def front_at(self, iteration: int) -> pd.DataFrame:
        """Pareto front of the architectures evaluated up to and including ``iteration``."""
        seen = self.history[self.history["iteration"] <= iteration]
        mask = pareto.pareto_mask(seen[self._names].to_numpy(dtype=float), self._maximize)
        return seen.loc[mask].sort_values(self._names[0], kind="stable")

    def hypervolume(self, ref_point: Sequence[float], iteration: int | None = None) -> float:
        """Hypervolume of the front (after ``iteration``; default: final) w.r.t. ``ref_point``.

        ``ref_point`` is given in the objectives' own units and order; it must
        be worse than every front point in every objective (see
        :func:`autobuild_lib.core.pareto.hypervolume`).
        """
        front = self.front if iteration is None else self.front_at(iteration)
        return pareto.hypervolume(front[self._names].to_numpy(dtype=float), ref_point, self._maximize)


def _check_objectives(objectives: Sequence[Objective]) -> list[Objective]:
    out = [tuple(o) for o in objectives]
    if not out:
        raise ValueError("objectives must list at least one (metric_name, maximize) pair")
    for o in out:
        if len(o) != 2 or not isinstance(o[0], str) or not isinstance(o[1], (bool, np.bool_)):
            raise ValueError(f"each objective must be (metric_name: str, maximize: bool), got {o!r}")
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"objective names must be distinct, got {names}")
    reserved = {"arch", "iteration"} & set(names)
    if reserved:
        raise ValueError(f"objective names {sorted(reserved)} are reserved history columns")
    return [(name, bool(maximize)) for name, maximize in out]


def evolutionary_search(
    space: SearchSpace,
    scheme: MutationScheme,
    evaluate: Callable[[Arch], Mapping[str, float]],
    objectives: Sequence[Objective],
    n_initial: int = 50,
    n_iterations: int = 4,
    per_iteration: int = 50,
    seed: int = 0,
    progress: bool = True,
) -> SearchResult:
    """Pareto-front evolutionary search (paper Sec. 4 / 7.5).

    A random initial pool of ``n_initial`` distinct architectures
    (``scheme.sample_initial``) is evaluated. Each of the ``n_iterations``
    iterations takes as population the current Pareto front (over
    ``objectives``) of every architecture evaluated so far, mutates uniformly
    drawn front members (``scheme.mutate``) into ``per_iteration`` new
    architectures never evaluated before, evaluates them and merges them in.
    The paper's budget is 250 = 50 + 4 x 50 (the defaults).

    ``evaluate(arch)`` returns a mapping of metric name to number that must
    contain every objective's metric. All randomness comes from
    ``np.random.default_rng(seed)``, so a run is deterministic when
    ``evaluate`` is. Every architecture is checked with ``space.validate`` and
    keyed by ``space.to_string``. If ``MAX_ATTEMPTS_PER_ARCH`` draws per
    requested architecture do not yield enough new ones (the space or the
    front's neighbourhood is exhausted), ``RuntimeError`` is raised.
    """
    objectives = _check_objectives(objectives)
    if n_initial <= 0:
        raise ValueError(f"n_initial must be positive, got {n_initial}")
    if n_iterations < 0:
        raise ValueError(f"n_iterations must be >= 0, got {n_iterations}")
    if per_iteration <= 0:
        raise ValueError(f"per_iteration must be positive, got {per_iteration}")
    names = [name for name, _ in objectives]
    maximize = [m for _, m in objectives]
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    archs: list[Arch] = []
    rows: list[dict[str, object]] = []

    def new_batch(draw: Callable[[], Arch], n: int, what: str) -> list[tuple[str, Arch]]:
        batch: list[tuple[str, Arch]] = []
        limit = n * MAX_ATTEMPTS_PER_ARCH
        attempts = 0
        while len(batch) < n:
            if attempts == limit:
                raise RuntimeError(
                    f"{scheme.name} on {space.name}, {what}: only {len(batch)} of {n} new architectures "
                    f"after {attempts} draws; the space (or the front's mutation neighbourhood) has run "
                    "out of architectures that were not evaluated yet"
                )
            attempts += 1
            arch = space.validate(draw())
            key = space.to_string(arch)
            if key not in seen:
                seen.add(key)
                batch.append((key, arch))
        return batch

    def run(batch: list[tuple[str, Arch]], iteration: int, bar: tqdm) -> None:
        for key, arch in batch:
            metrics = evaluate(arch)
            missing = [name for name in names if name not in metrics]
            if missing:
                raise ValueError(
                    f"evaluate() returned no {missing} for {key}; it returned {sorted(metrics)}"
                )
            row: dict[str, object] = {"arch": key, "iteration": iteration}
            for name, value in metrics.items():
                if name in row:
                    raise ValueError(f"evaluate() returned the reserved metric name {name!r}")
                row[name] = float(value)
            bad = [name for name in names if not np.isfinite(row[name])]
            if bad:
                raise ValueError(f"evaluate() returned non-finite {bad} for {key}: {row}")
            rows.append(row)
            archs.append(arch)
            bar.update()

    total = n_initial + n_iterations * per_iteration
    with tqdm(total=total, desc=f"{scheme.name} on {space.name}", disable=not progress) as bar:
        run(new_batch(lambda: scheme.sample_initial(rng), n_initial, "initial pool"), 0, bar)
        for iteration in range(1, n_iterations + 1):
            values = np.array([[row[name] for name in names] for row in rows], dtype=float)
            parents = [archs[i] for i in np.flatnonzero(pareto.pareto_mask(values, maximize))]
            batch = new_batch(
                lambda: scheme.mutate(parents[int(rng.integers(len(parents)))], rng),
                per_iteration,
                f"iteration {iteration}",
            )
            run(batch, iteration, bar)
    return SearchResult(pd.DataFrame(rows), objectives)


SCHEMES = ("stage-full", "layer-full", "layer-insight-gpu", "layer-insight-cpu",
           "layer-insight-npu", "autobuild")


def make_scheme(name: str, space: SearchSpace,
                candidates: Sequence[Sequence[Module]] | None = None) -> MutationScheme:
    """A mutation scheme by name (see :data:`SCHEMES`)."""
    if name == "stage-full":
        return StageFull(space)
    if name == "layer-full":
        return LayerFull(space)
    if name.startswith("layer-insight-"):
        return LayerInsight(name.rsplit("-", 1)[1])
    if name == "autobuild":
        if candidates is None:
            raise ValueError("the autobuild scheme needs per-unit candidate modules")
        return AutoBuildNAS(space, candidates)
    raise ValueError(f"unknown mutation scheme {name!r}; choose from {SCHEMES}")


# ----------------------------------------------------------------------------- SD: Exhaustive-Search baseline (Sec. 5.3)
def iter_space(space: SDSpace, max_archs: int | None = None, seed: int = 0) -> Iterator[SDArch]:
    """``space.enumerate_archs()``, or a fixed uniform subsample of ``max_archs`` of them
    (without replacement, in enumeration order, drawn with ``seed``)."""
    size = space.size()
    if max_archs is None or max_archs >= size:
        return space.enumerate_archs()
    if max_archs < 1:
        raise ValueError(f"max_archs must be >= 1, got {max_archs}")
    keep = np.zeros(size, dtype=bool)
    keep[np.random.default_rng(seed).choice(size, max_archs, replace=False)] = True
    return itertools.compress(space.enumerate_archs(), keep)


def exhaustive_search(space: SDSpace, table_fn: Callable[[Sequence[SDArch]], GraphTable],
                      ensemble_mse: Ensemble, n: int = 4, max_archs: int | None = None, seed: int = 0,
                      chunk: int = 36_864, progress: bool = False) -> list[tuple[SDArch, float]]:
    """ES baseline (Sec. 5.3): the top-``n`` architectures of the space by
    :func:`ensemble_predict`, as ``(arch, weighted sum)``, best first.

    ``ensemble_mse`` should come from ``train_ensemble(..., hop_srcc=False)``
    on the same folds; ``table_fn`` encodes a list of archs (e.g.
    ``SDTableBuilder(space)``).  All archs are scored unless ``max_archs``
    asks for a seeded subsample (:func:`iter_space`).  Ties keep
    enumeration order.  Deduplicated inference (:mod:`~autobuild_lib.core.dedup`)
    makes the full ``sd_unet`` space (884,736 archs, 20 predictors) take about
    a minute on 2 CPU cores (measured 62 s: tables 12 s, plans 45 s, 0.8 s per
    predictor).
    """
    if n < 1 or chunk < 1:
        raise ValueError(f"n and chunk must be >= 1, got n={n}, chunk={chunk}")
    if not np.any(ensemble_mse.pred_weights()):
        raise ValueError("every member's held-out SRCC is 0 or undefined: the ensemble cannot rank")
    archs_iter = iter_space(space, max_archs, seed)
    total = space.size() if max_archs is None else min(max_archs, space.size())
    best: list[tuple[SDArch, float]] = []
    bar = tqdm(total=total, desc="ES", disable=not progress, leave=False)
    while batch := list(itertools.islice(archs_iter, chunk)):
        score = ensemble_predict(ensemble_mse, table_fn(batch))
        top = np.argsort(-score, kind="stable")[:n]
        best = sorted(best + [(batch[i], float(score[i])) for i in top], key=lambda t: -t[1])[:n]
        bar.update(len(batch))
    bar.close()
    return best
