"""Mini-Panoptic loader, model loader, data card and data summary, on the tiny generated fixture."""
import json
import shutil

import pandas as pd
import pytest
import torch
from fixtures_panoptic import SIZES, TINY, mini_panoptic_fixture

from autobuild_lib.benchmarks.panoptic import data as pdata
from autobuild_lib.benchmarks.panoptic import generate as gen
from autobuild_lib.benchmarks.panoptic.card import REGENERATE, write_card
from autobuild_lib.study.data import DataMissing


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return mini_panoptic_fixture(tmp_path_factory)


@pytest.fixture
def copy(root, tmp_path):
    out = tmp_path / "mini-panoptic"
    shutil.copytree(root, out)
    return out


def test_loads_every_table_of_the_fixture(root):
    d = pdata.load_mini_panoptic(root)
    assert d.root == root and d.supernet_path == root / "supernet.pt"
    assert len(d.pseudo) == SIZES["N_PSEUDO"] and len(d.full) == SIZES["N_FULL"]
    assert list(d.full["arch"]) == list(d.pseudo["arch"][:len(d.full)])
    assert {"arch", "pq", "pq_a", "pq_b", "pq_things", "miou", "ce", "flops", "eval_s"} <= set(d.pseudo.columns)
    assert {"arch", "pq_full", "pq_a", "pq_b", "pq_things", "miou", "ce", "flops", "ft_loss_last10", "finetune_s",
            "eval_s"} <= set(d.full.columns)
    assert {"pq_a", "pq_b", "miou", "ce"} <= set(d.constructed.columns)
    assert d.reliability["work"] == gen.label_work(root, TINY, "pseudo").relative_to(root).as_posix()
    assert set(d.constructed["equation"]) == set(gen.EQUATIONS) == set(d.construction["equations"])
    assert {"unit", "module", "score", "equation"} <= set(d.module_scores.columns)
    assert d.reliability["n"] == SIZES["N_RELIABILITY"] and len(d.trainlog) == TINY.supernet_steps
    assert d.reliability_curve is not None and {"curve", "bar", "images_for_bar"} <= set(d.reliability_curve)
    assert d.reliability_curve["bar"] == d.reliability["bar"] == gen.RELIABILITY_BAR
    assert (root / "DATA_CARD.md").is_file()


