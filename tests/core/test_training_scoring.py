import numpy as np
import pandas as pd
import pytest
import torch

from autobuild_lib.core.construction import construct, top_k
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph, ofa_module_graph
from autobuild_lib.core.scoring import (
    hop_moments,
    label_moments,
    module_string,
    parse_module,
    run_autobuild,
    score_modules,
)
from autobuild_lib.core.spaces import mbv3, pn
from autobuild_lib.core.training import TrainConfig, load_result, predict, save_result, split_indices, train_predictor


def _small(space, n=160, seed=0):
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    y = np.array([np.mean([k for st in a.stages for k, _ in st]) for a in archs])
    return archs, GraphTable([ofa_graph(space, a) for a in archs], OFA_SCHEMA), y


@pytest.fixture(scope="module")
def small_run():
    space = mbv3()
    archs, table, y = _small(space)
    return space, archs, table, y, run_autobuild(space, archs, table, y,
                                                 TrainConfig(epochs=3, batch_size=64), progress=False)


def test_split_is_90_10_and_seeded():
    tr, te = split_indices(1000, 0.1, 3)
    assert len(tr) == 900 and len(te) == 100 and not set(tr) & set(te)
    assert np.array_equal(split_indices(1000, 0.1, 3)[1], te)


def test_same_seed_same_scores(small_run):
    space, archs, table, y, run = small_run
    again = run_autobuild(space, archs, table, y, TrainConfig(epochs=3, batch_size=64), progress=False)
    pd.testing.assert_frame_equal(run.scores, again.scores)
    assert run.result.metrics == again.result.metrics


def test_eq5_shift_by_hand(small_run):
    space, archs, table, y, run = small_run
    row = run.scores.iloc[12345]
    u, length, m = int(row.unit), int(row.layers), int(row.hop)
    assert m == length - 1
    g = GraphTable([ofa_module_graph(space, u - 1, parse_module(row.module))], OFA_SCHEMA)
    with torch.no_grad():
        raw = float(run.result.model.eval().node_embeddings(g.batch())[m][-1].abs().sum())
    assert raw == pytest.approx(row.raw, rel=1e-5)
    mu_h, sd_h = run.hop_moments.loc[m, ["mu", "sigma"]]
    mu_y, sd_y = run.label_moments.loc[(u, length), ["mu", "sigma"]]
    assert row.score == pytest.approx((raw - mu_h) * sd_y / sd_h + mu_y, rel=1e-5)


def test_label_moments_by_hand(small_run):
    space, archs, _, y, run = small_run
    lm = label_moments(space, archs, y)
    sel = [yi for a, yi in zip(archs, y) if len(a.stages[2]) == 4]
    assert lm.loc[(3, 4), "mu"] == pytest.approx(np.mean(sel))
    assert lm.loc[(3, 4), "n"] == len(sel)


def test_hop_moments_cover_all_nodes(small_run):
    _, _, table, _, run = small_run
    hm = hop_moments(run.result.model, table)
    assert list(hm.index) == [0, 1, 2, 3, 4] and (hm.sigma > 0).all()


def test_top_k_and_construct_243(small_run):
    space, *_, run = small_run
    per_unit = top_k(run.scores, 3)
    assert [len(p) for p in per_unit] == [3] * 5
    archs = construct(space, per_unit, resolution=208)
    assert len(archs) == 243 and len({space.to_string(a) for a in archs}) == 243
    best = run.scores[run.scores.unit == 1].score.max()
    assert run.scores[(run.scores.unit == 1) & (run.scores.module == module_string(per_unit[0][0]))
                      ].score.iloc[0] == best
    with pytest.raises(ValueError, match="k must be"):
        top_k(run.scores, 0)
    with pytest.raises(ValueError, match="need modules for 5"):
        construct(space, per_unit[:2])


def test_pn_scores_merged_unit():
    space = pn()
    archs, table, y = _small(space, n=120)
    run = run_autobuild(space, archs, table, y, TrainConfig(epochs=1), progress=False)
    counts = run.scores.groupby("unit").size().tolist()
    assert counts == [7371] * 4 + [66339]
    assert set(run.scores[run.scores.unit == 5].hop) == {2, 3, 4}


def test_save_load_predict(tmp_path, small_run):
    _, _, table, _, run = small_run
    save_result(run.result, tmp_path / "m.pt", label="acc")
    res, extra = load_result(tmp_path / "m.pt", OFA_SCHEMA)
    assert extra == {"label": "acc"}
    np.testing.assert_allclose(predict(res, table)[0], predict(run.result, table)[0], rtol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a predictor saved by `autobuild train`"):
        load_result(tmp_path / "bad.pt", OFA_SCHEMA)
    with pytest.raises(FileNotFoundError, match="autobuild train"):
        load_result(tmp_path / "none.pt", OFA_SCHEMA)


def test_bad_training_input(small_run):
    space, archs, table, y, run = small_run
    with pytest.raises(ValueError, match="one value per graph"):
        train_predictor(table, y[:10], TrainConfig(epochs=1), progress=False)
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN/inf at rows \\[3\\]"):
        train_predictor(table, bad, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="test_fraction"):
        TrainConfig(test_fraction=1.5)
    with pytest.raises(ValueError, match="resolution 100"):
        score_modules(run.result, space, run.hop_moments, run.label_moments, resolution=100)
    with pytest.raises(ValueError, match="labels"):
        label_moments(space, archs, y[:5])
