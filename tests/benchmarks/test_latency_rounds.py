"""Shuffled, resumable latency rounds (issue 20, item 3)."""
import json

import numpy as np
import pytest

from autobuild_lib.benchmarks.miniofa import generate as G
from autobuild_lib.benchmarks.miniofa.latency_rounds import (
    choose_protocol,
    cpu_signature,
    round_order,
    rounds_store,
    run_rounds,
    summarise_rounds,
)


def _rows(archs, rounds, passes=3, model="cpu-x", seed=0):
    rng = np.random.default_rng(seed)
    base = {a: 10.0 * (i + 1) for i, a in enumerate(archs)}
    return [{"unit": f"{r}/{a}", "arch": a, "round": r, "warmup": 1, "build_s": 0.01, "load1": 0.2,
             "times_ms": list(base[a] * (1 + 0.01 * rng.standard_normal(passes))), "cpu_model": model, "cpu_flags": "f"}
            for r in range(rounds) for a in archs]


def test_round_order_is_a_seeded_permutation():
    archs = [f"a{i}" for i in range(30)]
    assert sorted(round_order(archs, 0)) == sorted(archs)
    assert round_order(archs, 1) == round_order(archs, 1)
    assert round_order(archs, 0) != round_order(archs, 1)
    assert set(cpu_signature()) == {"cpu_model", "cpu_flags"}


def test_summary_halves_are_even_and_odd_rounds():
    archs = ["x", "y", "z"]
    rows = _rows(archs, 4)
    rows[0]["times_ms"] = [1000.0] * 3  # round 0 of x: an outlier only the even half and the median see
    lab, info = summarise_rounds(rows, archs, 4)
    x = lab.set_index("arch").loc["x"]
    assert x["latency_cpu_a"] > 100 and x["latency_cpu_b"] < 11 and x["latency_cpu"] < 11
    assert info["rounds"] == 4 and info["passes"] == 3 and info["srcc_halves"] == pytest.approx(-0.5)
    assert list(lab["arch"]) == archs
    assert summarise_rounds(_rows(archs, 4), archs, 4)[1]["srcc_halves"] == pytest.approx(1.0)


def test_summary_refuses_two_cpu_models_missing_units_and_mixed_passes():
    archs = ["x", "y", "z"]
    rows = _rows(archs, 2)
    rows[-1]["cpu_model"] = "cpu-y"
    with pytest.raises(ValueError, match="re-measure"):
        summarise_rounds(rows, archs, 2)
    with pytest.raises(ValueError, match="not measured yet"):
        summarise_rounds(_rows(archs, 2)[:-1], archs, 2)
    mixed = _rows(archs, 2)
    mixed[0]["times_ms"] = mixed[0]["times_ms"][:2]
    with pytest.raises(ValueError, match="pass counts"):
        summarise_rounds(mixed, archs, 2)


def test_choose_protocol_respects_the_budget():
    archs = [f"a{i}" for i in range(20)]
    rows = _rows(archs, 8, passes=21)
    wide = choose_protocol(rows, 3000, budget_s=1e9)
    tight = choose_protocol(rows, 3000, budget_s=3000 * 2 * (0.01 + 8 * 0.2))
    assert tight["predicted_s"] <= tight["budget_s"] and tight["rounds"] == 2 and tight["passes"] == 5
    assert wide["srcc_halves"] >= tight["srcc_halves"] - 1e-3
    with pytest.raises(ValueError, match="raise the budget"):
        choose_protocol(rows, 3000, budget_s=1.0)


