"""Chapter 07's account of the labelling stages while its labels are not all there."""
import pandas as pd
import pytest

from autobuild_lib.benchmarks.panoptic import generate as pgen
from autobuild_lib.study import chapter07


@pytest.mark.parametrize("done, expected", [
    (840, "the pseudo stage is under way: 840 of 1,300 architectures labelled"),
    (1300, "the 1,300 pseudo labels are done; the `full` and `constructions` stages are under way"),
])
def test_under_way_names_the_running_stage(monkeypatch, tmp_path, done, expected):
    monkeypatch.setattr(pgen, "pseudo_progress", lambda root: done)
    assert chapter07.under_way(tmp_path) == expected


def test_full_reliability_reports_constructed_architectures_apart():
    full = pd.DataFrame({"pq_a": [1.0, 2.0, 3.0, 4.0], "pq_b": [1.1, 2.1, 2.9, 4.2]})
    con = pd.DataFrame({"arch": ["x", "x", "y", "z", "w"], "pq_a": [1.0, 1.0, 2.0, 3.0, 4.0],
                        "pq_b": [4.0, 4.0, 3.0, 2.0, 1.0]})
    rel = chapter07.full_reliability(full, con)
    assert rel["random"] == pytest.approx(1.0) and rel["n_random"] == 4
    assert rel["constructed"] == pytest.approx(-1.0) and rel["n_constructed"] == 4   # duplicates counted once


def test_where_constructed_sit_counts_distinct_archs_below_the_cheapest_random_one():
    full = pd.DataFrame({"flops": [5.0, 6.0, 7.0], "pq_full": [50.0, 52.0, 53.0]})
    con = pd.DataFrame({"arch": ["a", "a", "b", "c"], "flops": [4.0, 4.0, 5.5, 4.5], "pq_full": [51.0, 51.0, 53.0, 52.5]})
    text = chapter07.where_constructed_sit(full, con)
    assert text.startswith("2 of the 3 distinct constructed architectures have fewer FLOPs")
    assert "(5.00 MFLOPs)" in text and "2 of 3 have a PQ above the random ones' median (52.00)" in text
    # front: (5, 50), (6, 52), (7, 53); "c" (4.5, 52.5) dominates the first two, "b" (5.5, 53) all but the first
    assert "3 of the 3 points of the random front are dominated" in text


def test_what_the_labels_reward_says_when_the_equations_chose_the_same_modules():
    rows = pd.DataFrame({"SRCC(label, PQ)": [-0.2, -0.1], "SRCC(label, -FLOPs)": [0.9, 0.8]})
    pseudo = pd.DataFrame({"pq": [50.0, 51.0, 52.0], "flops": [4.0, 6.0, 8.0]})
    same = {"e1": {"top": [["m1", "m2"]]}, "e2": {"top": [["m1", "m2"]]}}
    assert "the same top-K modules in every stage" in chapter07.what_the_labels_reward(rows, pseudo, same, ["e1", "e2"])
    other = {"e1": {"top": [["m1", "m2"]]}, "e2": {"top": [["m1", "m3"]]}}
    text = chapter07.what_the_labels_reward(rows, pseudo, other, ["e1", "e2"])
    assert text.startswith("The equations chose different") and "PQ varies by 2.0%" in text and "FLOPs by 33.3%" in text
