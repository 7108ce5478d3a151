"""Tests of autobuild_lib.core.search: mutation schemes and the evolutionary loop."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from autobuild_lib.core.pareto import pareto_front
from autobuild_lib.core.search import (
    AutoBuildNAS,
    LayerFull,
    LayerInsight,
    MutationScheme,
    StageFull,
    evolutionary_search,
    union_candidates,
)
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace, mbv3, mbv3_insight, pn

OBJECTIVES = [("acc", True), ("latency_cpu", False)]
N_MUTATIONS = 300


def _candidates(space: OFASpace, k: int, seed: int = 0) -> list[list[tuple]]:
    rng = np.random.default_rng(seed)
    return [list(dict.fromkeys(space.sample_module(u, rng) for _ in range(k))) for u in range(space.n_units)]


def _schemes() -> dict[str, tuple[OFASpace, MutationScheme]]:
    return {
        "stage-mbv3": (mbv3(), StageFull(mbv3())),
        "stage-pn": (pn(), StageFull(pn())),
        "layer-mbv3": (mbv3(), LayerFull(mbv3())),
        "layer-pn": (pn(), LayerFull(pn())),
        "insight-gpu": (mbv3(), LayerInsight("gpu")),
        "autobuild-mbv3": (mbv3(), AutoBuildNAS(mbv3(), _candidates(mbv3(), 25))),
        "autobuild-pn": (pn(), AutoBuildNAS(pn(), _candidates(pn(), 25))),
    }


SCHEMES = _schemes()


def _walk(scheme: MutationScheme, n: int, seed: int = 0):
    """(parent, child) pairs of a random walk started from the initial sampler."""
    rng = np.random.default_rng(seed)
    arch = scheme.sample_initial(rng)
    for _ in range(n):
        child = scheme.mutate(arch, rng)
        yield arch, child
        arch = child


def _one_layer_change(a: tuple, b: tuple) -> bool:
    """True when layer sequence b is a with exactly one insertion, deletion or substitution."""
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    if len(long_) - len(short) != 1:
        return False
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@pytest.mark.parametrize("key", sorted(SCHEMES))
def test_mutants_valid_and_different(key):
    space, scheme = SCHEMES[key]
    res_changes = 0
    for parent, child in _walk(scheme, N_MUTATIONS):
        space.validate(child)
        scheme.space.validate(child)
        assert space.to_string(child) != space.to_string(parent)
        res_changes += child.resolution != parent.resolution
    # Resolution rule: probability 1 / (n_units + 1).
    expected = N_MUTATIONS / (space.n_units + 1)
    assert 0.5 * expected < res_changes < 1.6 * expected


@pytest.mark.parametrize("key", ["stage-mbv3", "stage-pn", "autobuild-mbv3", "autobuild-pn"])
def test_stagewise_changes_one_unit(key):
    space, scheme = SCHEMES[key]
    for parent, child in _walk(scheme, N_MUTATIONS):
        diff = [u for u, (a, b) in enumerate(zip(space.split(parent), space.split(child))) if a != b]
        if child.resolution != parent.resolution:
            assert diff == []
        else:
            assert len(diff) == 1


@pytest.mark.parametrize("key", ["layer-mbv3", "layer-pn", "insight-gpu"])
def test_layer_full_changes_exactly_one_layer(key):
    space, scheme = SCHEMES[key]
    kinds = set()
    for parent, child in _walk(scheme, N_MUTATIONS):
        diff = [s for s, (a, b) in enumerate(zip(parent.stages, child.stages)) if a != b]
        if child.resolution != parent.resolution:
            assert diff == []
            continue
        assert len(diff) == 1
        a, b = parent.stages[diff[0]], child.stages[diff[0]]
        assert _one_layer_change(a, b)
        kinds.add(int(np.sign(len(b) - len(a))))
        if space.name == "pn":
            assert len(child.stages[-1]) == 1
    assert kinds == {-1, 0, 1}  # add, remove and edit all occur


def test_layer_full_pn_last_stage_is_edited():
    space = pn()
    scheme = LayerFull(space)
    edited = 0
    for parent, child in _walk(scheme, N_MUTATIONS, seed=1):
        edited += parent.stages[-1] != child.stages[-1]
    assert edited > 0


@pytest.mark.parametrize("device", ["gpu", "cpu", "npu"])
def test_layer_insight_stays_in_restricted_space(device):
    restricted = mbv3_insight(device)
    scheme = LayerInsight(device)
    rng = np.random.default_rng(3)
    for _ in range(50):
        restricted.validate(scheme.sample_initial(rng))
    for _, child in _walk(scheme, N_MUTATIONS, seed=3):
        restricted.validate(child)
        mbv3().validate(child)
    with pytest.raises(ValueError, match="mbv3-insight"):
        scheme.mutate(OFAArch(224, (((7, 6),) * 4,) * 5), rng)


@pytest.mark.parametrize("key", ["autobuild-mbv3", "autobuild-pn"])
def test_autobuild_uses_only_candidates(key):
    space, scheme = SCHEMES[key]
    rng = np.random.default_rng(5)
    for _ in range(50):
        arch = scheme.sample_initial(rng)
        assert all(m in c for m, c in zip(space.split(arch), scheme.candidates))
    for _, child in _walk(scheme, N_MUTATIONS, seed=5):
        assert all(m in c for m, c in zip(space.split(child), scheme.candidates))


def test_union_candidates_dedup_order():
    a, b, c, d = [((3, 3), (3, 4))], [((5, 3), (3, 4))], [((7, 6), (7, 6))], [((3, 6), (5, 6))]
    eq1 = [a + b, c]
    eq2 = [b + d, c + a]
    assert union_candidates([eq1, eq2]) == [a + b + d, c + a]
    with pytest.raises(ValueError, match="units"):
        union_candidates([eq1, [a]])
    with pytest.raises(ValueError, match="at least one"):
        union_candidates([])


def test_autobuild_bad_candidates():
    space = mbv3()
    good = _candidates(space, 3)
    with pytest.raises(ValueError, match="candidate lists"):
        AutoBuildNAS(space, good[:-1])
    with pytest.raises(ValueError, match="no candidate"):
        AutoBuildNAS(space, good[:-1] + [[]])
    with pytest.raises(ValueError, match="candidate 0 of unit 2"):
        AutoBuildNAS(space, good[:2] + [[((3, 3),)]] + good[3:])
    # Duplicates are dropped, order kept.
    dup = AutoBuildNAS(space, [g + g for g in good])
    assert dup.candidates == good


def test_single_architecture_space_rejected():
    tiny = OFASpace("tiny", "mbv3", [(2,)] * 5, [(3, 3)], resolutions=(224,))
    for make in (lambda: StageFull(tiny), lambda: LayerFull(tiny)):
        with pytest.raises(ValueError, match="nothing to mutate"):
            make()
    with pytest.raises(ValueError, match="OFASpace"):
        LayerFull(object())


# --------------------------------------------------------------------- search
def _evaluate(arch: OFAArch) -> dict[str, float]:
    """Cheap synthetic metrics: deeper is more accurate, k*e is latency."""
    text = mbv3().to_string(arch) if len(arch.stages) == 5 else pn().to_string(arch)
    noise = zlib.crc32(text.encode()) / 2**32
    return {
        "acc": float(arch.n_layers) + noise,
        "latency_cpu": float(sum(k * e for st in arch.stages for k, e in st)) + arch.resolution / 100,
        "flops": float(arch.n_layers * arch.resolution),
    }


REF = [0.0, 1000.0]


@pytest.mark.parametrize("key", ["stage-mbv3", "layer-pn", "insight-gpu", "autobuild-mbv3"])
def test_search_budget_determinism_and_hypervolume(key):
    space, scheme = SCHEMES[key]
    res = evolutionary_search(space, scheme, _evaluate, OBJECTIVES, seed=7, progress=False)
    h = res.history
    assert len(h) == 250 and h["arch"].is_unique
    assert h["iteration"].value_counts().sort_index().tolist() == [50] * 5
    assert list(h.columns) == ["arch", "iteration", "acc", "latency_cpu", "flops"]
    for text in h["arch"]:
        scheme.space.validate(space.from_string(text))
    hv = [res.hypervolume(REF, iteration=i) for i in range(5)]
    assert all(b >= a for a, b in zip(hv, hv[1:]))
    assert hv[-1] == pytest.approx(res.hypervolume(REF)) and hv[-1] > hv[0]
    # The stored front is the Pareto front of the whole history.
    expected = pareto_front(h, "acc", "latency_cpu", True, False)
    assert res.front["arch"].tolist() == expected["arch"].tolist()
    again = evolutionary_search(space, scheme, _evaluate, OBJECTIVES, seed=7, progress=False)
    pd.testing.assert_frame_equal(res.history, again.history)
    other = evolutionary_search(space, scheme, _evaluate, OBJECTIVES, seed=8, progress=False)
    assert set(other.history["arch"]) != set(h["arch"])


def test_search_children_come_from_front():
    space, scheme = SCHEMES["autobuild-mbv3"]
    res = evolutionary_search(space, scheme, _evaluate, OBJECTIVES, n_initial=10, n_iterations=1,
                              per_iteration=20, seed=0, progress=False)
    front = [space.split(space.from_string(t)) for t in res.front_at(0)["arch"]]
    for text in res.history.loc[res.history["iteration"] == 1, "arch"]:
        child = space.split(space.from_string(text))
        # every child differs from some front member in at most one unit
        assert min(sum(a != b for a, b in zip(child, f)) for f in front) <= 1


def test_search_bad_arguments():
    space, scheme = SCHEMES["stage-mbv3"]
    with pytest.raises(ValueError, match="n_initial"):
        evolutionary_search(space, scheme, _evaluate, OBJECTIVES, n_initial=0, progress=False)
    with pytest.raises(ValueError, match="per_iteration"):
        evolutionary_search(space, scheme, _evaluate, OBJECTIVES, per_iteration=0, progress=False)
    with pytest.raises(ValueError, match="n_iterations"):
        evolutionary_search(space, scheme, _evaluate, OBJECTIVES, n_iterations=-1, progress=False)
    with pytest.raises(ValueError, match="latency_gpu"):
        evolutionary_search(space, scheme, _evaluate, [("acc", True), ("latency_gpu", False)], progress=False)
    with pytest.raises(ValueError, match="objectives"):
        evolutionary_search(space, scheme, _evaluate, [], progress=False)
    with pytest.raises(ValueError, match="distinct"):
        evolutionary_search(space, scheme, _evaluate, [("acc", True), ("acc", False)], progress=False)
    with pytest.raises(ValueError, match="maximize"):
        evolutionary_search(space, scheme, _evaluate, [("acc", "max")], progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        evolutionary_search(space, scheme, lambda a: {"acc": float("nan"), "latency_cpu": 1.0},
                            OBJECTIVES, progress=False)
    with pytest.raises(ValueError, match="expected 5 stages"):
        evolutionary_search(space, StageFull(pn()), _evaluate, OBJECTIVES, progress=False)


def test_search_exhausted_space_raises():
    tiny = OFASpace("tiny", "mbv3", [(2,)] * 5, [(3, 3)], resolutions=(192, 224))
    scheme = StageFull(tiny)
    res = evolutionary_search(tiny, scheme, _evaluate, OBJECTIVES, n_initial=2, n_iterations=0, progress=False)
    assert len(res.history) == 2
    with pytest.raises(RuntimeError, match="run out"):
        evolutionary_search(tiny, scheme, _evaluate, OBJECTIVES, n_initial=3, progress=False)
    with pytest.raises(RuntimeError, match="iteration 1"):
        evolutionary_search(tiny, scheme, _evaluate, OBJECTIVES, n_initial=2, n_iterations=1,
                            per_iteration=1, progress=False)
