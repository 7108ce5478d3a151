"""Label equations: the paper's examples evaluate like hand-written numpy; unsafe text is refused."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autobuild_lib.core.equations import LabelEquation, UnknownMetricError

RNG = np.random.default_rng(0)
N = 25
TABLE = {
    "acc": RNG.uniform(0.70, 0.80, N),
    "lat": RNG.uniform(5.0, 40.0, N),
    "latency_cpu": RNG.uniform(20.0, 90.0, N),
    "latency_gpu": RNG.uniform(5.0, 40.0, N),
    "PQ": RNG.uniform(30.0, 40.0, N),
    "flops": RNG.uniform(150.0, 200.0, N),
}
T = TABLE

EXAMPLES = [
    ("100**acc", 100 ** T["acc"]),
    ("acc/latency_cpu", T["acc"] / T["latency_cpu"]),
    ("acc - lat", T["acc"] - T["lat"]),
    ("acc*100/latency_gpu", T["acc"] * 100 / T["latency_gpu"]),
    ("100**acc/(np.log10(lat+1)+1)", 100 ** T["acc"] / (np.log10(T["lat"] + 1) + 1)),
    ("100**acc/(numpy.log10(lat+1)+1)", 100 ** T["acc"] / (np.log10(T["lat"] + 1) + 1)),
    ("np.power(100, acc)/(np.log10(latency_gpu+1)+1)",
     np.power(100, T["acc"]) / (np.log10(T["latency_gpu"] + 1) + 1)),
    ("sqrt(PQ) - sqrt(flops)", np.sqrt(T["PQ"]) - np.sqrt(T["flops"])),
    ("sqrt(PQ) - 2*sqrt(flops)", np.sqrt(T["PQ"]) - 2 * np.sqrt(T["flops"])),
    ("PQ/log10(flops)", T["PQ"] / np.log10(T["flops"])),
    ("-acc % 0.3 + abs(lat - 20)", -T["acc"] % 0.3 + np.abs(T["lat"] - 20)),
    ("maximum(acc, 0.75) * exp(-lat/100)", np.maximum(T["acc"], 0.75) * np.exp(-T["lat"] / 100)),
    ("(acc > 0.75) * 100 / lat", (T["acc"] > 0.75) * 100 / T["lat"]),
    ("where(0.72 <= acc < 0.78, acc, 0)",
     np.where((0.72 <= T["acc"]) & (T["acc"] < 0.78), T["acc"], 0)),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_match_numpy(text: str, expected: np.ndarray) -> None:
    eq = LabelEquation.parse(text)
    np.testing.assert_allclose(eq(TABLE), expected, rtol=1e-12)
    np.testing.assert_allclose(eq(pd.DataFrame(TABLE)), expected, rtol=1e-12)


def test_metrics_text_and_name() -> None:
    eq = LabelEquation.parse(" 100**acc/(np.log10(lat+1)+1) ", name="acc-lat")
    assert eq.metrics == ("acc", "lat")
    assert eq.text == "100**acc/(np.log10(lat+1)+1)"
    assert eq.name == "acc-lat"
    assert LabelEquation.parse("PQ/log10(flops)").name == "PQ/log10(flops)"
    assert eq == LabelEquation.parse("100**acc/(np.log10(lat+1)+1)", name="acc-lat")


def test_scalar_mapping() -> None:
    assert float(LabelEquation.parse("acc*100/latency_gpu")({"acc": 0.75, "latency_gpu": 10.0})) == 7.5


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("__import__('os').system('x')", "not allowed"),
        ("acc.__class__", "attribute access"),
        ("[x for x in acc]", "comprehension"),
        ("lambda: 1", "lambda"),
        ("open('f')", "function 'open'"),
        ("'str'", "constant 'str'"),
        ("acc[0]", "subscript"),
        ("np.load(acc)", "function 'load'"),
        ("log10(x=acc)", "keyword"),
        ("__builtins__", "dunder"),
        ("acc and lat", "and/or"),
        ("acc // lat", "FloorDiv"),
        ("np", "used as a value"),
        ("acc.real", "attribute access"),
    ],
)
def test_refused(text: str, what: str) -> None:
    with pytest.raises(ValueError, match="not allowed") as info:
        LabelEquation.parse(text)
    assert what in str(info.value)
    assert "allowed: numbers, metric names" in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "acc +", "1 2", "3.0"])
def test_empty_or_garbage(text: str) -> None:
    with pytest.raises(ValueError) as info:
        LabelEquation.parse(text)
    assert repr(text.strip() if text.strip() else text) in str(info.value)


def test_wrong_arity() -> None:
    with pytest.raises(ValueError, match="log10 takes 1 argument"):
        LabelEquation.parse("log10(acc, lat)")


def test_unknown_metric_lists_available() -> None:
    eq = LabelEquation.parse("acc/latency_npu")
    with pytest.raises(UnknownMetricError) as info:
        eq(pd.DataFrame({"acc": [0.7], "latency_gpu": [10.0]}))
    msg = str(info.value)
    assert "latency_npu" in msg and "available: ['acc', 'latency_gpu']" in msg
    assert isinstance(info.value, ValueError)