def test_rounds_resume_and_feed_the_merge(tmp_path, monkeypatch):
    keys = [G.space_of("pn").to_string(a) for a in G.benchmark_archs("pn", 3)]
    store = rounds_store(tmp_path, "pn")
    rep = run_rounds("pn", keys, store, rounds=2, passes=2, warmup=0, chunk=2, progress=False)
    assert rep["units_now"] == 6 and len(store.rows()) == 6
    assert run_rounds("pn", keys, store, rounds=2, passes=2, warmup=0, progress=False)["units_now"] == 0
    row = next(iter(store.rows().values()))
    assert len(row["times_ms"]) == 2 and row["cpu_model"] == cpu_signature()["cpu_model"]
    assert G.final_latency("pn", keys, tmp_path)[0] is None  # no protocol chosen yet: single-pass source
    (tmp_path / "latency-protocol-pn.json").write_text(json.dumps({"rounds": 2, "passes": 2, "warmup": 0}))
    lat, source = G.final_latency("pn", keys, tmp_path)
    assert list(lat["arch"]) == keys and (lat["latency_cpu"] > 0).all() and "2 shuffled rounds" in source
    (tmp_path / "latency-protocol-pn.json").write_text(json.dumps({"rounds": 4, "passes": 2, "warmup": 0}))
    assert G.final_latency("pn", keys, tmp_path)[0] is None  # rounds 2-3 missing


def test_latency_rounds_stage_needs_the_pilot(tmp_path):
    with pytest.raises(FileNotFoundError, match="latency_pilot"):
        G.generate("pn", stages=["latency_rounds"], n=3, root=tmp_path, progress=False)


def _fake_unit(space_name, warmup, passes, key):
    rnd, arch = key.split("/", 1)
    ms = 5.0 + (sum(map(ord, arch)) % 97)
    return {"unit": key, "arch": arch, "round": int(rnd), "warmup": warmup, "times_ms": [ms] * passes,
            "build_s": 0.0, "load1": 0.1, "cpu_model": "cpu-x", "cpu_flags": "f"}


class _Model:
    def predict(self, archs):
        return np.array([1.1 * (5.0 + (sum(map(ord, a)) % 97)) for a in archs])


def test_outside_architectures_are_measured_with_the_protocol_and_scored(tmp_path, monkeypatch):
    from autobuild_lib.benchmarks.miniofa import latency_outside as LO
    from autobuild_lib.benchmarks.miniofa import latency_rounds as LR

    monkeypatch.setattr(LR, "round_unit", _fake_unit)
    monkeypatch.setattr(LO, "load_latency_model", lambda space, root: (_Model(), {"test_mae_ms": 1.0, "test_srcc": 0.9}))
    keys = [G.space_of("pn").to_string(a) for a in G.benchmark_archs("pn", 12)]
    with pytest.raises(FileNotFoundError, match="latency_pilot"):
        LO.measure_outside("pn", keys, tmp_path, progress=False)
    (tmp_path / "latency-protocol-pn.json").write_text(json.dumps({"rounds": 2, "passes": 3, "warmup": 0}))
    with pytest.raises(ValueError, match="at least 10 distinct"):
        LO.measure_outside("pn", keys[:5], tmp_path, progress=False)
    rep = LO.measure_outside("pn", keys, tmp_path, source="test list", progress=False)
    assert rep["n"] == 12 and rep["mape_pct"] == pytest.approx(10.0) and rep["srcc"] == pytest.approx(1.0)
    assert rep["stage"] == "latency_constructed" and len(rounds_store(tmp_path, "pn", "latency_constructed").rows()) == 24
    saved = json.loads((tmp_path / "latency-constructed-pn.json").read_text())
    assert saved["archs"] == keys and saved["source"] == "test list" and len(saved["measured"]) == 12
    assert "latency_constructed" in (tmp_path / "runs.jsonl").read_text()
    assert "latency-constructed-pn.json" in (tmp_path / "MANIFEST.json").read_text()
    # the space's own rounds came from another CPU model: the comparison is refused
    other = rounds_store(tmp_path, "pn")
    other.append([{**_fake_unit("pn", 0, 3, f"0/{keys[0]}"), "cpu_model": "cpu-y"}])
    with pytest.raises(ValueError, match="machine model of the rounds"):
        LO.measure_outside("pn", keys, tmp_path, progress=False)
