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
