"""Op-level IR graphs of OFA architectures (autobuild_lib.core.ir)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from autobuild_lib.benchmarks.released import IRNodeRecord, IRRecord
from autobuild_lib.core import ir
from autobuild_lib.core.graphs import GraphTable, ofa_graph
from autobuild_lib.core.spaces import mbv3, pn
from autobuild_lib.core.spaces.ofa import OFAArch

MBV3_BASE = "224|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3"
PN_BASE = "208|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3"
OP_FEAT = ir.IR_SCHEMA.features[0]


def ops_of(g) -> Counter:
    return Counter(OP_FEAT.values[i] for i in g.x_cat[:, 0].tolist())


def decoded(g) -> np.ndarray:
    """Raw (C, H, W in; C, H, W out; kernel, stride, group) per node."""
    x = g.x_num.numpy()
    cols = [0, 1, 2, 4, 5, 6, 8, 9, 10]
    return np.rint(np.exp2(x[:, cols]) - 1).astype(int)


@pytest.fixture(scope="module")
def mbv3_graph():
    sp = mbv3()
    return ir.ir_graph(sp, sp.from_string(MBV3_BASE))


@pytest.fixture(scope="module")
def pn_graph():
    sp = pn()
    return ir.ir_graph(sp, sp.from_string(PN_BASE))


def test_mbv3_op_vocabulary(mbv3_graph) -> None:
    ops = ops_of(mbv3_graph)
    assert {"Conv", "Add", "Mul", "Div", "Relu", "Clip", "ReduceMean", "Gemm"} <= set(ops)
    assert "other" not in ops and "BatchNormalization" not in ops  # BN folded in eval export
    assert mbv3_graph.op_names == [OP_FEAT.values[i] for i in mbv3_graph.x_cat[:, 0].tolist()]
    # h-swish = Add, Clip, Mul, Div; h-sigmoid (SE) = Add, Clip, Div
    assert ops["Div"] == ops["Clip"]


def test_pn_uses_relu6_only(pn_graph) -> None:
    ops = ops_of(pn_graph)
    assert {"Conv", "Clip", "Add", "ReduceMean", "Gemm"} <= set(ops)
    assert ops["Div"] == ops["Relu"] == ops["Mul"] == 0


@pytest.mark.parametrize("graph", ["mbv3_graph", "pn_graph"])
def test_graph_is_a_topological_dataflow_dag(graph: str, request) -> None:
    g = request.getfixturevalue(graph)
    src, dst = g.edge_index
    assert bool((src < dst).all())
    assert len(set(zip(src.tolist(), dst.tolist()))) == g.edge_index.shape[1]
    sources = set(range(g.num_nodes)) - set(dst.tolist())
    sinks = set(range(g.num_nodes)) - set(src.tolist())
    assert sources == {0} and g.op_names[0] == "Conv"
    assert sinks == {g.num_nodes - 1} and g.op_names[-1] == "Gemm"
    n_stages = 5 if graph == "mbv3_graph" else 6
    assert g.stage[0] == 0 and g.stage[-1] == n_stages + 1
    assert sorted(set(g.stage.tolist())) == list(range(n_stages + 2))


def test_shapes_are_consistent(mbv3_graph) -> None:
    g, raw = mbv3_graph, decoded(mbv3_graph)
    assert float(g.x_num[:, [3, 7]].abs().sum()) == 0.0  # every shape known
    assert tuple(raw[0, :3]) == (3, 224, 224) and tuple(raw[0, 3:6])[1:] == (112, 112)
    assert torch.equal(g.channels, torch.tensor(raw[:, 3]))
    preds: dict[int, list[int]] = {}
    for a, b in g.edge_index.T.tolist():
        preds.setdefault(b, []).append(a)
    for b, ps in preds.items():  # the first data input comes from a predecessor
        assert any((raw[a, 3:6] == raw[b, :3]).all() for a in ps), (b, g.op_names[b])
    convs = [i for i, op in enumerate(g.op_names) if op == "Conv" and raw[i, 1] > 1]
    for i in convs:
        h_in, h_out, k, s = raw[i, 1], raw[i, 4], raw[i, 6], raw[i, 7]
        assert h_out == (h_in + 2 * (k // 2) - k) // s + 1
    strided = [i for i in convs if raw[i, 7] == 2]
    assert len(strided) == 1 + 4  # stem + first layer of stages 1, 2, 3 and 5
    depthwise = [i for i in convs if raw[i, 6] > 1 and raw[i, 8] == raw[i, 0]]
    assert len(depthwise) == 1 + 10  # first block + one per layer


def test_deeper_and_wider_archs() -> None:
    sp = mbv3()
    base = ir.ir_graph(sp, sp.from_string(MBV3_BASE))
    deeper = ir.ir_graph(sp, sp.from_string(MBV3_BASE.replace("224|k3e3,k3e3|", "224|k3e3,k3e3,k3e3|")))
    deepest = ir.ir_graph(sp, sp.from_string(MBV3_BASE.replace("224|k3e3,k3e3|", "224|k3e3,k3e3,k3e3,k3e3|")))
    assert base.num_nodes < deeper.num_nodes < deepest.num_nodes
    assert deepest.num_nodes - deeper.num_nodes == deeper.num_nodes - base.num_nodes
    wider = ir.ir_graph(sp, sp.from_string(MBV3_BASE.replace("k3e3", "k7e6")))
    assert wider.num_nodes == base.num_nodes  # (k, e) change sizes, not ops
    assert int(wider.channels.sum()) > int(base.channels.sum())
    kernels = decoded(wider)[:, 6]
    assert (kernels == 7).sum() == 10


def test_pn_deeper_has_more_nodes(pn_graph) -> None:
    sp = pn()
    deeper = ir.ir_graph(sp, sp.from_string("208|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3,k3e3|k3e3"))
    assert deeper.num_nodes > pn_graph.num_nodes


@pytest.mark.parametrize("name, text", [
    ("mbv3", "224|k3e3,k5e4,k3e3|k3e3,k3e3|k3e3,k3e3,k7e6,k3e3|k3e3,k3e3|k3e3,k3e4"),
    ("pn", "208|k3e3,k3e3|k5e6,k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k3e3,k3e3|k7e4"),
])
def test_stitched_graph_equals_whole_subnet_export(name: str, text: str) -> None:
    sp = {"mbv3": mbv3, "pn": pn}[name]()
    arch = sp.from_string(text)
    fast, full = ir.ir_graph(sp, arch), ir.ir_graph_full(sp, arch)
    assert fast.op_names == full.op_names
    for key in ("x_cat", "x_num", "edge_index", "channels"):
        assert torch.equal(fast[key], full[key]), key


def test_ofa_settings_mapping() -> None:
    sp = pn()
    arch = sp.from_string("224|k3e3,k5e4|k7e6,k3e3,k3e3|k3e3,k3e3|k3e3,k3e3,k3e3,k3e3|k3e3,k3e3|k5e6")
    s = ir.ofa_settings(sp, arch)
    assert s["d"] == [2, 3, 2, 4, 2, 1]
    assert len(s["ks"]) == len(s["e"]) == 21  # 5 x 4 elastic blocks + the one-block stage 6
    assert s["ks"][:5] == [3, 5, None, None, 7] and s["e"][:5] == [3, 4, None, None, 6]
    assert (s["ks"][20], s["e"][20]) == (5, 6)
    m = ir.ofa_settings(mbv3(), mbv3().from_string(MBV3_BASE))
    assert len(m["ks"]) == 20 and m["d"] == [2] * 5


def test_global_rng_untouched() -> None:
    sp = mbv3()
    state = torch.get_rng_state()
    ir.ir_graph(sp, sp.from_string(MBV3_BASE.replace("k3e3", "k5e4", 1)))
    assert torch.equal(state, torch.get_rng_state())


def test_invalid_arch_raises() -> None:
    sp = mbv3()
    with pytest.raises(ValueError, match="stages"):
        ir.ir_graph(sp, OFAArch(224, ((((3, 3),) * 2),) * 4))
    with pytest.raises(ValueError, match="layer"):
        ir.ir_graph(sp, OFAArch(224, (((4, 3), (3, 3)),) + (((3, 3), (3, 3)),) * 4))
    with pytest.raises(ValueError, match="resolution"):
        ir.ir_graph(sp, OFAArch(225, (((3, 3), (3, 3)),) * 5))


# ------------------------------------------------------------ storage
def test_save_load_round_trip(tmp_path: Path, mbv3_graph, pn_graph) -> None:
    graphs = [mbv3_graph, pn_graph, mbv3_graph]
    keys = ["mbv3:" + MBV3_BASE, "pn:" + PN_BASE, "again"]
    path = ir.save_ir_graphs(tmp_path / "ir.npz", graphs, keys)
    assert path.stat().st_size / len(graphs) < 2000
    loaded_keys, table = ir.load_ir_graphs(path)
    assert loaded_keys == keys and isinstance(table, GraphTable) and table.schema == ir.IR_SCHEMA
    ref = GraphTable(graphs, ir.IR_SCHEMA)
    for name in ("x_cat", "x_num", "edge_index", "node_ptr", "edge_ptr"):
        a, b = getattr(table, name), getattr(ref, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    b = table.batch([1])
    assert torch.equal(b.x_num, pn_graph.x_num) and torch.equal(b.edge_index, pn_graph.edge_index)


def test_save_rejects_bad_input(tmp_path: Path, pn_graph) -> None:
    with pytest.raises(ValueError, match="keys"):
        ir.save_ir_graphs(tmp_path / "a.npz", [pn_graph], ["a", "b"])
    with pytest.raises(ValueError, match="no graphs"):
        ir.save_ir_graphs(tmp_path / "a.npz", [], [])
    seq = ofa_graph(pn(), pn().from_string(PN_BASE))
    with pytest.raises(ValueError, match="not in IR_SCHEMA"):
        ir.save_ir_graphs(tmp_path / "a.npz", [pn_graph, seq], ["a", "b"])


def test_corrupt_files_name_the_file(tmp_path: Path, pn_graph) -> None:
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        ir.load_ir_graphs(bad)
    good = ir.save_ir_graphs(tmp_path / "good.npz", [pn_graph], ["k"])
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.npz"):
        ir.load_ir_graphs(cut)
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["edge_index"] = arrays["edge_index"] + 1000
    broken = tmp_path / "broken.npz"
    np.savez_compressed(broken, **arrays)
    with pytest.raises(ValueError, match="broken.npz.*inconsistent"):
        ir.load_ir_graphs(broken)
    with pytest.raises(ValueError, match="missing.npz"):
        ir.load_ir_graphs(tmp_path / "missing.npz")


# ------------------------------------------------------ released records
def node(i: str, op: str, ins: list, outs: list, attrs: dict | None = None) -> IRNodeRecord:
    return IRNodeRecord(i, f"{op}_{i}", op, tuple(ins), tuple(outs), attrs or {}, {})


def test_ir_from_record() -> None:
    nodes = (
        node("in", "input_dummy", [], [(1, 3, 8, 8)]),
        node("add", "Add", [(1, 16, 4, 4), (1, 16, 4, 4)], [(1, 16, 4, 4)]),  # listed before its inputs
        node("c0", "Conv", [(1, 3, 8, 8)], [(1, 16, 4, 4)],
             {"kernel_shape": [3, 3], "strides": [2, 2], "group": 1}),
        node("k", "Constant", [], [()]),
        node("foo", "FancyNewOp", [(1, 16, 4, 4)], [None]),
        node("dw", "conv", [None], [(1, 16, 4, 4)], {"kernel_shape": [5, 5], "group": 16}),
        node("gap", "GlobalAveragePool", [(1, 16, 4, 4)], [(1, 16, 1, 1)]),
        node("out", "output_dummy", [(1, 16, 1, 1)], []),
    )
    ids = {n.id: i for i, n in enumerate(nodes)}
    pairs = [("in", "c0"), ("c0", "foo"), ("foo", "dw"), ("k", "dw"), ("c0", "add"), ("dw", "add"),
             ("add", "gap"), ("gap", "out")]
    rec = IRRecord(0, None, None, {}, nodes, tuple((ids[a], ids[b]) for a, b in pairs))
    g = ir.ir_from_record(rec)
    assert g.op_names == ["Conv", "FancyNewOp", "conv", "Add", "GlobalAveragePool"]
    assert [OP_FEAT.values[i] for i in g.x_cat[:, 0].tolist()] == [
        "Conv", "other", "Conv", "Add", "GlobalAveragePool"]
    assert g.edge_index.T.tolist() == [[0, 1], [0, 3], [1, 2], [2, 3], [3, 4]]
    x = g.x_num
    assert x[1, 7] == 1 and x[1, 4:7].abs().sum() == 0  # FancyNewOp: output shape unknown
    assert x[2, 3] == 1 and x[2, 0:3].abs().sum() == 0  # dw conv: input shape unknown
    raw = decoded(g)
    assert tuple(raw[0]) == (3, 8, 8, 16, 4, 4, 3, 2, 1)
    assert tuple(raw[2, 6:]) == (5, 1, 16)  # Conv defaults: stride 1
    assert tuple(raw[4, 6:]) == (0, 0, 0)
    assert g.channels.tolist() == [16, 0, 16, 16, 16] and g.stage.tolist() == [-1] * 5


def test_ir_from_record_rejects_cycles_and_empty() -> None:
    nodes = (node("a", "Relu", [(1, 4)], [(1, 4)]), node("b", "Relu", [(1, 4)], [(1, 4)]))
    with pytest.raises(ValueError, match="cycle"):
        ir.ir_from_record(IRRecord(0, None, None, {}, nodes, ((0, 1), (1, 0))))
    with pytest.raises(ValueError, match="no op nodes"):
        ir.ir_from_record(IRRecord(1, None, None, {}, (node("in", "input_dummy", [], []),), ()))
