"""Tests of autobuild_lib.core.pareto on hand-made point sets with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autobuild_lib.core.pareto import beyond_front, hypervolume, hypervolume_gain, pareto_front, pareto_mask

MINMIN = [False, False]


def _brute_mask(points: np.ndarray, maximize: list[bool]) -> np.ndarray:
    f = points * np.where(maximize, -1.0, 1.0)
    keep = []
    for i, p in enumerate(f):
        dominated = any(np.all(q <= p) and np.any(q < p) for q in f)
        duplicate_before = any(np.array_equal(q, p) for q in f[:i])
        keep.append(not dominated and not duplicate_before)
    return np.array(keep)


def test_pareto_mask_minimise_with_duplicate():
    pts = [[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5]]
    assert pareto_mask(pts, MINMIN).tolist() == [True, True, False, True, False, False]


def test_pareto_mask_directions():
    # (acc, latency): maximise acc, minimise latency.
    pts = [[0.70, 10.0], [0.80, 20.0], [0.75, 25.0], [0.80, 30.0], [0.60, 9.0]]
    assert pareto_mask(pts, [True, False]).tolist() == [True, True, False, False, True]
    # Flipping both directions flips which extreme wins.
    assert pareto_mask(pts, [False, True]).tolist() == [True, False, True, True, True]


def test_pareto_mask_same_x_keeps_best_y():
    pts = [[1, 3], [1, 2], [1, 2]]
    assert pareto_mask(pts, MINMIN).tolist() == [False, True, False]


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_pareto_mask_matches_brute_force(dims):
    rng = np.random.default_rng(dims)
    pts = rng.integers(0, 5, size=(60, dims)).astype(float)  # many ties
    maximize = [bool(b) for b in rng.integers(0, 2, size=dims)]
    assert pareto_mask(pts, maximize).tolist() == _brute_mask(pts, maximize).tolist()


def test_pareto_mask_empty():
    assert pareto_mask(np.zeros((0, 2)), MINMIN).shape == (0,)


def test_pareto_front_sorted_and_indexed():
    df = pd.DataFrame(
        {"acc": [0.80, 0.70, 0.75, 0.60], "lat": [20.0, 10.0, 25.0, 9.0], "name": list("abcd")},
        index=[10, 11, 12, 13],
    )
    front = pareto_front(df, "acc", "lat", maximize_x=True, maximize_y=False)
    assert front["name"].tolist() == ["d", "b", "a"]
    assert front.index.tolist() == [13, 11, 10]
    with pytest.raises(ValueError, match="not in the DataFrame"):
        pareto_front(df, "acc", "latency", True, False)


def test_hypervolume_minimise_staircase():
    # Staircase under ref (4, 4): x in [1,2] -> 1, [2,3] -> 2, [3,4] -> 3.
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4], MINMIN) == pytest.approx(6.0)
    # Dominated points and duplicates add nothing.
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [2, 2]], [4, 4], MINMIN) == pytest.approx(6.0)


def test_hypervolume_maximise_and_mixed():
    assert hypervolume([[3, 1], [2, 2], [1, 3]], [0, 0], [True, True]) == pytest.approx(6.0)
    # (acc max, lat min): 0.2*20 + 0.3*10 - overlap 0.2*10 = 5.
    assert hypervolume([[0.7, 10], [0.8, 20]], [0.5, 30], [True, False]) == pytest.approx(5.0)
    # A single point is a rectangle; a point on the reference boundary adds nothing.
    assert hypervolume([[2, 1]], [5, 3], MINMIN) == pytest.approx(6.0)
    assert hypervolume([[2, 1], [1, 3]], [5, 3], MINMIN) == pytest.approx(6.0)


def test_hypervolume_empty_is_zero():
    assert hypervolume(np.zeros((0, 2)), [1, 1], MINMIN) == 0.0


def test_hypervolume_gain():
    ref = [[1, 3], [3, 1]]  # HV 5 under (4, 4)
    assert hypervolume(ref, [4, 4], MINMIN) == pytest.approx(5.0)
    assert hypervolume_gain([[2, 2]], ref, [4, 4], MINMIN) == pytest.approx(1.0)
    assert hypervolume_gain([[3, 3], [1, 3]], ref, [4, 4], MINMIN) == 0.0
    assert hypervolume_gain(np.zeros((0, 2)), ref, [4, 4], MINMIN) == 0.0


def test_beyond_front():
    reference = [[1, 3], [3, 1]]
    cands = [[2, 2], [1, 3], [0.5, 5], [3, 3], [1, 2], [3, 1.5]]
    assert beyond_front(cands, reference, MINMIN).tolist() == [True, False, True, False, True, False]
    # Maximised objectives: same geometry with both axes negated.
    neg = beyond_front(-np.array(cands), -np.array(reference), [True, True])
    assert neg.tolist() == [True, False, True, False, True, False]
    assert beyond_front(cands, np.zeros((0, 2)), MINMIN).all()


def test_errors():
    with pytest.raises(ValueError, match="maximize has 1 entries"):
        pareto_mask([[1, 2]], [True])
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask([[1, np.nan]], MINMIN)
    with pytest.raises(ValueError, match="NaN"):
        hypervolume([[1, 2]], [np.nan, 3], MINMIN)
    with pytest.raises(ValueError, match="shape"):
        pareto_mask(np.zeros((2, 2, 2)), MINMIN)
    with pytest.raises(ValueError, match="objectives"):
        beyond_front([[1, 2, 3]], [[1, 2]], MINMIN)
    with pytest.raises(ValueError, match="objectives"):
        hypervolume([[1, 2]], [1, 2, 3], MINMIN)
    with pytest.raises(ValueError, match="not dominated by every point"):
        hypervolume([[1, 2], [5, 1]], [4, 4], MINMIN)
    with pytest.raises(ValueError, match="not dominated by every point"):
        hypervolume([[0.7, 10]], [0.8, 30], [True, False])
    with pytest.raises(ValueError, match="not dominated by every point"):
        hypervolume_gain([[5, 5]], [[1, 1]], [4, 4], MINMIN)
    with pytest.raises(ValueError, match="one bool per objective"):
        pareto_mask([[1, 2]], ["max", "min"])
