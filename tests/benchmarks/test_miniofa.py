"""Mini-OFA supernet training, evaluation and reliability (autobuild_lib.benchmarks.miniofa); fast tests only."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from autobuild_lib.benchmarks.miniofa import (
    RES_MAP,
    MiniData,
    SupernetConfig,
    Trainer,
    build_data,
    build_supernet,
    evaluate_subnet,
    make_canvases,
    measure_reliability,
    space_of,
    split_halves,
)
from autobuild_lib.core.spaces.ofa import OFAArch

TINY = dict(width_mult=0.25, batch_size=4, total_steps=10, n_train=40, n_calib=8, n_heldout=8, seed=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Elastic OFA layers are bound by per-op overhead: extra threads only oversubscribe the CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def fake_fmnist(n_train: int = 100, n_test: int = 40) -> dict[str, torch.Tensor]:
    """Train item i is a constant image of odd value 2i+1, test item j of even value 2j+2."""
    tr = torch.arange(n_train, dtype=torch.uint8).mul(2).add(1)
    te = torch.arange(n_test, dtype=torch.uint8).mul(2).add(2)
    return {"train_images": tr[:, None, None].expand(-1, 28, 28).clone(),
            "train_labels": torch.arange(n_train) % 10,
            "test_images": te[:, None, None].expand(-1, 28, 28).clone(),
            "test_labels": torch.arange(n_test) % 10}


@functools.cache
def tiny_data(cfg: SupernetConfig) -> MiniData:
    g = torch.Generator().manual_seed(0)
    fm = {"train_images": torch.randint(0, 256, (60, 28, 28), dtype=torch.uint8, generator=g),
          "train_labels": torch.arange(60) % 10,
          "test_images": torch.randint(0, 256, (12, 28, 28), dtype=torch.uint8, generator=g),
          "test_labels": torch.arange(12) % 10}
    return build_data(cfg, fm)


def test_canvases_deterministic_and_shaped():
    fm = fake_fmnist()
    a = make_canvases(fm["train_images"], fm["train_labels"], 0, "train")
    b = make_canvases(fm["train_images"], fm["train_labels"], 0, "train")
    c = make_canvases(fm["train_images"], fm["train_labels"], 1, "train")
    assert a[0].shape == (100, 56, 56) and a[0].dtype == torch.uint8
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], fm["train_labels"])
    assert not torch.equal(a[0], c[0])
    # the whole item is on the canvas: its value fills at least a 28x28 area
    for i in range(5):
        assert int((a[0][i] == 2 * i + 1).sum()) >= 28 * 28 - 3 * 14 * 14


def test_canvases_use_only_their_own_split():
    fm = fake_fmnist()
    cfg = SupernetConfig(n_train=60, n_calib=15, n_heldout=20, seed=5)
    d = build_data(cfg, fm)
    train_vals = set(range(1, 256, 2)) | {0}
    test_vals = set(range(2, 256, 2)) | {0}
    pools = {"train": d.train_x, "calib": d.calib_x, "heldout": d.eval_x[d.eval_source == 0]}
    seen = {}
    for name, x in pools.items():
        vals = set(torch.unique(x).tolist())
        assert vals <= train_vals, name
        seen[name] = vals - {0}
    # train, calibration and held-out pools draw on disjoint items
    assert not (seen["train"] & seen["calib"]) and not (seen["train"] & seen["heldout"])
    assert not (seen["calib"] & seen["heldout"])
    test_x = d.eval_x[d.eval_source == 1]
    assert test_x.shape[0] == 40 and set(torch.unique(test_x).tolist()) <= test_vals
    assert d.train_x.shape[0] == 60 and d.calib_x.shape[0] == 15 and d.eval_x.shape[0] == 60
    ia, ib = split_halves(d)
    assert len(ia) + len(ib) == 60 and not set(ia) & set(ib)


def test_tiny_supernet_trains_and_evaluates(tmp_path):
    cfg = SupernetConfig(**TINY)
    data = tiny_data(cfg)
    tr = Trainer(cfg, data, tmp_path / "ck.pt")
    out = tr.train(max_steps=2, progress=False)
    assert out["step"] == 2 and (tmp_path / "ck.pt").exists()
    assert not list(tmp_path.glob("*.tmp*"))
    sp = space_of("mbv3")
    arch = sp.sample(np.random.default_rng(0))
    r = evaluate_subnet(tr.net, sp, arch, data)
    assert 0.0 <= r["acc"] <= 100.0 and np.isfinite(r["ce"])
    assert r["correct"].shape == (data.eval_x.shape[0],) and r["resolution"] == RES_MAP[arch.resolution]
    rel = measure_reliability(tr.net, sp, data, n_archs=2, progress=False)
    assert len(rel["rows"]) == 2 and {"srcc_split_acc", "srcc_acc_depth", "acc_std"} <= set(rel)


@pytest.mark.parametrize("space", ["mbv3", "pn"])
def test_fast_evaluation_matches_batchwise_unfolded(space):
    """The labelling speed-ups (inputs prepared once, BNs folded) compute the same function."""
    from autobuild_lib.benchmarks.miniofa.supernet import extract_subnet, fold_batchnorm, recalibrate_bn, to_input

    cfg = SupernetConfig(**{**TINY, "space": space})
    net, data, sp = build_supernet(cfg), tiny_data(cfg), space_of(space)
    arch = sp.sample(np.random.default_rng(3))
    sub, r = extract_subnet(net, sp, arch)
    recalibrate_bn(sub, data.calib_x, r)
    x = to_input(data.eval_x[:7], r)
    assert torch.equal(data.eval_inputs(r)[:7], x)  # per-image ops: whole set == batch
    with torch.no_grad():
        want = sub(x)
        got = fold_batchnorm(sub)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorm(sub).modules())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_acc_unit_halves_average_to_acc(tmp_path, monkeypatch):
    from autobuild_lib.benchmarks.miniofa import labels

    cfg = SupernetConfig(**TINY)
    path = labels.save_supernet(build_supernet(cfg), cfg, tmp_path / "supernet-mbv3.pt")
    data = tiny_data(cfg)
    monkeypatch.setattr(labels, "build_data", lambda _cfg: data)
    labels._loaded.cache_clear()
    sp = space_of("mbv3")
    row = labels.acc_unit(str(path), sp.to_string(sp.sample(np.random.default_rng(1))))
    labels._loaded.cache_clear()
    ia, ib = split_halves(data)
    assert row["acc"] == pytest.approx((len(ia) * row["acc_a"] + len(ib) * row["acc_b"]) / (len(ia) + len(ib)))
    assert {"acc", "acc_a", "acc_b", "ce", "flops_mini"} <= set(row)


def test_checkpoint_resume_restores_state(tmp_path):
    cfg = SupernetConfig(**TINY)
    data = tiny_data(cfg)
    straight = Trainer(cfg, data)
    straight.train(max_steps=2, progress=False)
    first = Trainer(cfg, data, tmp_path / "ck.pt")
    first.train(max_steps=1, progress=False)
    resumed = Trainer(cfg, data, tmp_path / "ck.pt")
    assert resumed.step == 1
    for (k, v), w in zip(first.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(v, w), k
    resumed.train(max_steps=1, progress=False)
    assert resumed.step == 2
    for (k, v), w in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k
    other = dataclasses.replace(cfg, seed=4)
    with pytest.raises(ValueError, match="different config"):
        Trainer(other, data, tmp_path / "ck.pt")


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown space"):
        space_of("resnet")
    with pytest.raises(ValueError, match="unknown space"):
        SupernetConfig(space="resnet")
    with pytest.raises(ValueError):
        SupernetConfig(stem_stride=3)
    with pytest.raises(ValueError):
        make_canvases(torch.zeros(4, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), 0, "x")
    cfg = SupernetConfig(**TINY)
    net = build_supernet(cfg)
    data = tiny_data(cfg)
    sp = space_of("mbv3")
    good = sp.sample(np.random.default_rng(0))
    for bad in (OFAArch(200, good.stages), OFAArch(224, good.stages[:4]),
                OFAArch(224, ((( 9, 3),) * 2,) + good.stages[1:]), "224|k3e3"):
        with pytest.raises(ValueError):
            evaluate_subnet(net, sp, bad, data)


def test_split_half_by_size_tracks_label_noise():
    from autobuild_lib.benchmarks.miniofa.reliability import split_half_by_size

    rng = np.random.default_rng(0)
    p = np.linspace(0.5, 0.9, 30)[:, None]                      # 30 subnets, true accuracy spread
    correct = (rng.random((30, 4000)) < p).astype(np.int8)       # per-image Bernoulli outcomes
    halves = (np.arange(0, 4000, 2), np.arange(1, 4000, 2))
    t = split_half_by_size(correct, halves, [40, 400, 4000], n_draws=5)
    assert list(t["n_eval"]) == [40, 400, 4000]
    assert t["srcc_mean"].is_monotonic_increasing                # more images -> less noise
    assert t["srcc_mean"].iloc[-1] > 0.95 and t["srcc_mean"].iloc[0] < 0.9
    with pytest.raises(ValueError, match="per half"):
        split_half_by_size(correct, halves, [10000])


def test_distill_switch_changes_only_the_non_largest_losses():
    cfg = SupernetConfig(**TINY)
    data = tiny_data(cfg)
    kd, ce = (Trainer(dataclasses.replace(cfg, distill=d), data).train_step() for d in (True, False))
    assert kd["loss_max"] == pytest.approx(ce["loss_max"])      # same step, same largest subnet, same CE
    assert kd["loss_min"] != pytest.approx(ce["loss_min"])      # KD target vs true labels
    assert SupernetConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "distill"}) == cfg  # old configs load
