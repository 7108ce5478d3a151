"""Round-based latency measurement (autobuild_lib.benchmarks.pipeline.timing)."""
import time

import pandas as pd
import pytest

from autobuild_lib.benchmarks.pipeline.timing import measure_rounds, summarise


def test_rounds_rank_slow_and_fast_calls_and_report_agreement():
    builders = {f"sleep{ms}": (lambda ms=ms: (lambda: time.sleep(ms / 1000))) for ms in (1, 4, 8)}
    times = measure_rounds(builders, rounds=3, repeats=3, warmup=1, seed=0)
    assert len(times) == 9 and set(times["round"]) == {0, 1, 2}
    med, info = summarise(times)
    assert list(med.sort_values().index) == ["sleep1", "sleep4", "sleep8"]
    assert med["sleep8"] >= 8 and info["rounds"] == 3 and info["round_srcc_min"] == pytest.approx(1.0)


def test_builders_are_called_once_or_per_round():
    calls = []
    builders = {"a": lambda: calls.append("a") or (lambda: None)}
    measure_rounds(builders, rounds=3, repeats=1, warmup=0)
    assert calls == ["a"]
    measure_rounds(builders, rounds=3, repeats=1, warmup=0, keep_built=False)
    assert calls == ["a"] * 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="rounds"):
        measure_rounds({"a": lambda: (lambda: None)}, rounds=0)
    with pytest.raises(ValueError, match="no models"):
        measure_rounds({})
    med, info = summarise(pd.DataFrame({"key": ["a"], "round": [0], "ms": [1.0]}))
    assert med["a"] == 1.0 and info["rounds"] == 1
