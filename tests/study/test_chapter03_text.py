"""Chapter 03's hop-0 explanation follows its own 200-epoch check, not a fixed excuse."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from autobuild_lib.study import chapter03

P = SimpleNamespace(SETTINGS={"epochs": 60})


def _schedule(short: float, long: float) -> pd.DataFrame:
    return pd.DataFrame({"hop 0": [short, long]}, index=["60 epochs (this chapter)", "200 epochs (the paper's)"])


def test_schedule_ruled_out_when_200_epochs_stay_low():
    text = chapter03._hop0_reason(P, _schedule(-0.620, -0.618))
    assert "-0.618" in text and "not what separates them" in text and "message passing" in text


def test_schedule_named_when_200_epochs_reach_the_paper():
    assert "explains the gap" in chapter03._hop0_reason(P, _schedule(0.40, 0.77))


def test_without_the_check_the_reason_says_it_was_not_run():
    assert "paper_check" in chapter03._hop0_reason(P, None)
