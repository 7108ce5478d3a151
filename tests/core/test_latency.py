"""k-GNN latency predictor (autobuild_lib.core.latency) on a synthetic, structured latency.

The synthetic latency depends on the layer type through an irregular
(k, e) cost table, on the stage (a strong per-stage factor), on the first
layer of a stage (a downsampling surcharge) and on resolution^2, with 2 %
multiplicative noise.  Rankers that ignore the stage (SRCC ~0.82) or the
resolution (~0.77) fail the SRCC > 0.9 bar; predicting the mean fails the
MAE bar (its MAE is ~16 % of the mean latency).
"""
import os

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from autobuild_lib.core.latency import (
    LatencyGNN,
    load_latency_predictor,
    save_latency_predictor,
    train_latency_predictor,
)
from autobuild_lib.core.spaces.ofa import LAYER_TYPES, OFAArch, mbv3, pn

torch.set_num_threads(1)

N_ARCHS = 300
EPOCHS = 40
COST = dict(zip(LAYER_TYPES, np.random.default_rng(7).uniform(0.2, 2.0, len(LAYER_TYPES))))
STAGE = (3.0, 1.6, 1.0, 0.6, 0.35)


def synthetic_latency(arch: OFAArch) -> float:
    work = sum(COST[layer] * STAGE[u] * (1.5 if i == 0 else 1.0)
               for u, stage in enumerate(arch.stages) for i, layer in enumerate(stage))
    return (1.0 + work) * (arch.resolution / 224) ** 2


@pytest.fixture(scope="module")
def data():
    sp = mbv3()
    archs = [sp.sample(np.random.default_rng([0, i])) for i in range(N_ARCHS)]
    noise = np.random.default_rng(99).normal(0.0, 0.02, N_ARCHS)
    lat = np.array([synthetic_latency(a) for a in archs]) * (1.0 + noise)
    return sp, archs, lat


@pytest.fixture(scope="module")
def trained(data):
    sp, archs, lat = data
    return train_latency_predictor(sp, archs, lat, epochs=EPOCHS, seed=0, progress=False)


def test_learns_structured_latency(data, trained):
    sp, archs, lat = data
    r = trained
    # fixed 90/10 split covering every arch once
    assert len(r.test_idx) == 30 and len(r.train_idx) == 270
    assert sorted(np.concatenate([r.train_idx, r.test_idx]).tolist()) == list(range(N_ARCHS))
    # the reported metrics are the held-out ones, recomputed here
    pred = r.predict([archs[i] for i in r.test_idx])
    y = lat[r.test_idx]
    assert r.test_mae_ms == pytest.approx(np.abs(pred - y).mean(), rel=1e-9)
    assert r.test_srcc == pytest.approx(spearmanr(pred, y).statistic, rel=1e-9)
    mean_pred_mae = np.abs(y - lat[r.train_idx].mean()).mean()
    print(f"latency k-GNN: test SRCC {r.test_srcc:.3f}, MAE {r.test_mae_ms:.3f} ms "
          f"({r.test_mae_ms / lat.mean():.1%} of mean; mean-predictor {mean_pred_mae:.3f} ms), "
          f"train {r.train_wall_s:.1f} s")
    assert r.test_srcc > 0.9
    assert r.test_mae_ms < 0.08 * lat.mean()
    assert r.test_mae_ms < mean_pred_mae / 2
    assert r.train_wall_s > 0 and len(r.history) == EPOCHS
    assert r.history[-1] < r.history[0]
    # predictions are in ms, positive, one per arch; strings are accepted too
    all_pred = r.predict(archs[:5])
    assert all_pred.shape == (5,) and (all_pred > 0).all()
    np.testing.assert_array_equal(r.predict([sp.to_string(a) for a in archs[:5]]), all_pred)


def test_shuffled_latencies_do_not_rank(data):
    """Guard against leakage: with labels unrelated to the archs the held-out SRCC is low."""
    sp, archs, lat = data
    shuffled = np.random.default_rng(5).permutation(lat)
    r = train_latency_predictor(sp, archs, shuffled, epochs=EPOCHS, seed=0, progress=False)
    assert abs(r.test_srcc) < 0.6


def test_model_shape_and_sum_readout(data):
    from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph

    sp, archs, _ = data
    torch.manual_seed(0)
    model = LatencyGNN().eval()
    table = GraphTable([ofa_graph(sp, a) for a in archs[:7]], OFA_SCHEMA)
    out = model(table.batch())
    assert out.shape == (7,)
    # batching does not mix graphs: each graph alone gives the same output
    for i in range(7):
        torch.testing.assert_close(model(table.batch([i])), out[i:i + 1])
    # PN graphs (6 stages) go through the same model
    p = pn()
    assert model(GraphTable([ofa_graph(p, p.sample(np.random.default_rng(1)))], OFA_SCHEMA).batch()).shape == (1,)


