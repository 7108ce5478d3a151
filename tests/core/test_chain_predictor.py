"""The chain fast path computes the same function as the PyG ``GATv2Conv`` path.

At fixed weights the predictions, every hop's graph embedding, the hop norms,
the Eq. 4 loss and all parameter gradients agree to 1e-5; after training with
the same seed the hop SRCCs and the prediction SRCC agree within 0.01.  The
same holds for the fused network (:class:`ChainNetwork`, the whole network
and the Eq. 4 loss in C++ with hand-written backward passes) and its trainer
:func:`train_fused`.
"""
import numpy as np
import pytest
import torch

from autobuild_lib.core.chain_network import ChainNetwork, ChainTable, FlatAdamW, rank_loss, train_fused
from autobuild_lib.core.chain_predictor import ChainNodes, chain_forward, chain_loss, is_chain_table, split_hops
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, make_data, ofa_graph, ofa_module_graph
from autobuild_lib.core.losses import AutoBuildLoss
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.spaces import mbv3, pn
from autobuild_lib.core.training import TrainConfig, flat_parameters, train_predictor


def _table(space, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    y = np.array([sum(k * e for st in a.stages for k, e in st) / a.n_layers for a in archs])
    y = y + rng.normal(scale=0.1, size=n)
    return GraphTable([ofa_graph(space, a) for a in archs], OFA_SCHEMA), y


def test_chain_detection():
    table, _ = _table(mbv3(), 20)
    assert is_chain_table(table)
    sp = pn()
    single = ofa_module_graph(sp, 0, ((3, 3),))  # one node, no edge
    assert is_chain_table(GraphTable([single, ofa_module_graph(sp, 1, ((5, 4), (7, 6)))], OFA_SCHEMA))
    g = ofa_graph(sp, sp.sample(np.random.default_rng(0)))
    branched = make_data(OFA_SCHEMA, g.x_cat.tolist(), g.x_num.tolist(), [(0, 1), (0, 2), (2, 3)]
                         + [(i, i + 1) for i in range(3, g.num_nodes - 1)])
    assert not is_chain_table(GraphTable([g, branched], OFA_SCHEMA))
    reversed_chain = make_data(OFA_SCHEMA, g.x_cat.tolist(), g.x_num.tolist(),
                               [(i + 1, i) for i in range(g.num_nodes - 1)])
    assert not is_chain_table(GraphTable([reversed_chain], OFA_SCHEMA))


def _perturbed_pair(seed: int = 7) -> tuple[AutoBuildPredictor, AutoBuildPredictor]:
    torch.manual_seed(seed)
    ref = AutoBuildPredictor(OFA_SCHEMA)
    with torch.no_grad():  # attention vectors and BN affine away from their init
        for conv, norm in zip(ref.convs, ref.norms):
            conv.att.normal_(0, 1.0)
            conv.bias.normal_(0, 0.1)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.2)
            norm.running_mean.normal_(0, 0.3)
            norm.running_var.uniform_(0.5, 2.0)
    fast = AutoBuildPredictor(OFA_SCHEMA)
    fast.load_state_dict(ref.state_dict())
    return ref.train(), fast.train()


@pytest.mark.parametrize("space,train", [(mbv3, True), (pn, True), (mbv3, False)])
def test_same_function_and_gradients_at_fixed_weights(space, train):
    table, y = _table(space(), 70, seed=3)
    idx = torch.as_tensor(np.random.default_rng(4).permutation(len(table))[:64])
    ys = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[idx]
    ref, fast = _perturbed_pair()
    ref.train(train)
    fast.train(train)
    pred_r, graph_r = ref(table.batch(idx))
    loss_r = AutoBuildLoss()(ys, pred_r, graph_r)
    loss_r.backward()
    nodes = ChainNodes.gather(table, idx)
    pred_f, pooled = chain_forward(fast, nodes, pool_all=True)
    for bf, br in zip(fast.buffers(), ref.buffers(), strict=True):  # BN running statistics alike
        torch.testing.assert_close(bf, br, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pred_f, pred_r, rtol=1e-5, atol=1e-5)
    for gf, gr in zip(split_hops(fast, pooled), graph_r, strict=True):
        torch.testing.assert_close(gf, gr, rtol=1e-5, atol=1e-5)
    pred_n, norms = chain_forward(fast, nodes)
    torch.testing.assert_close(pred_n, pred_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norms, torch.stack([g.abs().sum(1) for g in graph_r], 1), rtol=1e-5, atol=1e-5)
    loss_f = chain_loss(ys, pred_n, norms, hop_srcc=True)
    torch.testing.assert_close(loss_f, loss_r, rtol=1e-5, atol=1e-5)
    loss_f.backward()
    for (name, pf), pr in zip(fast.named_parameters(), ref.parameters(), strict=True):
        assert pr.grad.abs().sum() > 0, name
        torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_mse_only_loss_and_constant_labels():
    y = torch.randn(10)
    pred = torch.randn(10)
    norms = torch.rand(10, 5)
    assert torch.equal(chain_loss(y, pred, norms, hop_srcc=False), torch.nn.functional.mse_loss(pred, y))
    flat_y = torch.ones(10)  # no ranking signal: SRCC 0 as in AutoBuildLoss, not NaN
    got = chain_loss(flat_y, pred, norms, hop_srcc=True)
    ref = AutoBuildLoss()(flat_y, pred, list(norms.t().unsqueeze(2)))
    torch.testing.assert_close(got, ref)
    assert torch.isfinite(got)


