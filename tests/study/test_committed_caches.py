"""The committed chapter 05 and 06 caches let a fresh clone run the full profile without training or evaluating.

``data/mini-ofa/predictors/`` holds the four full-profile MBv3 predictors and
``data/mini-ofa/evaluations.sqlite`` the accuracy of every architecture they construct.  Both are keyed
by content (labels, training config, model code; supernet weights), so an edit to the model code or the
labels makes this test fail: refill with ``python -m autobuild_lib chapter05 --space mbv3 --fill`` (and
``python -m autobuild_lib chapter06 --fill --n-jobs 2`` for chapter 06's searches) and commit both folders again.
"""
from __future__ import annotations

import pytest

from autobuild_lib.benchmarks.miniofa import evaluator
from autobuild_lib.core import build, train_many
from autobuild_lib.study import chapter06
from autobuild_lib.study import construction as C
from autobuild_lib.study import data as study

pytestmark = pytest.mark.skipif(not (study.mini_ofa_dir() / "evaluations.sqlite").is_file(),
                                reason="no committed evaluation cache")


def test_chapter05_full_profile_needs_no_training_and_no_evaluation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("chapter 05's full-profile predictor is not in data/mini-ofa/predictors: "
                             "refill with `python -m autobuild_lib chapter05 --space mbv3 --fill` and commit it")

    monkeypatch.setattr(build, "train_predictor", refuse)
    monkeypatch.setattr(train_many, "train_many", refuse)  # build_equations trains its misses through it
    keys = C.chapter05_archs("mbv3")
    assert len(keys) > 243  # four equations' clusters of 3^5, overlaps removed
    ev = study.evaluator("mini-ofa", latency="skip")
    todo = ev.uncached("mbv3", keys)
    assert todo == [], f"{len(todo)} of chapter 05's {len(keys)} architectures are not in evaluations.sqlite"


def test_chapter06_full_profile_searches_run_from_the_cache(tmp_path, monkeypatch):
    """All 12 of chapter 06's full-profile searches (4 schemes x 3 seeds) find every accuracy in the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("chapter 06's AutoBuild predictors are not in data/mini-ofa/predictors: refill "
                             "with `python -m autobuild_lib chapter06 --fill --n-jobs 2` and commit both folders")

    def evaluate(weights, arch):
        raise AssertionError(f"chapter 06's searches reach {arch}, which evaluations.sqlite lacks: refill with "
                             "`python -m autobuild_lib chapter06 --fill --n-jobs 2` and commit the cache")

    monkeypatch.setattr(build, "train_predictor", refuse)
    monkeypatch.setattr(train_many, "train_many", refuse)
    monkeypatch.setattr(evaluator, "acc_unit", evaluate)  # fail at the first miss instead of evaluating
    copy = tmp_path / "evaluations.sqlite"  # a copy, so the test cannot write into data/
    copy.write_bytes((study.mini_ofa_dir() / "evaluations.sqlite").read_bytes())
    p = chapter06.notebook_params(eval_cache=str(copy))
    runs = chapter06.fill_cache(p, n_jobs=1, progress=False)
    assert len(runs) == len(p.schemes) * len(p.seeds) == 12
    computed = {(r["scheme"], r["seed"]): r["computed"] for r in runs if r.get("computed")}
    assert computed == {}, f"searches that had to evaluate new architectures: {computed}; refill the cache"
