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
