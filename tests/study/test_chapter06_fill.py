"""``chapter06 --fill`` runs the notebook's own searches: its parameters come from the parameters cell."""
from __future__ import annotations

import pytest

from autobuild_lib.study import chapter06


def test_notebook_params_are_the_parameters_cell():
    p = chapter06.notebook_params()
    assert (p.profile, p.dataset, p.space, p.k, p.budget) == ("full", "mini-ofa", "mbv3", 25, 250)
    assert p.accuracy == "evaluator" and list(p.seeds) == [0, 1, 2] and len(p.schemes) == 4
    assert chapter06.notebook_params(space="pn").space == "pn"


def test_notebook_params_reject_unknown_names():
    with pytest.raises(ValueError, match="no parameter"):
        chapter06.notebook_params(budget=3)


def test_fill_needs_the_evaluator():
    p = chapter06.notebook_params(profile="smoke")
    with pytest.raises(ValueError, match="evaluator"):
        chapter06.fill_cache(p)


def test_a_cache_fill_is_logged_in_the_benchmark_card(tmp_path, monkeypatch):
    import json

    from fixtures_miniofa import write_fixture_mini_ofa

    from autobuild_lib.study import construction

    root = write_fixture_mini_ofa(tmp_path / "mini-ofa", n=12)
    monkeypatch.setenv("AUTOBUILD_MINI_OFA_DIR", str(root))
    construction.log_fill("chapter06_fill", {"space": "mbv3", "computed": 3}, "2026-12-07T00:00:00+00:00", 90.0)
    last = json.loads((root / "runs.jsonl").read_text().splitlines()[-1])
    assert (last["stage"], last["space"], last["wall_s"], last["computed"]) == ("chapter06_fill", "mbv3", 90.0, 3)
    assert "| chapter06_fill | 1.5 min | not run |" in (root / "DATA_CARD.md").read_text()