def test_same_seed_identical_predictions(data):
    sp, archs, lat = data
    archs, lat = archs[:60], lat[:60]
    state = torch.random.get_rng_state()
    a = train_latency_predictor(sp, archs, lat, epochs=3, seed=4, progress=False)
    b = train_latency_predictor(sp, archs, lat, epochs=3, seed=4, progress=False)
    c = train_latency_predictor(sp, archs, lat, epochs=3, seed=5, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # global torch RNG untouched
    np.testing.assert_array_equal(a.test_idx, b.test_idx)
    np.testing.assert_array_equal(a.predict(archs), b.predict(archs))
    assert a.history == b.history
    assert not np.array_equal(a.predict(archs), c.predict(archs))


def test_save_load_round_trip(tmp_path, data, trained):
    _, archs, _ = data
    path = tmp_path / "lat.pt"
    save_latency_predictor(trained, path)
    assert os.listdir(tmp_path) == ["lat.pt"]  # no temp file left behind
    loaded = load_latency_predictor(path)
    np.testing.assert_array_equal(loaded.predict(archs), trained.predict(archs))
    np.testing.assert_array_equal(loaded.test_idx, trained.test_idx)
    np.testing.assert_array_equal(loaded.train_idx, trained.train_idx)
    assert (loaded.y_mean, loaded.y_std) == (trained.y_mean, trained.y_std)
    assert (loaded.test_mae_ms, loaded.test_srcc) == (trained.test_mae_ms, trained.test_srcc)
    assert loaded.space.name == "mbv3" and loaded.space.depths == trained.space.depths
    assert loaded.config == trained.config
    # overwriting an existing file works and still leaves no temp file
    save_latency_predictor(loaded, path)
    assert os.listdir(tmp_path) == ["lat.pt"]


def test_missing_and_corrupt_files(tmp_path, trained):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_latency_predictor(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_latency_predictor(garbage)
    good = tmp_path / "good.pt"
    save_latency_predictor(trained, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_latency_predictor(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*not a saved latency predictor"):
        load_latency_predictor(foreign)
    damaged = tmp_path / "damaged.pt"
    blob = torch.load(good, weights_only=True)
    del blob["state_dict"]["head.0.weight"]
    torch.save(blob, damaged)
    with pytest.raises(ValueError, match="damaged.pt"):
        load_latency_predictor(damaged)


@pytest.mark.parametrize("case, match", [
    ("length", "one value per arch"),
    ("zero", "positive"),
    ("negative", "positive"),
    ("nan", "NaN/inf"),
    ("inf", "NaN/inf"),
    ("few", "at least 10 archs"),
    ("resolution", r"archs\[3\].*resolution 200"),
    ("depth", r"archs\[3\].*stage 1 has 5 layers"),
    ("layer", r"archs\[3\].*\(9, 9\)"),
    ("type", r"archs\[3\].*expected an OFAArch"),
    ("string", r"archs\[3\].*'224\|k3e4'"),
    ("space", "OFASpace"),
    ("test_frac", "test_frac"),
])
def test_bad_input_raises(data, case, match):
    sp, archs, lat = data
    archs, lat = list(archs[:20]), lat[:20].copy()
    good = archs[3]
    if case == "length":
        lat = lat[:-1]
    elif case == "zero":
        lat[4] = 0.0
    elif case == "negative":
        lat[4] = -1.0
    elif case == "nan":
        lat[4] = np.nan
    elif case == "inf":
        lat[4] = np.inf
    elif case == "few":
        archs, lat = archs[:9], lat[:9]
    elif case == "resolution":
        archs[3] = OFAArch(200, good.stages)
    elif case == "depth":
        archs[3] = OFAArch(good.resolution, ((good.stages[0][0],) * 5,) + good.stages[1:])
    elif case == "layer":
        archs[3] = OFAArch(good.resolution, (((9, 9),) + good.stages[0][1:],) + good.stages[1:])
    elif case == "type":
        archs[3] = 42
    elif case == "string":
        archs[3] = "224|k3e4"
    elif case == "space":
        sp = object()
    with pytest.raises(ValueError, match=match):
        train_latency_predictor(sp, archs, lat, epochs=1, progress=False,
                                test_frac=1.5 if case == "test_frac" else 0.1)


def test_predict_rejects_invalid_arch(data, trained):
    sp, archs, _ = data
    with pytest.raises(ValueError, match=r"archs\[1\]"):
        trained.predict([archs[0], OFAArch(224, archs[0].stages[:4])])
    assert trained.predict([]).shape == (0,)
