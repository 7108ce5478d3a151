"""Fast tests of autobuild_lib.core.interpret: FE-MLP scores, rooted subgraphs, IR decoding, module-score
tables and the Fig. 4 / Fig. 8 drawings."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from autobuild_lib.core import interpret
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.ir import IR_OPS, IR_SCHEMA, _data, _Op, ir_graph
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.scoring import module_string
from autobuild_lib.core.spaces import get_space
from autobuild_lib.core.spaces.ofa import OFAArch
from autobuild_lib.core.training import TrainConfig, train_predictor


@pytest.fixture(scope="module")
def mbv3():
    return get_space("mbv3")


@pytest.fixture(scope="module")
def seq(mbv3):
    """20 MBv3 sequence graphs and their architectures."""
    rng = np.random.default_rng(0)
    archs = [mbv3.sample(rng) for _ in range(20)]
    return archs, GraphTable([ofa_graph(mbv3, a) for a in archs], OFA_SCHEMA)


def _model(schema, seed=0):
    torch.manual_seed(seed)
    return AutoBuildPredictor(schema, hidden=8, n_layers=4).eval()


def _ir(ops, edges):
    """An IR-schema graph from ``(op, in_shape, out_shape, attrs)`` tuples."""
    return _data([_Op(o, (), i, s, a) for o, i, s, a in ops], edges, [-1] * len(ops), [-1] * len(ops))


# An MBConv-like block: expand 1x1 16->96, ReLU6, depthwise 5x5, project 1x1 96->16, residual Add.
BLOCK = [
    ("Conv", (1, 16, 28, 28), (1, 16, 28, 28), {"kernel_shape": [3, 3]}),      # 0: 3x3 conv (the block input)
    ("Conv", (1, 16, 28, 28), (1, 96, 28, 28), {"kernel_shape": [1, 1]}),      # 1: expand
    ("Clip", (1, 96, 28, 28), (1, 96, 28, 28), {}),                            # 2
    ("Conv", (1, 96, 28, 28), (1, 96, 28, 28), {"kernel_shape": [5, 5], "group": 96}),  # 3: depthwise
    ("Conv", (1, 96, 28, 28), (1, 16, 28, 28), {"kernel_shape": [1, 1]}),      # 4: project
    ("Add", (1, 16, 28, 28), (1, 16, 28, 28), {}),                             # 5: residual
    ("Add", (1, 16, 28, 28), (1, 16, 28, 28), {}),                             # 6: a second residual in a row
    ("Relu", None, None, {}),                                                  # 7: unknown shapes
]
BLOCK_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (5, 6), (0, 6), (6, 7)]


@pytest.fixture(scope="module")
def block():
    return GraphTable([_ir(BLOCK, BLOCK_EDGES)], IR_SCHEMA)


# ------------------------------------------------------------ FE-MLP scores
def test_fe_scores_ranks_follow_set_weights():
    model = _model(OFA_SCHEMA)
    emb, lin = model.fe.cat[3]  # expansion: (3, 4, 6)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[3.0, 0, 0], [-5.0, 0, 0], [1.0, 0, 0]]))
        lin.weight.copy_(torch.tensor([[1.0, 0, 0]]))
        lin.bias.zero_()
    fe = interpret.fe_scores(model)
    e = fe[fe.feature == "expansion"].set_index("value")
    assert e["score"].to_dict() == pytest.approx({3: 3.0, 4: 5.0, 6: 1.0})
    assert e["rank"].to_dict() == {3: 2, 4: 1, 6: 3}
    n_values = sum(len(f.values) for f in OFA_SCHEMA.categorical) + 3  # resolution: 192/208/224
    assert len(fe) == n_values and set(fe.feature) == set(OFA_SCHEMA.names)


def test_initial_predictor_is_the_training_start(seq):
    _, table = seq
    cfg = TrainConfig(epochs=1, lr=0.0, weight_decay=0.0, seed=5, hidden=8, n_layers=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    init = interpret.initial_predictor(cfg, OFA_SCHEMA)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the global RNG was not consumed
    trained = train_predictor(table, np.arange(len(table), dtype=float), cfg, progress=False).model
    for (name, a), b in zip(init.named_parameters(), trained.parameters()):
        assert torch.equal(a, b), name  # lr 0: the trained weights are the initial ones
    other = interpret.initial_predictor(TrainConfig(seed=6, hidden=8, n_layers=2), OFA_SCHEMA)
    assert not torch.equal(other.fe.cat[0][0].weight, init.fe.cat[0][0].weight)


def test_rank_of_ties_and_missing():
    s = pd.Series({"Add": 2.0, "Div": 5.0, "Relu": 2.0, "Clip": 1.0})
    assert interpret.rank_of(s, "Div") == 1
    assert interpret.rank_of(s, "Add") == interpret.rank_of(s, "Relu") == 2
    assert interpret.rank_of(s, "Clip") == 4
    with pytest.raises(KeyError):
        interpret.rank_of(s, "Mul")


def test_fe_score_table_orders_features_and_rejects_unknown():
    a, b = _model(OFA_SCHEMA, 0), _model(OFA_SCHEMA, 1)
    t = interpret.fe_score_table({"acc": a, "lat": b}, ["kernel", "resolution"])
    assert list(t.columns) == ["acc", "lat"]
    assert list(t.index) == [("kernel", 3), ("kernel", 5), ("kernel", 7),
                             ("resolution", 192), ("resolution", 208), ("resolution", 224)]
    assert t.loc[("kernel", 5), "lat"] == pytest.approx(b.fe.scores()["kernel"][5])
    with pytest.raises(ValueError, match="not in the schema"):
        interpret.fe_score_table({"acc": a}, ["colour"])
    with pytest.raises(ValueError):
        interpret.fe_score_table({}, ["kernel"])


def test_category_means_is_mean_fe_output(seq):
    _, table = seq
    model = _model(OFA_SCHEMA)
    got = interpret.category_means(model, table, chunk=7)
    b = table.batch()
    want = model.fe(b.x_cat, b.x_num).double().mean(dim=0).detach().numpy()
    assert list(got.index) == list(OFA_SCHEMA.names)
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-9)


# ---------------------------------------------------- op usage and families
def test_op_usage_by_group():
    g1 = _ir([("Conv", None, None, {}), ("Div", None, None, {}), ("Div", None, None, {})], [(0, 1), (1, 2)])
    g2 = _ir([("Conv", None, None, {}), ("Clip", None, None, {})], [(0, 1)])
    table = GraphTable([g1, g2, g2], IR_SCHEMA)
    u = interpret.op_usage(table, ["mbv3", "pn", "pn"])
    assert set(u.index) == {"Conv", "Div", "Clip"}  # ops that occur nowhere are dropped
    assert u.loc["Div", ("mbv3", "per_graph")] == 2 and u.loc["Div", ("pn", "graphs")] == 0
    assert u.loc["Clip", ("pn", "graphs")] == 1 and u.loc["Conv", ("mbv3", "graphs")] == 1
    assert list(interpret.op_usage(table).columns.get_level_values(0).unique()) == ["all"]
    with pytest.raises(ValueError, match="group labels"):
        interpret.op_usage(table, ["mbv3"])


def test_ir_families_from_space_or_name():
    frame = pd.DataFrame({"space": ["mbv3", None, None, "pn"],
                          "arch": ["224|x", "ofa_pn_3", "something", "ofa_mbv3_1"]})
    assert interpret.ir_families(frame).tolist() == ["mbv3", "pn", "unknown", "pn"]
    assert interpret.ir_families(frame[["arch"]]).tolist() == ["unknown", "pn", "unknown", "mbv3"]


# ------------------------------------------------------- rooted subgraphs
def test_receptive_field_follows_edge_direction():
    edges = np.array(BLOCK_EDGES)
    nodes, used = interpret.receptive_field(edges, 5, 1)
    assert nodes == [5, 0, 4] and used == [(0, 5), (4, 5)]
    nodes, used = interpret.receptive_field(edges, 5, 2)
    assert nodes == [5, 0, 4, 3]
    assert (3, 4) in used and (2, 3) not in used  # 2 is 3 hops away
    assert interpret.receptive_field(edges, 7, 0) == ([7], [])
    assert interpret.receptive_field(edges, 0, 4) == ([0], [])  # nothing flows into the first node
    with pytest.raises(ValueError):
        interpret.receptive_field(edges, 0, -1)


def test_node_norms_and_best_subgraph(seq):
    _, table = seq
    model = _model(OFA_SCHEMA)
    idx = [3, 7, 11]
    norms, graphs, local = interpret.node_norms(model, table, 2, idx=idx, chunk=2)
    want = model.node_embeddings(table.batch(idx))[2].abs().sum(dim=1).double().detach().numpy()
    np.testing.assert_allclose(norms, want, rtol=1e-6)
    sizes = np.diff(table.node_ptr.numpy())
    assert len(norms) == sizes[idx].sum()
    assert list(graphs[:sizes[3]]) == [3] * sizes[3] and list(local[:sizes[3]]) == list(range(sizes[3]))
    best = interpret.best_subgraph(model, table, 2, idx=idx)
    worst = interpret.best_subgraph(model, table, 2, idx=idx, worst=True)
    assert best.score == pytest.approx(norms.max()) and worst.score == pytest.approx(norms.min())
    assert best.graph in idx and best.nodes[0] == best.root
    assert best.nodes == interpret.receptive_field(interpret.graph_edges(table, best.graph), best.root, 2)[0]
    with pytest.raises(ValueError, match="out of range"):
        interpret.node_norms(model, table, 5)


def test_graph_edges_are_local(seq):
    _, table = seq
    e = interpret.graph_edges(table, 4)
    n = int(table.node_ptr[5] - table.node_ptr[4])
    assert e.tolist() == [[i, i + 1] for i in range(n - 1)]  # a sequence graph is a chain


# ---------------------------------------------------------- IR decoding
def test_ir_nodes_decodes_shapes_and_kinds(block):
    nodes = interpret.ir_nodes(block, 0)
    assert nodes["kind"].tolist() == ["conv", "pointwise", "Clip", "depthwise", "pointwise",
                                      "residual Add", "residual Add", "Relu"]
    assert nodes.loc[1, ["in_C", "out_C", "in_H", "kernel", "stride", "group"]].tolist() == [16, 96, 28, 1, 1, 1]
    assert nodes.loc[3, ["kernel", "group"]].tolist() == [5, 96]
    assert nodes.loc[7, ["in_C", "out_C"]].tolist() == [-1, -1]  # unknown shapes
    assert nodes["in_degree"].tolist() == [0, 1, 1, 1, 1, 2, 2, 1]


def test_pointwise_expansion_and_add_chain(block):
    nodes = interpret.ir_nodes(block, 0)
    edges = interpret.graph_edges(block, 0)
    assert interpret.pointwise_expansion(nodes, edges, 1) == pytest.approx(6.0)   # 16 -> 96
    assert interpret.pointwise_expansion(nodes, edges, 4) == pytest.approx(6.0)   # 96 -> 16, expand 16 -> 96
    assert np.isnan(interpret.pointwise_expansion(nodes, edges, 3))               # depthwise
    assert np.isnan(interpret.pointwise_expansion(nodes, edges, 4, max_steps=1))  # expand conv out of reach
    n, used = interpret.receptive_field(edges, 7, 4)
    sub = interpret.RootedSubgraph(0, 7, 4, 1.0, n, used)
    assert interpret.longest_op_chain(sub, nodes) == 2
    assert interpret.longest_op_chain(sub, nodes, kind="depthwise") == 1


def test_ir_nodes_and_positions_match_a_real_export(mbv3):
    # two layers per stage keeps the export short; every (k, e) occurs
    types = [(3, 3), (5, 4), (7, 6), (3, 6), (5, 3), (7, 4), (3, 4), (5, 6), (7, 3), (3, 3)]
    arch = OFAArch(208, tuple(tuple(types[2 * u:2 * u + 2]) for u in range(5)))
    g = ir_graph(mbv3, arch)
    table = GraphTable([g], IR_SCHEMA)
    nodes = interpret.ir_nodes(table, 0)
    assert nodes["op"].tolist() == [IR_OPS[i] for i in g.x_cat[:, 0].tolist()]
    known = nodes["out_C"].to_numpy() >= 0
    np.testing.assert_array_equal(nodes["out_C"].to_numpy()[known], g.channels.numpy()[known])
    pos = interpret.ir_positions(mbv3, arch, len(nodes), nodes["op"].tolist())
    assert pos["stage"].tolist() == g.stage.tolist()
    in_stage = pos[(pos.stage >= 1) & (pos.stage <= len(arch.stages))]
    for row in in_stage.drop_duplicates(["stage", "layer"]).itertuples():
        assert (row.k, row.e) == arch.stages[row.stage - 1][row.layer]
    # every expand / project conv of a layer reads the layer's e from channels; squeeze-excite convs (1x1 maps) do not
    edges = interpret.graph_edges(table, 0)
    pw = [v for v in range(len(nodes)) if nodes.kind[v] == "pointwise" and 1 <= pos.stage[v] <= len(arch.stages)]
    spatial = [v for v in pw if nodes.in_H[v] > 1]
    assert len(spatial) == 2 * arch.n_layers and len(pw) > len(spatial)  # MBv3 has SE in some stages
    for v in spatial:
        assert interpret.pointwise_expansion(nodes, edges, v) == pytest.approx(pos.e[v], abs=0.3)
    assert all(np.isnan(interpret.pointwise_expansion(nodes, edges, v)) for v in set(pw) - set(spatial))
    assert interpret.ir_positions(mbv3, arch, n_nodes=len(nodes) + 1) is None
    assert interpret.ir_positions(mbv3, arch, ops=["Conv"] * len(nodes)) is None


# ------------------------------------------------------- FE-MLP vs the data
def test_value_shares_and_effects(mbv3, seq):
    archs, table = seq
    shares = interpret.value_shares(table, "expansion")
    assert list(shares.columns) == [3, 4, 6]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    a = archs[0]
    layers = [layer for st in a.stages for layer in st]
    assert shares.loc[0, 6] == pytest.approx(sum(e == 6 for _, e in layers) / len(layers))
    res = interpret.value_shares(table, "resolution")
    assert res.to_numpy().tolist() == [[float(a.resolution == r) for r in (192, 208, 224)] for a in archs]
    y = np.array([sum(e == 6 for st in a.stages for _, e in st) / a.n_layers for a in archs])
    eff = interpret.value_effects(table, y, ["expansion", "stage"])
    assert eff.loc[("expansion", 6), "effect"] == pytest.approx(1.0)
    assert eff.loc[("expansion", 3), "effect"] < 0
    assert np.isnan(eff.loc[("stage", 6), "effect"]) and eff.loc[("stage", 6), "share"] == 0  # MBv3 has no stage 6
    sub = interpret.value_effects(table, y, ["expansion"], idx=np.arange(10))
    assert sub.loc[("expansion", 6), "effect"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not in the schema"):
        interpret.value_shares(table, "colour")
    with pytest.raises(ValueError, match="labels"):
        interpret.value_effects(table, y[:-1], ["kernel"])


def test_value_shares_numeric_without_display_values(block):
    with pytest.raises(ValueError, match="display values"):
        interpret.value_shares(block, "input_shape")
    ops = interpret.value_shares(block, "op")
    assert ops.loc[0, "Add"] == pytest.approx(2 / 8) and ops.loc[0, "Mul"] == 0


def test_top_value_agreement():
    idx = pd.MultiIndex.from_tuples([("kernel", 3), ("kernel", 5), ("kernel", 7), ("stage", 6), ("layer", 1)])
    scores = pd.Series([0.1, 0.2, 0.9, 5.0, 1.0], index=idx)
    effects = pd.Series([-0.5, 0.1, 0.4, np.nan, 0.3], index=idx)
    t = interpret.top_value_agreement(scores, effects)
    assert list(t.index) == ["kernel"]  # stage: NaN effect dropped; layer: a single value is no comparison
    row = t.loc["kernel"]
    assert row["top FE-MLP value"] == 7 and row["its data effect"] == pytest.approx(0.4)
    assert row["helps"] and row["agree"] and row["chance"] == pytest.approx(2 / 3)
    t = interpret.top_value_agreement(scores, pd.Series([0.5, 0.1, -0.4, np.nan, 0.3], index=idx))
    row = t.loc["kernel"]
    assert not row["helps"] and not row["agree"] and row["top data value"] == 3


# ------------------------------------------------ module scores (Table 2, Eq. 5)
def _scores():
    """Two units; raw grows with length, the shift reorders unit 2."""
    rows = []
    for unit in (1, 2):
        for ln, raws, shifted in ((2, [1.0, 2.0], [70.0, 75.0]), (3, [5.0, 6.0], [71.0, 80.0 if unit == 2 else 72.0])):
            for j, (r, s) in enumerate(zip(raws, shifted)):
                mod = module_string(((3 + 2 * j, 3),) * ln)
                rows.append({"unit": unit, "module": mod, "layers": ln, "hop": ln - 1, "raw": r, "score": s})
    return pd.DataFrame(rows)


def test_normal_str_and_table2():
    assert interpret.normal_str(2.2449, 0.391) == "N(2.24, 0.39)"
    assert interpret.normal_str(np.nan, 1.0) == "n/a"
    hm = pd.DataFrame({"mu": [2.24, 13.83], "sigma": [0.39, 7.14]}, index=pd.Index([0, 1], name="hop"))
    assert interpret.table2_hops(hm).iloc[:, 0].tolist() == ["N(2.24, 0.39)", "N(13.83, 7.14)"]
    lm = pd.DataFrame({"n": [3, 1, 4], "mu": [77.0, 77.5, 78.0], "sigma": [0.8, np.nan, 0.7]},
                      index=pd.MultiIndex.from_tuples([(1, 2), (1, 3), (2, 2)], names=["unit", "layers"]))
    t = interpret.table2_labels(lm)
    assert list(t.index) == ["u=1", "u=2"] and list(t.columns) == ["l=2", "l=3"]
    assert t.loc["u=1", "l=2"] == "N(77.00, 0.80)" and t.loc["u=1", "l=3"] == "n/a" and t.loc["u=2", "l=3"] == "-"


def test_shift_summary_counts_top_k():
    s = interpret.shift_summary(_scores(), k=2)
    assert s.loc[(1, 3), "in raw top-2"] == 2 and s.loc[(1, 2), "in raw top-2"] == 0
    assert s.loc[(1, 2), "in shifted top-2"] == 1 and s.loc[(1, 3), "in shifted top-2"] == 1  # 75 beats 71
    assert s.loc[(2, 3), "in shifted top-2"] == 1
    assert s.loc[(1, 3), "raw mean"] == pytest.approx(5.5) and s.loc[(2, 2), "shifted mean"] == pytest.approx(72.5)
    with pytest.raises(ValueError):
        interpret.shift_summary(_scores(), 0)


def test_extreme_modules_both_directions():
    sc = _scores()
    hi = interpret.extreme_modules(sc, n=1).set_index(["unit", "which"])
    assert hi.loc[(2, "best"), "score"] == 80.0 and hi.loc[(2, "worst"), "score"] == 70.0
    assert hi.loc[(1, "best"), "score"] == 75.0
    lo = interpret.extreme_modules(sc, n=2, maximize=False)
    best2 = lo[(lo.unit == 2) & (lo.which == "best")]
    assert best2["score"].tolist() == [70.0, 71.0] and best2["rank"].tolist() == [1, 2]
    with pytest.raises(ValueError):
        interpret.extreme_modules(sc, n=0)


def test_drawings_run_and_draw(block):
    fig, axes = plt.subplots(1, 3)
    ext = interpret.extreme_modules(_scores())
    interpret.draw_extremes(axes[0], ext, title="acc")
    assert len(axes[0].patches) == sum(len(m.split(",")) for m in ext["module"])  # one block per layer
    end = interpret.draw_module(axes[1], ((3, 3), (7, 6)), label="m")
    assert end > 0 and len(axes[1].patches) == 2
    nodes = interpret.ir_nodes(block, 0)
    n, used = interpret.receptive_field(interpret.graph_edges(block, 0), 6, 2)
    interpret.draw_subgraph(axes[2], interpret.RootedSubgraph(0, 6, 2, 3.5, n, used), nodes, extra={6: "s4 e6"})
    texts = [t.get_text() for t in axes[2].texts]
    assert any("residual Add" in t and "s4 e6" in t for t in texts) and len(texts) == len(n)
    plt.close(fig)
