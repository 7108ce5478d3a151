"""Mini-OFA generation: work units, shards, manifest, the generate pipeline and the evaluator (tiny sizes)."""
from __future__ import annotations

import functools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from autobuild_lib.benchmarks.miniofa.evaluator import Evaluator
from autobuild_lib.benchmarks.miniofa.generate import LABEL_COLUMNS, benchmark_archs, generate, load_mini_ofa
from autobuild_lib.benchmarks.miniofa.labels import load_supernet, measure_latency_ms
from autobuild_lib.benchmarks.miniofa.supernet import SupernetConfig, space_of
from autobuild_lib.benchmarks.pipeline.manifest import verify_file, write_manifest
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, run_units

TINY = SupernetConfig(space="mbv3", width_mult=0.25, batch_size=4, total_steps=3, n_train=40, n_calib=8,
                      n_heldout=8, n_test=16, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def square(key: str) -> dict:
    return {"arch": key, "y": int(key) ** 2}


class Boom(RuntimeError):
    pass


def square_until(limit: int, key: str) -> dict:
    if int(key) >= limit:
        raise Boom(key)
    return square(key)


# ------------------------------------------------------------------ work units
def test_units_resume_without_duplicates(tmp_path):
    keys = [str(i) for i in range(23)]
    store = ShardStore(tmp_path / "w")
    with pytest.raises(Boom):  # "killed" in the third chunk: two shards survive
        run_units(functools.partial(square_until, 12), keys, store, chunk=5, progress=False)
    assert len(store.shards()) == 2 and len(store.rows()) == 10
    (store.folder / ".partial-shard-00002.jsonl.999").write_text('{"arch": "10", "y"')  # a killed write
    rep = run_units(square, keys, store, chunk=5, progress=False)
    assert rep["done_before"] == 10 and rep["done_now"] == 13
    assert not list(store.folder.glob(".partial-*"))
    assert [r["y"] for r in store.merged(keys)] == [i * i for i in range(23)]
    again = run_units(square, keys, store, chunk=5, progress=False)
    assert again["done_now"] == 0 and len(store.shards()) == 5


def test_units_parallel_backend_same_rows(tmp_path):
    from joblib import parallel_config

    keys = [str(i) for i in range(12)]
    a, b = ShardStore(tmp_path / "a"), ShardStore(tmp_path / "b")
    run_units(square, keys, a, chunk=4, progress=False)
    with parallel_config(backend="threading"):
        run_units(square, keys, b, chunk=7, n_jobs=2, progress=False)
    assert a.merged(keys) == b.merged(keys)


def test_store_errors(tmp_path):
    store = ShardStore(tmp_path)
    store.append([{"arch": "a", "y": 1}])
    assert store.append([{"arch": "a", "y": 2}]) is None  # the first stored row wins
    assert store.rows() == {"a": {"arch": "a", "y": 1}}
    store.append([{"arch": "b", "y": 1}])
    (tmp_path / "shard-00001.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="shard-00001.jsonl:1.*delete this shard"):
        store.rows()
    with pytest.raises(ValueError, match="without 'arch'"):
        store.append([{"y": 1}])
    with pytest.raises(ValueError, match="units not done yet"):
        ShardStore(tmp_path / "empty").merged(["x"])
    with pytest.raises(ValueError, match="unique"):
        run_units(square, ["1", "1"], ShardStore(tmp_path / "u"), progress=False)


# -------------------------------------------------------------------- manifest
def test_manifest_detects_change(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "t.csv"
    f.write_text("arch,acc\nx,1\n")
    write_manifest(tmp_path)
    verify_file(f, tmp_path, "python -m autobuild_lib generate mini-ofa --space mbv3")
    f.write_text("arch,acc\nx,2\n")
    with pytest.raises(ValueError, match=r"sub/t.csv does not match .*MANIFEST.json.*generate mini-ofa --space mbv3"):
        verify_file(f, tmp_path, "python -m autobuild_lib generate mini-ofa --space mbv3")
    f.unlink()
    with pytest.raises(FileNotFoundError, match="t.csv is missing; restore it with `git checkout"):
        verify_file(f, tmp_path, "regen")
    other = tmp_path / "new.csv"
    other.write_text("x")
    with pytest.raises(ValueError, match="not listed"):
        verify_file(other, tmp_path, "regen")


# --------------------------------------------------------------------- sampling
def test_benchmark_archs_deterministic_and_distinct():
    a, b = benchmark_archs("pn", 200), benchmark_archs("pn", 50)
    sp = space_of("pn")
    keys = [sp.to_string(x) for x in a]
    assert len(set(keys)) == 200 and keys[:50] == [sp.to_string(x) for x in b]
    with pytest.raises(ValueError, match="n must be >= 1"):
        benchmark_archs("pn", 0)


def test_latency_measurement_is_positive_median():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    ms = measure_latency_ms(net, 32, warmup=1, repeats=3)
    assert 0 < ms < 1000
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency_ms(net, 32, repeats=0)


# ------------------------------------------------------------------ the pipeline
@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    """All stages for 4 MBv3 archs with a 3-step tiny supernet."""
    root = tmp_path_factory.mktemp("mini-ofa")
    torch.set_num_threads(1)
    rep = generate("mbv3", n=4, root=root, design=TINY, chunk=3, progress=False,
                   work_dir=tmp_path_factory.mktemp("work"))
    return root, rep


def test_pipeline_writes_table_manifest_runs(tiny_benchmark):
    root, rep = tiny_benchmark
    assert list(rep) == ["supernet", "reliability", "static", "latency", "acc", "ir", "latency_model", "merge", "checks"]
    assert "at least" in rep["latency_model"]["skipped"]
    frame = load_mini_ofa("mbv3", root)
    assert list(frame.columns) == ["arch", *LABEL_COLUMNS] and len(frame) == 4
    sp = space_of("mbv3")
    assert frame["arch"].tolist() == [sp.to_string(a) for a in benchmark_archs("mbv3", 4)]
    assert frame[list(LABEL_COLUMNS)].notna().all().all()
    assert (frame["flops"] > frame["flops_mini"]).all() and frame["acc"].between(0, 100).all()
    runs = [json.loads(line) for line in (root / "runs.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in runs} == set(rep) - {"latency_model"} and all("cpu" in r["machine"] for r in runs)
    manifest = json.loads((root / "MANIFEST.json").read_text())["sha256"]
    assert {"mbv3.csv", "supernet-mbv3.pt", "ir-mbv3.npz", "runs.jsonl", "DATA_CARD.md", "reliability-mbv3.json",
            "checks-mbv3.json"} <= set(manifest)
    assert not list(root.rglob(".partial-*"))
    from autobuild_lib.core.ir import load_ir_graphs

    keys, table = load_ir_graphs(root / "ir-mbv3.npz")
    assert keys == frame["arch"].tolist()


def test_checks_and_card(tiny_benchmark):
    root, rep = tiny_benchmark
    checks = json.loads((root / "checks-mbv3.json").read_text())
    assert checks["rows"] == 4 and checks["repeat"]["n"] == 4
    assert checks["repeat"]["acc_identical"] == 4 and checks["repeat"]["exact_rows_identical"] == 4
    assert checks["ir"]["graphs"] == 4 and checks["ir"]["keys_match_table"]
    assert {"Conv", "Add", "Div", "Relu"} <= set(checks["ir"]["op_vocabulary"])
    rel = json.loads((root / "reliability-mbv3.json").read_text())
    assert rel["n_archs"] == 40 and len(rel["rows"]) == 40 and "correct" not in rel
    card = (root / "DATA_CARD.md").read_text()
    assert "| mbv3 | 40 |" in card and "4/4 identical acc" in card and "not generated yet" in card  # pn missing
    assert "supernet | " in card and "Machine: " in card


def test_pipeline_rerun_is_idempotent(tiny_benchmark):
    root, _ = tiny_benchmark
    before = (root / "mbv3.csv").read_bytes()
    rep = generate("mbv3", n=4, root=root, design=TINY, progress=False)
    assert rep["supernet"].get("skipped") and rep["acc"]["done_now"] == 0 and rep["static"]["done_now"] == 0
    assert (root / "mbv3.csv").read_bytes() == before


def test_pipeline_corrupt_table_is_refused(tiny_benchmark, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_benchmark[0], root)
    frame = pd.read_csv(root / "mbv3.csv")
    frame.loc[0, "acc"] += 1
    frame.to_csv(root / "mbv3.csv", index=False)
    with pytest.raises(ValueError, match="mbv3.csv does not match.*generate mini-ofa --space mbv3"):
        load_mini_ofa("mbv3", root)


def test_evaluator_reproduces_table_from_fresh_process(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    frame = load_mini_ofa("mbv3", root)
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from autobuild_lib.benchmarks.miniofa.evaluator import Evaluator\n"
        f"ev = Evaluator(r'{root}', cache=r'{tmp_path / 'c.sqlite'}', latency='skip', use_table=False)\n"
        f"df = ev.evaluate_many('mbv3', {frame['arch'].tolist()!r}, progress=False)\n"
        "print(df[['acc', 'ce', 'flops', 'n_params', 'flops_mini']].to_json(orient='split', double_precision=15))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    got = pd.read_json(__import__("io").StringIO(out), orient="split")
    for c in ["acc", "ce", "flops", "n_params", "flops_mini"]:
        np.testing.assert_allclose(got[c].to_numpy(), frame[c].to_numpy(), rtol=1e-12, err_msg=c)


def test_evaluator_caches_new_archs(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    ev = Evaluator(root, cache=tmp_path / "c.sqlite", latency="skip")
    new = benchmark_archs("mbv3", 6)[4:]
    first = ev.evaluate_many("mbv3", new + [benchmark_archs("mbv3", 1)[0]], progress=False)
    assert first["source"].tolist() == ["computed", "computed", "benchmark"]
    assert first["latency_source"].tolist()[:2] == ["skipped", "skipped"]
    again = Evaluator(root, cache=tmp_path / "c.sqlite", latency="skip").evaluate_many("mbv3", new, progress=False)
    assert again["source"].tolist() == ["cache", "cache"]
    pd.testing.assert_frame_equal(first.iloc[:2][list(LABEL_COLUMNS)], again[list(LABEL_COLUMNS)])
    one = ev.evaluate("mbv3", space_of("mbv3").to_string(new[0]))
    assert one["acc"] == first.loc[0, "acc"]


def test_evaluator_bad_input(tiny_benchmark, tmp_path):
    root, _ = tiny_benchmark
    with pytest.raises(ValueError, match="latency must be"):
        Evaluator(root, latency="guess")
    with pytest.raises(ValueError, match="needs latency_predictors"):
        Evaluator(root, latency="predict")
    ev = Evaluator(root, cache=tmp_path / "c.sqlite", latency="skip")
    with pytest.raises(ValueError, match="stage 2 has 5 layers"):
        ev.evaluate("mbv3", "224|k3e3,k3e3|k3e3,k3e3,k3e3,k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3")
    with pytest.raises(FileNotFoundError, match="supernet-pn.pt not found"):
        ev.evaluate("pn", benchmark_archs("pn", 1)[0])
    bad = tmp_path / "supernet-mbv3.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable Mini-OFA supernet file"):
        load_supernet(bad)


def test_labelling_design_may_only_change_the_evaluation_set(monkeypatch):
    from autobuild_lib.benchmarks.miniofa import generate as g

    monkeypatch.setitem(g.DESIGNS, "Z", {**g.DESIGNS["B"], "n_test": 2000, "train_as": "B"})
    monkeypatch.setitem(g.DESIGNS, "Y", {**g.DESIGNS["B"], "width_mult": 0.5, "train_as": "B"})
    assert g.design_config("pn", "Z").n_test == 2000
    assert g.training_config("pn", "Z") == g.design_config("pn", "B")
    assert g.training_design("Z") == ("B", "B")
    with pytest.raises(ValueError, match="width_mult"):
        g.training_config("pn", "Y")


def test_card_reports_pilots_progress_and_blocked_status(tmp_path):
    import json

    from autobuild_lib.benchmarks.miniofa.card import write_card
    from autobuild_lib.benchmarks.pipeline.workunits import ShardStore

    rel = {"n_archs": 40, "n_eval": 100, "n_half": [50, 50], "srcc_split_acc": 0.8, "srcc_split_ce": 0.9,
           "srcc_acc_depth": 0.1, "srcc_acc_resolution": 0.5, "acc_mean": 70.0, "acc_std": 0.5, "acc_min": 69.0,
           "acc_max": 71.0}
    (tmp_path / "pilots" / "Q-mbv3").mkdir(parents=True)
    (tmp_path / "pilots" / "Q-mbv3" / "reliability.json").write_text(json.dumps(rel))
    ShardStore(tmp_path / "work" / "pn" / "static").append([{"arch": "a", "flops": 300.0, "n_params": 5.0},
                                                                 {"arch": "b", "flops": 500.0, "n_params": 7.0}])
    card = write_card(tmp_path).read_text()
    assert "Generation in progress" in card and "no supernet exported yet" in card
    assert "| pilot Q | mbv3 | 40 | 100 (50+50) | 0.800 |" in card and "| **no** |" in card
    assert "| pn | 2 | 0 | 0 |" in card and "| pn flops " in card
    checks = {"rows": 2, "partial": True, "srcc_flops_latency": 0.7, "ir": {"graphs": 2, "keys_match_table": True,
              "nodes_mean": 100.0, "op_vocabulary": {"Conv": 9}},
              "repeat": {"n": 2, "exact_columns": ["flops", "n_params"], "n_exact_rows": 2, "exact_rows_identical": 2,
                         "latency_srcc": 0.5, "latency_median_abs_rel_diff": 0.15}}
    (tmp_path / "checks-pn.json").write_text(json.dumps(checks))
    card = write_card(tmp_path).read_text()
    assert "fail the repeatability check** (re-measured SRCC pn 0.500 < 0.9)" in card
    checks["repeat"]["latency_srcc"] = 0.95
    (tmp_path / "checks-pn.json").write_text(json.dumps(checks))
    assert "fail the repeatability" not in write_card(tmp_path).read_text()
    rel.update(srcc_split_acc=0.95, srcc_acc_depth=0.01, config={"canvas": 56})
    (tmp_path / "pilots" / "Q-mbv3" / "reliability.json").write_text(json.dumps(rel))
    card = write_card(tmp_path).read_text()
    assert "| 0.950 |" in card and "| **no** |" not in card  # the depth bar is dropped (issue 20)
    key = space_of("mbv3").to_string(benchmark_archs("mbv3", 1)[0])
    ShardStore(tmp_path / "work" / "mbv3" / "acc").append([{"arch": key, "acc": 70.0, "acc_a": 69.0, "acc_b": 71.0,
                                                              "ce": 1.0, "flops_mini": 9.0}])
    (tmp_path / "runs.jsonl").write_text(json.dumps({"space": "mbv3", "stage": "supernet", "design": "Q",
                                                     "exported_from": "pilots/Q-mbv3/supernet.pt",
                                                     "retrained": False, "wall_s": 1.0, "started_utc": "2026-12-06T00:00:00+00:00",
                                                     "machine": {"cpu": "test CPU", "n_cpus": 2, "platform": "Linux", "python": "3.11",
                                                                 "torch": "2.14.1", "ofa": "0.1", "torch_threads": 1}}) + "\n")
    card = write_card(tmp_path).read_text()
    assert "**Accuracy labelling in progress** with design Q" in card and "mbv3 1 of 3,000, pn 0 of 3,000" in card
    assert "- `mbv3`: design Q, `supernet-mbv3.pt` exported from `pilots/Q-mbv3/supernet.pt`" in card
    assert "canvas=56" in card
    (tmp_path / "mbv3.csv").write_text(f'arch,acc,latency_cpu\n"{key}",70.0,12.0\n')
    card = write_card(tmp_path).read_text()
    assert "Tables finished: `mbv3.csv` (latency_cpu still from the single pass" in card
    assert "**Accuracy labelling in progress**" in card   # pn is not finished: its progress stays in the status


def test_latency_model_stage_trains_on_the_measured_shards(tmp_path):
    import json

    from autobuild_lib.benchmarks.miniofa.generate import _latency_model
    from autobuild_lib.benchmarks.pipeline.workunits import ShardStore

    sp = space_of("pn")
    keys = [sp.to_string(a) for a in benchmark_archs("pn", 20)]
    with pytest.raises(ValueError, match="not done yet"):
        _latency_model("pn", keys, tmp_path, progress=False, epochs=2)
    ShardStore(tmp_path / "work" / "pn" / "latency").append(
        [{"arch": k, "latency_cpu": 10.0 + sp.from_string(k).n_layers} for k in keys])
    rep = _latency_model("pn", keys, tmp_path, progress=False, epochs=2)
    info = json.loads((tmp_path / "latency-model-pn.json").read_text())
    assert (tmp_path / "latency-pn.pt").exists() and info["n_train"] + info["n_test"] == 20
    assert rep["test_mae_ms"] == info["test_mae_ms"] >= 0
    assert "skipped" in _latency_model("pn", keys, tmp_path, progress=False, epochs=2)


def test_checks_run_on_design_independent_labels_before_acc(tmp_path):
    import json

    rep = generate("pn", stages=["static", "latency", "ir", "checks"], n=3, root=tmp_path, design=TINY, chunk=2,
                   progress=False, work_dir=tmp_path / "work-cache")
    assert rep["checks"]["partial"] is True and not (tmp_path / "pn.csv").exists()
    c = json.loads((tmp_path / "checks-pn.json").read_text())
    assert c["rows"] == 3 and "acc" not in c["labels"] and "srcc_acc" not in c
    assert c["repeat"]["exact_rows_identical"] == 3 and c["repeat"]["exact_columns"] == ["flops", "n_params"]
    assert c["ir"]["graphs"] == 3 and c["ir"]["keys_match_table"]
    card = (tmp_path / "DATA_CARD.md").read_text()
    assert "`pn` (design-independent labels only, no `acc` yet): 3 rows" in card
