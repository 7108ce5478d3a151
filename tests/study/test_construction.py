"""Tests of autobuild_lib.study.construction: chapter 05/06 settings, the architecture list chapter 05
evaluates (deterministic, cached predictors), fronts and hypervolume gains, the evaluation-cache
bookkeeping and the provenance of search metrics.  Fast: tiny predictors, toy metrics."""
from __future__ import annotations

import json
import sqlite3

import nbformat
import numpy as np
import pandas as pd
import pytest
from fixtures_released import fixture_labels, sample_archs

from autobuild_lib.benchmarks.labelled import from_frame
from autobuild_lib.benchmarks.miniofa.evaluator import Evaluator
from autobuild_lib.core.search import StageFull
from autobuild_lib.core.spaces.ofa import OFASpace, mbv3
from autobuild_lib.core.training import TrainConfig
from autobuild_lib.paths import NOTEBOOK_DIR
from autobuild_lib.study import construction as C

OBJ = [True, False]  # acc maximised, latency minimised


# ----------------------------------------------------------------------------- settings
def test_chapter05_settings_full_and_smoke():
    full = C.chapter05_settings("full")
    assert full["equations"] == list(C.CHAPTER05_EQUATIONS)
    assert (full["k"], full["epochs"], full["n_train"], full["n_eval"]) == (3, 200, None, None)
    smoke = C.chapter05_settings("smoke", ["a1", "a2", "a3"], k=3, epochs=200)
    assert smoke["equations"] == ["a1", "a3"]
    assert (smoke["k"], smoke["epochs"], smoke["latency_epochs"], smoke["n_eval"]) == (2, 3, 3, 1)
    assert C.chapter05_settings("smoke", ["only"])["equations"] == ["only"]
    with pytest.raises(ValueError, match="profile"):
        C.chapter05_settings("huge")
    with pytest.raises(ValueError, match="k must be a positive int"):
        C.chapter05_settings("full", k=0)
    with pytest.raises(ValueError, match="at least one"):
        C.chapter05_settings("full", [])


def test_chapter06_settings():
    full = C.chapter06_settings("full")
    assert full["budget"] == 250 and full["k"] == 25 and full["accuracy"] == "evaluator"
    assert C.chapter06_settings("full", dataset="autobuild-release")["accuracy"] == "predictor"
    smoke = C.chapter06_settings("smoke")
    assert smoke["accuracy"] == "predictor" and smoke["budget"] == 6 + 2 * 3 and smoke["n_train"] == 300
    assert C.chapter06_settings("smoke", accuracy="evaluator")["accuracy"] == "evaluator"
    with pytest.raises(ValueError, match="no evaluator"):
        C.chapter06_settings("full", accuracy="evaluator", dataset="autobuild-release")
    with pytest.raises(ValueError, match="n_iterations"):
        C.chapter06_settings("full", n_iterations=-1)


@pytest.mark.parametrize("name", ["05_mbv3_pareto", "06_evolutionary_nas"])
def test_notebooks_default_to_the_library_equations_and_have_no_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", 4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    ns: dict = {}
    exec(first.source, ns)  # the parameters cell is plain assignments
    assert ns["equations"] == list(C.CHAPTER05_EQUATIONS)
    assert ns["predictor_cache"] == C.DEFAULT_PREDICTOR_CACHE
    assert (ns["profile"], ns["dataset"], ns["space"], ns["data_dir"]) == ("full", "mini-ofa", "mbv3", "data/released")
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_evenly_spaced():
    items = list(range(10))
    assert C.evenly_spaced(items, None) == items
    assert C.evenly_spaced(items, 20) == items
    assert C.evenly_spaced(items, 2) == [0, 9]
    assert C.evenly_spaced(items, 4) == [0, 3, 6, 9]
    with pytest.raises(ValueError):
        C.evenly_spaced(items, 0)