def test_env_variable_points_elsewhere(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOBUILD_MINI_PANOPTIC_DIR", raising=False)
    assert pdata.mini_panoptic_dir() == gen.MINI_PANOPTIC_DIR
    monkeypatch.setenv("AUTOBUILD_MINI_PANOPTIC_DIR", str(tmp_path))
    assert pdata.mini_panoptic_dir() == tmp_path
    with pytest.raises(DataMissing, match=str(tmp_path)):
        pdata.load_mini_panoptic()


def test_missing_files_raise_data_missing_naming_them_and_the_command(copy):
    (copy / "full.csv").unlink()
    (copy / "construction.json").unlink()
    with pytest.raises(DataMissing) as err:
        pdata.load_mini_panoptic(copy)
    msg = str(err.value)
    assert "missing full.csv, construction.json" in msg and "stages full, constructions" in msg
    assert REGENERATE in msg and "python -m autobuild_lib generate mini-panoptic --n-jobs 2" in msg
    assert "pseudo.csv" not in msg


def test_corrupt_file_is_refused_by_the_manifest(copy):
    frame = pd.read_csv(copy / "pseudo.csv")
    frame.loc[0, "pq"] += 1
    frame.to_csv(copy / "pseudo.csv", index=False)
    with pytest.raises(ValueError, match=r"pseudo.csv does not match.*generate mini-panoptic --n-jobs 2"):
        pdata.load_mini_panoptic(copy)
    assert pdata.load_mini_panoptic(copy, verify=False).pseudo["pq"].iloc[0] == pytest.approx(frame["pq"].iloc[0])


def test_unlisted_file_is_refused(copy):
    man = json.loads((copy / "MANIFEST.json").read_text())
    del man["sha256"]["reliability.json"]
    (copy / "MANIFEST.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="reliability.json is not listed"):
        pdata.load_mini_panoptic(copy)


def test_model_loader_restores_the_fine_tuned_supernet(root):
    cfg, model = pdata.load_panoptic_model(root)
    assert cfg == TINY and not model.training
    state = torch.load(root / "supernet.pt", map_location="cpu", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    test, calib = pdata.sample_mosaics(cfg, 3)
    assert len(test) == 3 and len(calib) == cfg.n_calib
    from autobuild_lib.benchmarks.panoptic.train import build_data

    ref = build_data(cfg)   # the sets the labels were measured on: the samples are their first mosaics
    assert torch.equal(test.images, ref.test.images[:3]) and torch.equal(test.semantic, ref.test.semantic[:3])
    assert torch.equal(calib.images, ref.calib.images)
    with torch.no_grad():
        assert model(test.images).shape == (3, 12, cfg.size, cfg.size)
    with pytest.raises(ValueError, match="n must be"):
        pdata.sample_mosaics(cfg, 0)


def test_model_loader_refuses_a_broken_file(copy):
    (copy / "supernet.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="supernet.pt does not match"):
        pdata.load_panoptic_model(copy)
    with pytest.raises(ValueError, match="not a readable panoptic supernet file.*generate mini-panoptic"):
        pdata.load_panoptic_model(copy, verify=False)
    (copy / "supernet.pt").unlink()
    with pytest.raises(DataMissing, match="missing supernet.pt"):
        pdata.load_panoptic_model(copy)


def test_card_reports_what_was_generated(copy, tmp_path):
    card = write_card(copy).read_text()
    for text in ("Differences from the paper", "instead of MS-COCO", "FPN semantic head", "connected components",
                 f"{TINY.supernet_steps} sandwich-rule steps", f"{TINY.ft_steps} fine-tuning steps",
                 "SRCC between the PQs", "Reliability curve", "SRCC(pseudo PQ, fully fine-tuned PQ) over the architectures "
                 "with both: **", "pseudo labels **", f"over {SIZES['N_PSEUDO']} architectures",
                 "random architectures **", f"over {SIZES['N_FULL']} architectures", f"bar {gen.RELIABILITY_BAR}",
                 f"| supernet | {TINY.n_val:,} / {TINY.n_test:,} |", "| constructions |", "work/<pseudo|full>-<digest>",
                 "Machine:", REGENERATE, f"`pseudo.csv`: {SIZES['N_PSEUDO']} architectures"):
        assert text in card, text
    full = pd.read_csv(copy / "full.csv")
    hours = (full["finetune_s"].sum() + full["eval_s"].sum()) / 3600
    assert f"`full.csv` {hours:.2f} worker-hours over {len(full):,} architectures" in card
    con = pd.read_csv(copy / "constructed.csv").drop_duplicates("arch")
    hours = (con["finetune_s"].sum() + con["eval_s"].sum()) / 3600
    assert f"`constructed.csv` {hours:.2f} worker-hours over {len(con):,} architectures" in card
    empty = tmp_path / "empty"
    empty.mkdir()
    card = write_card(empty).read_text()
    assert "not trained yet" in card and "`pseudo.csv` not generated yet" in card and "none recorded yet" in card
    assert "Reliability set: not measured yet" in card and "pseudo labels not measured yet" in card
    assert "with both: not measured yet" in card and "nan" not in card
    assert not list(empty.glob(".partial-*"))


def test_card_discounts_a_reliability_check_of_another_label_configuration(copy):
    rel = json.loads((copy / "reliability.json").read_text())
    assert "does not count" not in write_card(copy).read_text()
    (copy / "reliability.json").write_text(json.dumps({**rel, "work": "work/pseudo-000000000000"}))
    assert "Measured under another label configuration (shards `work/pseudo-000000000000`)" in write_card(copy).read_text()


def test_data_summary_lists_the_panoptic_tables(root):
    from autobuild_lib.benchmarks.datasets import data_summary

    tables = data_summary(data_dir=root.parent)["tables"]
    name = root.name
    assert tables[f"{name}/pseudo"]["rows"] == SIZES["N_PSEUDO"] and tables[f"{name}/full"]["rows"] == SIZES["N_FULL"]
    for table, pq in (("pseudo", "pq"), ("full", "pq_full")):
        labels = tables[f"{name}/{table}"]["labels"]
        assert {"mean", "std", "min", "max"} <= set(labels[pq]) and labels["flops"]["min"] > 0
        assert {"pq_a", "pq_b", "miou", "ce"} <= set(labels)


def test_card_counts_the_pseudo_stage_under_way(copy):
    """Before ``pseudo.csv`` exists the card counts the finished benchmark architectures (not the
    reliability ones in the same shard folder) and gives their split-half SRCC."""
    (copy / "pseudo.csv").unlink()
    card = write_card(copy).read_text()
    n = SIZES["N_PSEUDO"]
    assert f"Under way: {n:,} of {gen.N_PSEUDO:,} benchmark architectures labelled in `work/pseudo-" in card
    assert "split-half SRCC over them: **" in card and f"over {n} architectures (" in card


def test_card_says_how_many_units_a_resumed_run_labelled(copy):
    """A resumed stage's wall time covers only its own units; the card says how many were done before."""
    runs = [json.loads(line) for line in (copy / "runs.jsonl").read_text().splitlines()]
    pseudo = next(r for r in runs if r["stage"] == "pseudo")
    resumed = {**pseudo, "done_before": 7, "done_now": 5}
    (copy / "runs.jsonl").write_text("\n".join(json.dumps(r) for r in [resumed if r is pseudo else r for r in runs]) + "\n")
    assert "(5 units; 7 labelled by runs cut off before they were logged)" in write_card(copy).read_text()
