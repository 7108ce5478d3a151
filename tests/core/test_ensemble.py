"""Tests of SD graph encodings, deduplicated inference and the SD ensemble
(autobuild_lib.core.sd_graphs, autobuild_lib.core.dedup, autobuild_lib.core.ensemble)."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from autobuild_lib.core.construction import (
    constrained_top_k,
    hop_quota,
    per_unit_candidates,
    top_combinations,
    unconstrained_top_k,
)
from autobuild_lib.core.dedup import build_plan, plan_predict, single_thread
from autobuild_lib.core.ensemble import (
    Ensemble,
    ensemble_predict,
    module_name,
    sd_module_scores,
    train_ensemble,
)
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.sd_graphs import SD_SCHEMA, SDTableBuilder, sd_graph, sd_module_graph, sd_table
from autobuild_lib.core.search import exhaustive_search, iter_space
from autobuild_lib.core.spaces.sd import SDArch, SDModule, SDSpace, sd_unet_hw
from autobuild_lib.core.training import TrainConfig, TrainResult, predict

N_ARCHS, N_FOLDS, SEEDS = 60, 5, (0, 1)
CONFIG = TrainConfig(epochs=8, n_layers=6)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny batches: reference computations stall on a loaded 2-core machine otherwise."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def labelled(hw):
    """60 archs whose FID-like value is planted: -stage-4 channels + attention count + noise."""
    rng = np.random.default_rng(0)
    archs = [hw.sample(rng) for _ in range(N_ARCHS)]
    n_attn = np.array([sum(map(sum, a.inputs + a.outputs)) for a in archs])
    fid = np.array([-a.channels[3] / 256 for a in archs]) + 0.5 * n_attn + rng.normal(0, 0.3, N_ARCHS)
    return archs, sd_table(hw, archs), -fid  # higher is better


@pytest.fixture(scope="module")
def ensemble(labelled) -> Ensemble:
    _, table, y = labelled
    return train_ensemble(table, y, N_FOLDS, SEEDS, CONFIG)


@pytest.fixture(scope="module")
def scores(ensemble, hw) -> pd.DataFrame:
    return sd_module_scores(ensemble, hw)


def fake_scores(space: SDSpace, seed: int) -> pd.DataFrame:
    """Random scores in the layout of :func:`sd_module_scores`."""
    rng = np.random.default_rng(seed)
    rows = [{"unit": u, "module": m, "hop": space.n_module_nodes(u, m) - 1, "score": rng.normal()}
            for u in range(space.n_units) for m in space.modules(u)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------ encodings
def test_schema_vocabularies(sd, hw):
    names = [f.name for f in SD_SCHEMA.features]
    assert names == ["op", "channels", "section", "stage"]
    assert all(f.kind == "cat" for f in SD_SCHEMA.features)
    assert SD_SCHEMA.features[0].values == ("ResConv", "Attention", "Downsample", "Upsample")
    assert SD_SCHEMA.features[2].values == ("input", "middle", "output")
    assert SD_SCHEMA.features[3].values == (0, 1, 2, 3, 4)
    channels = SD_SCHEMA.features[1].values
    assert list(channels) == sorted(channels) and 128 in channels and 1024 in channels
    for space in (sd, hw):
        assert all(c in channels for u in range(8) for c in space.unit_channels(u))


def test_graph_encodings_match_space(sd):
    rng = np.random.default_rng(1)
    f = SD_SCHEMA.features
    for arch in [sd.base_arch()] + [sd.sample(rng) for _ in range(10)]:
        nodes, edges = sd.graph(arch)
        g = sd_graph(sd, arch)
        assert g.num_nodes == len(nodes) and g.x_num.shape == (len(nodes), 0)
        assert sorted(map(tuple, g.edge_index.T.tolist())) == sorted(edges)
        decoded = [{"op": f[0].values[r[0]], "channels": f[1].values[r[1]], "section": f[2].values[r[2]],
                    "stage": f[3].values[r[3]]} for r in g.x_cat.tolist()]
        assert decoded == nodes
    for unit in range(8):
        for module in sd.modules(unit):
            g = sd_module_graph(sd, unit, module)
            assert g.num_nodes == sd.n_module_nodes(unit, module)
            assert g.edge_index.tolist() == [list(range(g.num_nodes - 1)), list(range(1, g.num_nodes))]


def test_table_builder_matches_per_graph_tables(sd):
    rng = np.random.default_rng(2)
    archs = [sd.sample(rng) for _ in range(40)]
    ref = GraphTable([sd_graph(sd, a) for a in archs], SD_SCHEMA)
    ours = SDTableBuilder(sd)(archs)
    for key in ("node_ptr", "edge_ptr", "x_cat", "x_num", "edge_index", "edge_graph"):
        assert torch.equal(getattr(ours, key), getattr(ref, key)), key
    idx = [5, 0, 39]
    assert torch.equal(ours.batch(idx).edge_index, ref.batch(idx).edge_index)
    # a non-canonical arch (lists) is validated, then encoded
    a = archs[0]
    loose = SDArch(a.c_m, list(a.multipliers), [list(b) for b in a.inputs], a.outputs)
    assert torch.equal(sd_table(sd, [loose]).x_cat, sd_graph(sd, a).x_cat)


def test_table_builder_rejects_bad_archs(hw, sd):
    base = hw.base_arch()
    with pytest.raises(ValueError, match="C_m 128 not allowed"):
        sd_table(hw, [SDArch(128, base.multipliers, base.inputs, base.outputs)])
    with pytest.raises(ValueError, match="attention is only allowed"):
        sd_table(sd, [SDArch(256, (1, 2, 3, 4), ((False,), (True,), (True,), (True,)), base.outputs)])
    with pytest.raises(ValueError, match="at least one"):
        sd_table(sd, [])


def test_dedup_inference_matches_message_passing(sd):
    rng = np.random.default_rng(3)
    archs = [sd.sample(rng) for _ in range(300)]
    table = sd_table(sd, archs)
    torch.manual_seed(0)
    model = AutoBuildPredictor(SD_SCHEMA, n_layers=6)
    for norm in model.norms:  # non-trivial running statistics
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    result = TrainResult(model.eval(), CONFIG, np.arange(2), np.arange(0), 3.0, 2.0)
    plan = build_plan(table, 6)
    ids = plan.n_ids
    assert len(ids) == 7 and ids == sorted(ids) and ids[-1] < int(table.node_ptr[-1])
    ref, _ = predict(result, table)
    np.testing.assert_allclose(plan_predict(result, table, plan), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="plan covers 4 hops"):
        plan_predict(result, table, build_plan(table, 4))


# ------------------------------------------------------------- ensemble
def test_ensemble_fold_structure(ensemble, labelled):
    _, _, y = labelled
    assert len(ensemble.members) == N_FOLDS * len(SEEDS) == 10
    assert [(m.seed, m.fold) for m in ensemble.members] == [(s, f) for s in SEEDS for f in range(N_FOLDS)]
    for seed in SEEDS:
        members = [m for m in ensemble.members if m.seed == seed]
        held_out = np.concatenate([m.result.test_idx for m in members])
        assert sorted(held_out.tolist()) == list(range(N_ARCHS))  # each arch held out once per seed
        for m in members:
            assert not set(m.result.train_idx) & set(m.result.test_idx)
            assert len(m.result.train_idx) + len(m.result.test_idx) == N_ARCHS
            assert m.result.config.batch_size == len(m.result.train_idx)  # full batch
            assert m.result.config.hop_srcc and m.result.config.n_layers == 6
    folds = [tuple(m.result.test_idx) for m in ensemble.members]
    assert folds[:N_FOLDS] != folds[N_FOLDS:]  # each seed draws its own folds
    assert ensemble.hop_weights().shape == (10, 7) and ensemble.pred_weights().shape == (10,)
    for m in ensemble.members:
        assert np.allclose(m.srcc_hop, m.result.metrics["srcc_hop"]) and -1 <= m.srcc_pred <= 1


def test_ensemble_is_deterministic(labelled):
    _, table, y = labelled
    cfg = TrainConfig(epochs=3, n_layers=2)
    a, b = (train_ensemble(table, y, 2, (7,), cfg, hop_srcc=False) for _ in range(2))
    assert not a.hop_srcc and not a.members[0].result.config.hop_srcc
    for ma, mb in zip(a.members, b.members):
        assert np.array_equal(ma.result.test_idx, mb.result.test_idx)
        for (k, va), vb in zip(ma.result.model.state_dict().items(), mb.result.model.state_dict().values()):
            assert torch.equal(va, vb), k
        assert ma.result.metrics == mb.result.metrics


def test_module_scores_use_srcc_weights(ensemble, scores, hw):
    assert len(scores) == sum(hw.n_modules(u) for u in range(8))
    assert set(scores["hop"]) <= set(range(7))
    weights = ensemble.hop_weights()
    for _, row in scores.groupby("unit").head(2).iterrows():
        table = GraphTable([sd_module_graph(hw, row.unit, row.module)], SD_SCHEMA)
        expect = 0.0
        with torch.no_grad():
            for w, m in zip(weights, ensemble.members):
                h = m.result.model.eval().node_embeddings(table.batch())[row.hop]
                expect += w[row.hop] * float(h[-1].abs().sum())
        assert row.hop == hw.n_module_nodes(row.unit, row.module) - 1
        assert row["name"] == module_name(row.module)
        assert np.isclose(row.raw, expect, rtol=1e-5)


def test_scores_standardised(ensemble, scores, hw):
    per_unit = scores.groupby("unit")["score"]
    assert np.allclose(per_unit.mean(), 0, atol=1e-9)
    assert np.allclose(per_unit.std(ddof=0), 1)
    overall = sd_module_scores(ensemble, hw, standardize="all")["score"]
    assert np.isclose(overall.mean(), 0, atol=1e-9) and np.isclose(overall.std(ddof=0), 1)
    with pytest.raises(ValueError, match="standardize"):
        sd_module_scores(ensemble, hw, standardize="hop")


# ----------------------------------------------------------- candidates
def test_hop_quota():
    assert hop_quota([1, 2], 5) == {1: 2, 2: 3}  # stage 1: two 1-hop + three 2-hop
    assert hop_quota(range(2, 7), 5) == {2: 1, 3: 1, 4: 1, 5: 1, 6: 1}  # best of each size
    assert hop_quota([1, 2, 4], 5) == {1: 1, 2: 2, 4: 2}
    assert hop_quota(range(2, 7), 2) == {2: 0, 3: 0, 4: 0, 5: 1, 6: 1}
    with pytest.raises(ValueError, match="k >= 1"):
        hop_quota([1], 0)


def test_constrained_top_k_spreads_over_hops(sd):
    sc = fake_scores(sd, 0)
    for unit, quota in [(0, {1: 2, 2: 3}), (6, {h: 1 for h in range(2, 7)})]:
        assert sd.hop_sizes(unit) == tuple(quota)
        picked = constrained_top_k(sc, unit, 5)
        rows = sc[sc.unit == unit].set_index("module")
        assert len(picked) == 5 and rows.loc[picked, "score"].is_monotonic_decreasing
        for hop, q in quota.items():
            best = rows[rows.hop == hop].nlargest(q, "score").index
            assert [m for m in picked if rows.loc[m, "hop"] == hop] == list(best)
    plain = unconstrained_top_k(sc, 6, 5)
    assert plain == list(sc[sc.unit == 6].nlargest(5, "score")["module"])


def test_constrained_top_k_fills_short_hops():
    mods = [SDModule(256, (False,) * i) for i in range(1, 7)]
    sc = pd.DataFrame({"unit": 0, "module": mods, "hop": [1, 2, 2, 2, 2, 2],
                       "score": [0.0, 5.0, 4.0, 3.0, 2.0, 1.0]})
    # quota {1: 2, 2: 3}; hop 1 has one module, so the best remaining 2-hop one fills the slot
    assert constrained_top_k(sc, 0, 5) == [mods[1], mods[2], mods[3], mods[4], mods[0]]
    assert constrained_top_k(sc.head(3), 0, 5) == [mods[1], mods[2], mods[0]]
    with pytest.raises(ValueError, match="no scores for unit 3"):
        constrained_top_k(sc, 3)
    with pytest.raises(ValueError, match="k must be"):
        unconstrained_top_k(sc, 0, 0)


# --------------------------------------------------------- combinations
def brute_force(space, cands, sc, n):
    lookup = {(u, m): s for u, m, s in zip(sc.unit, sc.module, sc.score)}
    valid = [(sum(lookup[u, m] for u, m in enumerate(c)), c) for c in itertools.product(*cands)
             if space.constraint_ok(list(c))]
    return sorted(valid, key=lambda t: -t[0])[:n]


def test_top_combinations_match_brute_force(sd):
    sc = fake_scores(sd, 1)
    rng = np.random.default_rng(4)
    plans = [sd.split(sd.sample(rng)) for _ in range(3)]  # channels of three (C_m, combination)s
    cands = []
    for u in range(8):  # two modules at plan 0's channels, one more at any plan's
        first = [m for m in sd.modules(u) if m.channels == plans[0][u].channels]
        pick = [first[i] for i in rng.choice(len(first), 2, replace=False)]
        pool = [m for m in sd.modules(u) if m.channels in {p[u].channels for p in plans} and m not in pick]
        cands.append(pick + [pool[int(rng.integers(len(pool)))]])
    got = top_combinations(sd, cands, sc, n=4)
    ref = brute_force(sd, cands, sc, 4)
    assert len(got) == 4
    assert [sd.to_string(a) for a, _ in got] == [sd.to_string(sd.assemble(list(c))) for _, c in ref]
    assert np.allclose([s for _, s in got], [s for s, _ in ref])
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    for arch, _ in got:
        assert sd.constraint_ok(sd.split(arch))


def test_top_combinations_end_to_end(hw, scores):
    cands = per_unit_candidates(scores, hw, k=5)
    assert [len(c) for c in cands] == [min(5, hw.n_modules(u)) for u in range(8)]
    got = top_combinations(hw, cands, scores, n=4)
    ref = brute_force(hw, cands, scores, 4)
    assert np.allclose([s for _, s in got], [s for s, _ in ref])
    assert all(hw.constraint_ok(hw.split(a)) for a, _ in got)


def test_top_combinations_bad_input(sd):
    sc = fake_scores(sd, 2)
    base = sd.split(sd.base_arch())
    clash = [[m] for m in base]
    clash[1] = [SDModule(128, base[1].blocks)]  # stage 2 at 128 channels: no C_m=256 combination
    with pytest.raises(ValueError, match="no combination"):
        top_combinations(sd, clash, sc)
    with pytest.raises(ValueError, match="need candidates for 8 units"):
        top_combinations(sd, clash[:7], sc)
    with pytest.raises(ValueError, match="no score"):
        top_combinations(sd, [[m] for m in base], sc[sc.unit != 3])
    with pytest.raises(ValueError, match="n must be"):
        top_combinations(sd, [[m] for m in base], sc, n=0)


# ------------------------------------------------------ exhaustive search
def test_exhaustive_search_on_subsample(hw, labelled, ensemble):
    _, table, y = labelled
    # MSE-only members on the same folds (the fold split depends only on the seed)
    mse = train_ensemble(table, y, N_FOLDS, SEEDS, TrainConfig(epochs=3, n_layers=6), hop_srcc=False)
    assert [tuple(m.result.test_idx) for m in mse.members] == [tuple(m.result.test_idx)
                                                                for m in ensemble.members]
    got = exhaustive_search(hw, SDTableBuilder(hw), mse, n=4, max_archs=2000, seed=3, chunk=700)
    archs = list(iter_space(hw, 2000, seed=3))
    assert len(archs) == 2000 == len(set(archs))
    sub = sd_table(hw, archs)
    ref = sum(m.srcc_pred * predict(m.result, sub)[0] for m in mse.members)
    assert np.allclose(ensemble_predict(mse, sub), ref, rtol=1e-4, atol=1e-4)
    top = np.argsort(-ref, kind="stable")[:4]
    assert [a for a, _ in got] == [archs[i] for i in top]
    assert np.allclose([s for _, s in got], ref[top], rtol=1e-4, atol=1e-4)
    assert all(hw.validate(a) == a for a, _ in got)
    dead = replace(mse, members=[replace(m, srcc_pred=0.0) for m in mse.members])
    with pytest.raises(ValueError, match="cannot rank"):
        exhaustive_search(hw, SDTableBuilder(hw), dead, max_archs=10)


# ----------------------------------------------------------- bad inputs
def test_bad_ensemble_inputs(labelled):
    _, table, y = labelled
    with pytest.raises(ValueError, match="every held-out fold needs >= 2"):
        train_ensemble(table, y, n_folds=N_ARCHS + 1, config=CONFIG)
    with pytest.raises(ValueError, match="one value per graph"):
        train_ensemble(table, y[:-1], config=CONFIG)
    with pytest.raises(ValueError, match="NaN"):
        train_ensemble(table, np.where(np.arange(N_ARCHS) == 4, np.nan, y), config=CONFIG)
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        train_ensemble(table, y, n_folds=1, config=CONFIG)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        train_ensemble(table, y, seeds=(1, 1), config=CONFIG)
    with pytest.raises(ValueError, match="max_archs"):
        list(iter_space(sd_unet_hw(), 0))


def test_construct_sd_picks_valid_archs_per_method(hw, labelled):
    from autobuild_lib.core.construction import construct_sd

    archs, _, y = labelled
    res = construct_sd(hw, archs, y, n=3, methods=("autobuild", "unconstrained", "es"), seeds=(0,),
                       config=TrainConfig(epochs=3, n_layers=6), max_archs=500)
    assert set(res.picks) == {"autobuild", "unconstrained", "es"}
    for lst in res.picks.values():
        assert len(lst) == 3 and all(hw.validate(a) == a for a, _ in lst)
        assert [s for _, s in lst] == sorted((s for _, s in lst), reverse=True)
    assert len(res.ensemble.members) == 5 and not res.ensemble_mse.hop_srcc
    with pytest.raises(ValueError, match="unknown methods"):
        construct_sd(hw, archs, y, methods=("random",))


def test_train_ensemble_in_parallel_matches_serial(labelled):
    _, table, y = labelled
    cfg = TrainConfig(epochs=3, n_layers=2)
    a = train_ensemble(table, y, N_FOLDS, (0,), cfg)
    b = train_ensemble(table, y, N_FOLDS, (0,), cfg, n_jobs=2)
    assert np.array_equal(a.hop_weights(), b.hop_weights()) and np.array_equal(a.pred_weights(), b.pred_weights())


def test_train_member_repeats_its_ensemble_member(labelled):
    from autobuild_lib.core.ensemble import train_member

    _, table, y = labelled
    cfg = TrainConfig(epochs=3, n_layers=2)
    ens = train_ensemble(table, y, N_FOLDS, (1,), cfg)
    again = train_member(table, y, seed=1, fold=2, n_folds=N_FOLDS, config=cfg)
    assert np.array_equal(np.nan_to_num(np.array(again.metrics["srcc_hop"])), ens.members[2].srcc_hop)