# ----------------------------------------------------------------------------- construction plan
@pytest.fixture(scope="module")
def tiny_set():
    # a small MBv3-family space (2 layer types, 2-3 layers per stage: 12 modules per unit) keeps
    # module scoring fast; the predictor's feature schema is the full OFA one
    sp = OFASpace("mbv3-tiny", "mbv3", [(2, 3)] * 5, [(3, 3), (7, 6)])
    archs = sample_archs(sp, 48, seed=5)
    rows = []
    for a in archs:
        lab = fixture_labels(a)
        rows.append({"arch": sp.to_string(a), "acc": 100 * lab["acc"], "latency_cpu": float(lab["latency_cpu"])})
    return from_frame(sp, pd.DataFrame(rows))


def test_plan_construction_is_deterministic_and_cached(tiny_set, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=16, seed=3)
    eqs = ["acc", "acc/latency_cpu"]
    plan = C.plan_construction(tiny_set, eqs, k=2, config=cfg, cache_dir=tmp_path, n_eval=3)
    assert list(plan.builds) == eqs
    assert all(len(a) == 2 ** 5 for a in plan.constructed.values())
    assert all(len(a) == 3 for a in plan.to_evaluate.values())
    for t in eqs:  # evenly spaced: first and last constructed architecture included
        assert plan.to_evaluate[t][0] == plan.constructed[t][0]
        assert plan.to_evaluate[t][-1] == plan.constructed[t][-1]
    keys = plan.keys()
    assert len(keys) == len(set(keys)) and set(keys) == set(plan.frame()["arch"])
    assert not any(b.info["cached"] for b in plan.builds.values())
    assert all(len(b.run.scores[b.run.scores["unit"] == u]) == 12 for b in plan.builds.values() for u in range(1, 6))
    # the top-K modules of each unit are the highest-scored ones
    b = plan.builds["acc"]
    for u, mods in enumerate(b.top(2), start=1):
        best = b.run.scores[b.run.scores["unit"] == u]["score"].nlargest(2).to_numpy()
        got = [b.run.scores.set_index(["unit", "module"]).loc[(u, ",".join(f"k{k}e{e}" for k, e in m)), "score"]
               for m in mods]
        np.testing.assert_allclose(got, best)
    again = C.plan_construction(tiny_set, eqs, k=2, config=cfg, cache_dir=tmp_path, n_eval=3)
    assert all(b.info["cached"] for b in again.builds.values())
    assert again.keys() == keys and C.archs_digest(again.keys()) == C.archs_digest(keys)
    fresh = C.plan_construction(tiny_set, eqs[1:], k=2, config=cfg, cache_dir=None, n_eval=3)  # retrained
    assert fresh.frame()["arch"].tolist() == plan.frame().query("equation == @eqs[1]")["arch"].tolist()
    with pytest.raises(ValueError, match="twice"):
        C.plan_construction(tiny_set, ["acc", "acc"], k=1, config=cfg)
    with pytest.raises(ValueError, match="not allowed"):
        C.plan_construction(tiny_set, ["__import__('os')"], k=1, config=cfg)


def test_archs_digest_depends_on_order():
    assert C.archs_digest(["a", "b"]) != C.archs_digest(["b", "a"])
    assert len(C.archs_digest(["a"])) == 12


