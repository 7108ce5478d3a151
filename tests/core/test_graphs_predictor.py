import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from autobuild_lib.core.graphs import OFA_SCHEMA, Feature, GraphTable, make_data, ofa_graph, ofa_module_graph
from autobuild_lib.core.losses import AutoBuildLoss, soft_spearman
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.spaces import mbv3, pn


def test_sequence_graph_features():
    sp = mbv3()
    a = sp.from_string("208|k3e4,k5e6|k7e3,k3e3,k5e4|k3e6,k3e6|k5e3,k5e3,k5e3,k5e3|k7e6,k7e6")
    g = ofa_graph(sp, a)
    assert g.num_nodes == 13
    assert g.edge_index.tolist() == [list(range(12)), list(range(1, 13))]
    f = OFA_SCHEMA.features
    # node 2 = stage 2, layer 1, kernel 7, expansion 3
    assert f[0].values[g.x_cat[2, 0]] == 2 and f[1].values[g.x_cat[2, 1]] == 1
    assert f[4].values[g.x_cat[2, 4]] == 7 and f[3].values[g.x_cat[2, 3]] == 3
    assert f[2].values[g.x_cat[0, 2]] == "mbv3"
    assert torch.allclose(g.x_num, torch.full((13, 1), 0.5))


def test_pn_module_graph_puts_last_layer_in_stage_6():
    sp = pn()
    g = ofa_module_graph(sp, 4, ((3, 3), (5, 4), (7, 6)), resolution=192)
    stages = [OFA_SCHEMA.features[0].values[i] for i in g.x_cat[:, 0]]
    layers = [OFA_SCHEMA.features[1].values[i] for i in g.x_cat[:, 1]]
    assert stages == [5, 5, 6] and layers == [1, 2, 1]
    assert float(g.x_num.sum()) == 0.0


def test_graph_table_batch_matches_pyg_batch():
    sp = mbv3()
    rng = np.random.default_rng(0)
    graphs = [ofa_graph(sp, sp.sample(rng)) for _ in range(20)]
    table = GraphTable(graphs, OFA_SCHEMA)
    idx = [7, 3, 19, 0]
    ours = table.batch(idx)
    ref = Batch.from_data_list([graphs[i] for i in idx])
    assert torch.equal(ours.x_cat, ref.x_cat) and torch.equal(ours.edge_index, ref.edge_index)
    assert torch.equal(ours.batch, ref.batch) and torch.equal(ours.ptr, ref.ptr)


def test_bad_graph_input():
    with pytest.raises(ValueError, match="not in vocabulary"):
        OFA_SCHEMA.features[4].index(9)
    with pytest.raises(ValueError, match="kind must be"):
        Feature("x", "text")
    with pytest.raises(ValueError, match="out of range"):
        make_data(OFA_SCHEMA, [[0, 0, 0, 0, 0]], [[0.0]], [(0, 3)])
    with pytest.raises(ValueError, match="at least one graph"):
        GraphTable([], OFA_SCHEMA)


def test_predictor_exposes_hops_and_fe_scores():
    sp = mbv3()
    rng = np.random.default_rng(0)
    table = GraphTable([ofa_graph(sp, sp.sample(rng)) for _ in range(8)], OFA_SCHEMA)
    model = AutoBuildPredictor(OFA_SCHEMA, hidden=32, n_layers=4).eval()
    batch = table.batch()
    hs = model.node_embeddings(batch)
    assert len(hs) == 5 and hs[0].shape[1] == 6 and hs[1].shape[1] == 32
    assert (hs[0] >= 0).all()  # FE-MLP output passes through abs()
    pred, graph = model(batch)
    assert pred.shape == (8,) and len(graph) == 5 and graph[2].shape == (8, 32)
    scores = model.fe.scores()
    assert set(scores) == {"stage", "layer", "block", "expansion", "kernel", "resolution"}
    assert set(scores["kernel"]) == {3, 5, 7} and set(scores["resolution"]) == {192, 208, 224}
    with pytest.raises(ValueError, match="n_layers"):
        AutoBuildPredictor(OFA_SCHEMA, n_layers=0)


def test_fe_mlp_categories_do_not_interact():
    model = AutoBuildPredictor(OFA_SCHEMA).eval()
    x_cat = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 0, 2]])
    h0 = model.fe(x_cat, torch.zeros(2, 1))
    assert torch.equal(h0[0, :4], h0[1, :4]) and not torch.equal(h0[0, 4], h0[1, 4])


def test_soft_spearman_and_loss():
    y = torch.arange(20, dtype=torch.float32)
    assert float(soft_spearman(y * 3, y, 1e-3)) == pytest.approx(1.0, abs=1e-3)
    assert float(soft_spearman(-y, y, 1e-3)) == pytest.approx(-1.0, abs=1e-3)
    with pytest.raises(ValueError, match="equal 1-D"):
        soft_spearman(y, y[:5])
    pred = torch.zeros(20, requires_grad=True)
    embs = [(torch.stack([20 - y, 20 - y], 1) / 100).requires_grad_()]  # gaps < strength: soft regime
    full = AutoBuildLoss()(y, pred, embs)
    mse = AutoBuildLoss(hop_srcc=False)(y, pred, embs)
    assert float(full.detach()) > float(mse.detach()) == pytest.approx(float((y ** 2).mean()))
    full.backward()
    assert embs[0].grad is not None and embs[0].grad.abs().sum() > 0