@pytest.mark.parametrize("seed", [0, 3])
def test_training_same_srcc_as_pyg_path(seed):
    table, y = _table(mbv3(), 700, seed=seed)
    config = TrainConfig(epochs=40, seed=seed)  # the paper's lr 1e-4
    fast = train_predictor(table, y, config, progress=False, fast=True)
    slow = train_predictor(table, y, config, progress=False, fast=False)
    assert fast.metrics["n_test"] == slow.metrics["n_test"] == 70
    np.testing.assert_allclose(fast.metrics["srcc_hop"], slow.metrics["srcc_hop"], atol=0.01)
    assert abs(fast.metrics["srcc_pred"] - slow.metrics["srcc_pred"]) <= 0.01
    # trained, not a constant: the check compares learnt rankings
    assert min(slow.metrics["srcc_hop"][1:]) > 0.3
    assert len(fast.history) == len(slow.history) == 40
    np.testing.assert_allclose(fast.history, slow.history, rtol=1e-3)


# ----------------------------------------------------------------------------- the fused network
@pytest.mark.parametrize("path", ["autograd", "step"])
@pytest.mark.parametrize("space", [mbv3, pn])
def test_fused_network_same_function_and_gradients_at_fixed_weights(space, path):
    """ChainNetwork against the PyG GATv2Conv path, to 1e-5: as an autograd node under
    ``chain_loss``, and as the autograd-free :meth:`ChainNetwork.step` the trainer runs."""
    table, y = _table(space(), 70, seed=3)
    idx = torch.as_tensor(np.random.default_rng(4).permutation(len(table))[:64])
    ys = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[idx]
    ref, fast = _perturbed_pair()
    pred_r, graph_r = ref(table.batch(idx))
    loss_r = AutoBuildLoss()(ys, pred_r, graph_r)
    loss_r.backward()
    with flat_parameters(fast) as flat:
        net, nodes = ChainNetwork(fast, flat), ChainTable(table).gather(idx)
        if path == "autograd":
            pred_f, norms = net(nodes)
            torch.testing.assert_close(pred_f, pred_r, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(norms, torch.stack([g.abs().sum(1) for g in graph_r], 1),
                                       rtol=1e-5, atol=1e-5)
            loss_f = chain_loss(ys, pred_f, norms, hop_srcc=True)
            flat.grad.zero_()
            loss_f.backward()
        else:
            flat.grad.normal_()  # step overwrites the gradient
            loss_f = torch.tensor(net.step(nodes, ys))
        torch.testing.assert_close(loss_f, loss_r.detach(), rtol=1e-5, atol=1e-5)
        grads = [p.grad.clone() for p in fast.parameters()]
    for bf, br in zip(fast.buffers(), ref.buffers(), strict=True):  # BN running statistics and batch counts
        torch.testing.assert_close(bf, br, rtol=1e-5, atol=1e-5)
    for (name, _), gf, pr in zip(fast.named_parameters(), grads, ref.parameters(), strict=True):
        assert pr.grad.abs().sum() > 0, name
        torch.testing.assert_close(gf, pr.grad, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("hop_srcc", [True, False])
def test_rank_loss_same_value_and_gradients_as_chain_loss(hop_srcc):
    """The C++ Eq. 4 (torchsort's soft rank re-implemented) against chain_loss with autograd, to 1e-5,
    with ties in the labels and in a hop's norms."""
    gen = torch.Generator().manual_seed(5)
    y = torch.randint(0, 20, (96,), generator=gen).float() / 7  # ties
    pred = torch.randn(96, generator=gen, requires_grad=True)
    norms = (torch.rand(96, 5, generator=gen) * 40).round().div(8)  # ties
    norms[:, 1] = torch.rand(96, generator=gen) * 3  # values closer than 1: large soft-rank blocks
    norms.requires_grad_(True)
    want = chain_loss(y, pred, norms, hop_srcc)
    want.backward()
    loss, dpred, dnorms = rank_loss(y, pred.detach(), norms.detach(), hop_srcc)
    torch.testing.assert_close(loss, want.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dpred, pred.grad, rtol=1e-5, atol=1e-6)
    if hop_srcc:
        torch.testing.assert_close(dnorms, norms.grad, rtol=1e-5, atol=1e-6)
    else:  # MSE only: the norms get no gradient
        assert norms.grad is None and torch.equal(dnorms, torch.zeros_like(dnorms))


def test_flat_adamw_is_the_fused_optimiser_bit_for_bit():
    gen = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(500, generator=gen))
    b = torch.nn.Parameter(a.detach().clone())
    a.grad, b.grad = torch.zeros(500), torch.zeros(500)
    ref, ours = torch.optim.AdamW([a], lr=1e-3, weight_decay=1e-5, fused=True), FlatAdamW(b, 1e-3, 1e-5)
    for _ in range(30):
        g = torch.randn(500, generator=gen)
        a.grad.copy_(g)
        b.grad.copy_(g)
        ref.step()
        ours.step()
    assert torch.equal(a, b) and not torch.equal(a, b.grad)


def test_chain_table_gathers_what_chain_nodes_gathers():
    table, _ = _table(pn(), 60)
    idx = torch.as_tensor(np.random.default_rng(2).permutation(60))
    want, got = ChainNodes.gather(table, idx), ChainTable(table).gather(idx)
    for field in ("cat", "num", "follows", "ptr"):
        assert torch.equal(getattr(got, field), getattr(want, field)), field


def test_fused_network_rejects_a_foreign_flat_parameter_and_single_nodes():
    _, fast = _perturbed_pair()
    with pytest.raises(ValueError, match="flat parameter has 3 values"):
        ChainNetwork(fast, torch.nn.Parameter(torch.zeros(3)))
    table, _ = _table(mbv3(), 5)
    nodes = ChainNodes.gather(table, torch.arange(1))
    one_node = ChainNodes(nodes.cat[:1], nodes.num[:1], nodes.follows[:1], torch.tensor([0, 1]))
    with flat_parameters(fast) as flat, pytest.raises(ValueError, match="at least 2 nodes"):
        ChainNetwork(fast, flat)(one_node)


@pytest.mark.parametrize("seed", [0, 3])
def test_fused_training_same_srcc_as_pyg_path(seed):
    table, y = _table(mbv3(), 700, seed=seed)
    config = TrainConfig(epochs=40, seed=seed)
    fused = train_fused(table, y, config, progress=False)
    slow = train_predictor(table, y, config, progress=False, fast=False)
    np.testing.assert_array_equal(fused.test_idx, slow.test_idx)
    np.testing.assert_allclose(fused.metrics["srcc_hop"], slow.metrics["srcc_hop"], atol=0.01)
    assert abs(fused.metrics["srcc_pred"] - slow.metrics["srcc_pred"]) <= 0.01
    assert min(slow.metrics["srcc_hop"][1:]) > 0.3
    np.testing.assert_allclose(fused.history, slow.history, rtol=1e-3)


def test_fused_training_hands_other_graphs_to_the_pyg_path():
    sp = pn()
    g = ofa_graph(sp, sp.sample(np.random.default_rng(0)))
    branched = make_data(OFA_SCHEMA, g.x_cat.tolist(), g.x_num.tolist(), [(0, 1), (0, 2), (2, 3)]
                         + [(i, i + 1) for i in range(3, g.num_nodes - 1)])
    table = GraphTable([branched] * 20, OFA_SCHEMA)
    y = np.arange(20, dtype=float)
    config = TrainConfig(epochs=2, seed=1)
    a = train_fused(table, y, config, progress=False)
    b = train_predictor(table, y, config, progress=False)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