def test_cli_chapter05_lists_what_chapter05_evaluates(monkeypatch, capsys):
    from autobuild_lib.cli import main

    seen = {}

    def fake(space, **kw):
        seen[space] = kw
        return [f"{space}-x", f"{space}-y"]

    monkeypatch.setattr(C, "chapter05_archs", fake)
    assert main(["chapter05", "--space", "mbv3", "pn", "--list", "--profile", "smoke", "--seed", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == ["mbv3\tmbv3-x", "mbv3\tmbv3-y", "pn\tpn-x", "pn\tpn-y"]
    assert seen["pn"]["profile"] == "smoke" and seen["pn"]["seed"] == 4
    assert seen["pn"]["equations"] == C.CHAPTER05_EQUATIONS


# ----------------------------------------------------------------------------- fronts
def test_front_gain_table_counts_and_hypervolume():
    reference = pd.DataFrame({"acc": [1.0, 2.0, 0.5], "latency_cpu": [1.0, 2.0, 2.5]})  # front: first two
    constructed = pd.DataFrame({"equation": ["good", "bad", "bad"],
                                "acc": [2.0, 0.5, 1.0], "latency_cpu": [1.0, 1.5, 1.0]})
    ref_point = [0.0, 3.0]
    # training front: boxes 1x2 and 2x1 overlapping 1x1 -> 3; with (2, 1): 2x2 = 4
    assert C.hypervolume_clipped(reference[["acc", "latency_cpu"]], ref_point, OBJ) == pytest.approx(3.0)
    t = C.front_gain_table(constructed, reference, ref_point=ref_point).set_index("equation")
    assert t.loc["good", "beyond front"] == 1 and t.loc["good", "HV gain"] == pytest.approx(1.0)
    assert t.loc["good", "HV gain %"] == pytest.approx(100 / 3)
    # (1, 1) coincides with a front point: weakly dominated, not beyond, no gain
    assert t.loc["bad", "beyond front"] == 0 and t.loc["bad", "HV gain"] == pytest.approx(0.0)
    assert t.loc["bad", "n"] == 2 and t.loc["bad", "median acc"] == pytest.approx(0.75)


def test_reference_point_and_clipping():
    a = pd.DataFrame({"acc": [1.0, 3.0], "latency_cpu": [2.0, 6.0]})
    b = pd.DataFrame({"acc": [np.nan, 0.0], "latency_cpu": [1.0, 4.0]})
    assert C.reference_point([a, b]) == [0.0, 6.0]
    assert C.reference_point([a], margin=0.5) == [0.0, 8.0]
    # a point worse than the reference point adds nothing instead of raising
    assert C.hypervolume_clipped([[1.0, 1.0], [5.0, 9.0]], [0.0, 2.0], OBJ) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        C.reference_point([pd.DataFrame({"acc": [np.nan], "latency_cpu": [1.0]})])


# ----------------------------------------------------------------------------- evaluation cache
def _evaluator_root(tmp_path, table_keys):
    root = tmp_path / "bench"
    root.mkdir()
    pd.DataFrame({"arch": table_keys, "acc": 1.0, "acc_a": 1.0, "acc_b": 1.0, "ce": 1.0, "flops": 1.0, "n_params": 1.0, "latency_cpu": 1.0,
                  "flops_mini": 1.0}).to_csv(root / "mbv3.csv", index=False)
    (root / "supernet-mbv3.pt").write_bytes(b"weights")
    return root


def test_uncached_archs_reads_table_and_cache(tmp_path):
    sp = mbv3()
    keys = [sp.to_string(a) for a in sample_archs(sp, 5, seed=1)]
    root = _evaluator_root(tmp_path, keys[:1])
    ev = Evaluator(root, cache=tmp_path / "c.sqlite")
    assert ev.uncached("mbv3", keys + keys[:2]) == keys[1:]  # distinct, order kept, table known
    from autobuild_lib.benchmarks.pipeline.manifest import sha256_file

    sha = sha256_file(root / "supernet-mbv3.pt")
    with ev._connect() as con:
        con.execute("INSERT INTO evaluations VALUES (?,?,?,1,1,1,1,1,1,1,1,'measured')", ("mbv3", keys[1], sha))
        con.execute("INSERT INTO evaluations VALUES (?,?,?,1,1,1,1,1,1,1,1,'predicted')", ("mbv3", keys[2], sha))
        con.execute("INSERT INTO evaluations VALUES (?,?,?,1,1,1,1,1,1,1,1,'measured')", ("mbv3", keys[3], "other"))
    # measured-latency evaluator: a predicted row and a row of other weights do not count
    assert ev.uncached("mbv3", keys) == [keys[2], keys[3], keys[4]]
    assert ev.uncached("mbv3", keys, include_cache=False) == keys[1:]
    ev_pred = Evaluator(root, cache=tmp_path / "c.sqlite", latency="predict", latency_predictors={"mbv3": len})
    assert ev_pred.uncached("mbv3", keys) == [keys[3], keys[4]]
    # the evaluator agrees: a cached row comes back as a cache hit without computing anything
    row = ev.evaluate("mbv3", keys[1])
    assert row["source"] == "cache" and row["latency_source"] == "measured"


def test_cli_chapter05_count_counts_the_rows_fill_wrote(tmp_path, monkeypatch, capsys):
    """--fill evaluates accuracy only (latency skipped); --count must count those rows as cached."""
    from autobuild_lib.benchmarks.pipeline.manifest import sha256_file
    from autobuild_lib.cli import main
    from autobuild_lib.study import data as study

    sp = mbv3()
    keys = [sp.to_string(a) for a in sample_archs(sp, 3, seed=2)]
    root = _evaluator_root(tmp_path, keys[:1])
    cache = tmp_path / "c.sqlite"
    with Evaluator(root, cache=cache)._connect() as con:
        con.execute("INSERT INTO evaluations VALUES (?,?,?,1,1,1,1,1,1,1,NULL,'skipped')",
                    ("mbv3", keys[1], sha256_file(root / "supernet-mbv3.pt")))
    monkeypatch.setattr(study, "mini_ofa_dir", lambda: root)
    monkeypatch.setattr(C, "chapter05_archs", lambda space, **kw: keys)
    assert main(["chapter05", "--space", "mbv3", "--count", "--cache", str(cache)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["in benchmark table"], out["cached"], out["to compute"]) == (1, 1, 1)


def test_resolve_eval_cache_never_writes_into_the_benchmark_in_smoke(tmp_path):
    root = tmp_path / "bench"
    root.mkdir()
    sqlite3.connect(root / "evaluations.sqlite").close()
    assert C.resolve_eval_cache("auto", "full", root) == root / "evaluations.sqlite"
    smoke = C.resolve_eval_cache("auto", "smoke", root)
    assert smoke.parent != root and root not in smoke.parents and smoke.is_file()
    assert C.resolve_eval_cache("auto", "smoke", root) != smoke  # a fresh copy each time
    assert C.resolve_eval_cache(str(tmp_path / "x.sqlite"), "smoke", root) == tmp_path / "x.sqlite"


def test_seconds_per_new_arch(tmp_path):
    assert C.seconds_per_new_arch(tmp_path, "mbv3") is None
    recs = [{"space": "mbv3", "stage": "static", "wall_s": 10, "n_jobs": 2, "done_now": 10},
            {"space": "mbv3", "stage": "acc", "wall_s": 30, "n_jobs": 1, "done_now": 10},
            {"space": "pn", "stage": "acc", "wall_s": 999, "n_jobs": 1, "done_now": 1}]
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    assert C.seconds_per_new_arch(tmp_path, "mbv3", stages=("static", "acc")) == pytest.approx(2.0 + 3.0)
    assert C.seconds_per_new_arch(tmp_path, "mbv3") is None  # no latency stage logged


# ----------------------------------------------------------------------------- search provenance
class _FakeEvaluator:
    def __init__(self):
        self.calls = []

    def evaluate(self, space, key):
        self.calls.append(key)
        return {"acc": float(len(key) % 7), "latency_cpu": float(len(key)), "latency_source": "predicted",
                "source": "computed"}


def _toy_metrics(arch):
    return {"acc": float(arch.n_layers), "latency_cpu": float(sum(e * k for s in arch.stages for k, e in s))}


def test_search_metrics_modes_and_provenance():
    sp = mbv3()
    a, b = sample_archs(sp, 2, seed=2)
    with pytest.raises(ValueError, match="exactly one"):
        C.SearchMetrics(sp)
    with pytest.raises(ValueError, match="latency_fn"):
        C.SearchMetrics(sp, accuracy_fn=lambda x: np.zeros(len(x)))
    fake = _FakeEvaluator()
    m = C.SearchMetrics(sp, "mbv3", evaluator=fake)
    assert m(a) == m(a) and len(fake.calls) == 1 and m.requests == 2  # repeated requests from memory
    p = m.provenance()
    assert p.loc[0, "acc_source"] == "evaluated" and p.loc[0, "latency_source"] == "predicted"
    known = pd.DataFrame({"arch": [sp.to_string(a)], "acc": [50.0], "latency_cpu": [9.0]})
    s = C.SearchMetrics(sp, accuracy_fn=lambda x: np.full(len(x), 1.0), latency_fn=lambda x: np.full(len(x), 2.0),
                        known=known)
    assert s(a) == {"acc": 50.0, "latency_cpu": 9.0} and s(b) == {"acc": 1.0, "latency_cpu": 2.0}
    p = s.provenance().set_index("arch")
    assert p.loc[sp.to_string(a), "source"] == "benchmark" and p.loc[sp.to_string(b), "acc_source"] == "predicted"


def test_search_grid_summary_is_deterministic():
    sp = mbv3()
    schemes = {"Stage-Full": StageFull(sp)}
    runs = [C.run_search_grid(sp, schemes, _toy_metrics, seeds=[0, 1], n_initial=5, n_iterations=2, per_iteration=3)
            for _ in range(2)]
    hist = C.search_history(runs[0])
    assert len(hist) == 2 * (5 + 2 * 3) and set(hist["seed"]) == {0, 1}
    pd.testing.assert_frame_equal(hist, C.search_history(runs[1]))
    ref = C.reference_point([hist])
    summary = C.hypervolume_summary(runs[0], ref)
    curves = C.hypervolume_curves(runs[0], ref)
    assert summary.loc["Stage-Full", "seeds"] == 2
    final = curves[curves["iteration"] == 2]["HV"]
    assert summary.loc["Stage-Full", "HV mean"] == pytest.approx(final.mean())
    assert summary.loc["Stage-Full", "HV std"] == pytest.approx(final.std(ddof=1))
    # a front never loses hypervolume as the search goes on
    for _, g in curves.groupby("seed"):
        assert np.all(np.diff(g.sort_values("iteration")["HV"].to_numpy()) >= -1e-12)
        assert g["evaluated"].tolist() == [5, 8, 11]
    with pytest.raises(ValueError):
        C.run_search_grid(sp, {}, _toy_metrics, seeds=[0])


def test_build_equations_equals_one_build_per_equation_and_uses_the_cache(tiny_set, tmp_path):
    import torch

    from autobuild_lib.core.build import build_equation, build_equations

    cfg = TrainConfig(epochs=2, batch_size=16, seed=1)
    eqs = ["acc", "acc/latency_cpu"]
    alone = [build_equation(tiny_set, e, cfg) for e in eqs]
    built = build_equations(tiny_set, eqs, cfg, cache_dir=tmp_path, n_jobs=2)
    assert [b.equation.text for b in built] == [b.equation.text for b in alone]
    for a, b in zip(alone, built):
        for (n, p), (_, q) in zip(a.run.result.model.state_dict().items(), b.run.result.model.state_dict().items()):
            assert torch.equal(p, q), n
        pd.testing.assert_frame_equal(a.run.scores, b.run.scores)
        assert not b.info["cached"]
    again = build_equations(tiny_set, eqs[::-1], cfg, cache_dir=tmp_path)
    assert all(b.info["cached"] for b in again) and [b.equation.text for b in again] == eqs[::-1]
    pd.testing.assert_frame_equal(again[1].run.scores, built[0].run.scores)


def test_predictor_key_ignores_the_last_bits_of_float64_labels(tiny_set):
    """Label arithmetic may differ in its last float64 bit between CPUs (numpy's SIMD ``**``); the
    predictor trains on float32 labels, so such a difference keeps the key, a real change does not."""
    from autobuild_lib.core.build import _predictor_key

    cfg, y = TrainConfig(epochs=2), tiny_set.labels("100**(acc/100)")
    keys = [tiny_set.space.to_string(a) for a in tiny_set.archs]
    one_ulp = np.nextafter(y, np.inf)
    assert not np.array_equal(one_ulp, y)
    key = _predictor_key(tiny_set.graphs, y, keys, cfg)
    assert _predictor_key(tiny_set.graphs, one_ulp, keys, cfg) == key
    changed = y.copy()
    changed[3] *= 1.001
    assert _predictor_key(tiny_set.graphs, changed, keys, cfg) != key
    assert _predictor_key(tiny_set.graphs, y, keys, TrainConfig(epochs=3)) != key


def test_new_architectures_take_the_latency_predictors_value():
    sp = mbv3()
    a, b = sample_archs(sp, 2, seed=4)
    ka, kb = sp.to_string(a), sp.to_string(b)
    evaluated = pd.DataFrame({"arch": [ka, kb], "acc": [1.0, 2.0], "latency_cpu": [7.0, np.nan],
                              "latency_source": ["measured", "skipped"], "source": ["benchmark", "computed"]})
    seen = []
    out = C.with_predicted_latency(evaluated, lambda keys: seen.extend(keys) or np.full(len(keys), 3.5))
    assert seen == [kb] and out["latency_cpu"].tolist() == [7.0, 3.5]
    assert out["latency_source"].tolist() == ["measured", "predicted"] and evaluated.loc[1, "latency_source"] == "skipped"

    class Bench(_FakeEvaluator):
        def evaluate(self, space, key):
            row = super().evaluate(space, key)
            return {**row, "latency_source": "measured", "source": "benchmark"} if key == ka else row

    m = C.SearchMetrics(sp, "mbv3", evaluator=Bench(), latency_fn=lambda x: np.full(len(x), 4.25))
    assert m(a)["latency_cpu"] == float(len(ka)) and m(b)["latency_cpu"] == 4.25
    assert m.provenance().set_index("arch").loc[kb, "latency_source"] == "predicted"


def test_the_benchmarks_latency_model_is_checked_and_named(tmp_path):
    from autobuild_lib.benchmarks.miniofa.constants import load_latency_model

    with pytest.raises(FileNotFoundError, match="latency-mbv3.pt is missing.*--stages latency_model"):
        load_latency_model("mbv3", tmp_path)
    with pytest.raises(ValueError, match="unknown Mini-OFA space"):
        load_latency_model("resnet", tmp_path)


def test_predictor_cache_is_committed_only_for_full_runs_on_mini_ofa(tmp_path):
    from autobuild_lib.paths import REPO_ROOT
    from autobuild_lib.study.data import mini_ofa_dir

    assert C.resolve_predictor_cache("auto", "full", "mini-ofa") == mini_ofa_dir() / "predictors"
    for profile, dataset in (("smoke", "mini-ofa"), ("full", "autobuild-release")):
        assert C.resolve_predictor_cache("auto", profile, dataset) == REPO_ROOT / ".cache" / "predictors"
    assert C.resolve_predictor_cache("", "full", "mini-ofa") is None
    assert C.resolve_predictor_cache("x/y", "full", "mini-ofa") == REPO_ROOT / "x" / "y"
    assert C.resolve_predictor_cache(str(tmp_path), "smoke", "mini-ofa") == tmp_path


def test_fill_seconds_per_eval(tmp_path):
    assert C.fill_seconds_per_eval(tmp_path, "mbv3", "chapter06_fill") is None
    recs = [{"space": "mbv3", "stage": "chapter06_fill", "wall_s": 100.0, "computed": 20},
            {"space": "mbv3", "stage": "chapter06_fill", "wall_s": 1.0, "cache": 250},  # a cached re-trace
            {"space": "mbv3", "stage": "chapter06_fill", "wall_s": 25.0, "n_jobs": 2, "computed": 5},
            {"space": "pn", "stage": "chapter06_fill", "wall_s": 999.0, "computed": 1},
            {"space": "mbv3", "stage": "acc", "wall_s": 999.0, "computed": 1}]
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    assert C.fill_seconds_per_eval(tmp_path, "mbv3", "chapter06_fill") == pytest.approx(150.0 / 25)
    assert C.fill_seconds_per_eval(tmp_path, "pn", "acc") is None
