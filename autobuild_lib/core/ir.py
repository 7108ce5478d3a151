"""Op-level IR graphs of OFA architectures (paper Sec. 5.1 Fig. 3, Sec. 7.6 Fig. 8).

Nodes are the primitive ops of an ONNX export of the ImageNet-scale static
subnet; edges are the data-flow edges between them.  Graph inputs,
parameters/initializers and constant producers (``Constant`` nodes, the
``Identity`` nodes the exporter adds for shared initializers) are not nodes.

Subnets come from the installed ``ofa`` package: ``OFAMobileNetV3(width_mult=1.2)``
and ``OFAProxylessNASNets(width_mult=1.3)``, both with ``ks_list=[3, 5, 7]``,
``expand_ratio_list=[3, 4, 6]``, ``depth_list=[2, 3, 4]``, randomly initialised
(weights do not change the IR).  How our :class:`OFAArch` maps onto them:

* Both supernets start with a fixed stem, ``first_conv`` (3x3, stride 2) and
  ``blocks[0]`` (an MBConv with e=1, k=3), which is not part of the search space.
* MBv3: ``block_group_info`` has 5 elastic stages of up to 4 blocks -- our 5 stages.
* PN: ``block_group_info`` has 6 elastic stages, the last with exactly one
  block -- our 6 stages, stage 6 always one layer.
* ``ks``/``e`` are lists over ``blocks[1:]``: layer j of stage u sets entry
  ``block_group_info[u][j] - 1``; entries of inactive blocks stay ``None``.
  ``d`` lists the stage depths.

Export: the TorchScript-based ``torch.onnx.export(dynamo=False)``, opset 13,
eval mode, so BatchNorm is folded into Conv (no ``BatchNormalization`` node).
OFA writes h-swish as ``x * relu6(x + 3) / 6`` and h-sigmoid as
``relu6(x + 3) / 6``, which export as the primitive ops Add, Clip, Mul, Div;
squeeze-excite adds ReduceMean, Conv, Relu; global pooling is ``x.mean(3).mean(2)``
(two ReduceMean).  Observed vocabularies: MBv3 {Conv, Add, Mul, Div, Relu, Clip,
ReduceMean, Reshape, Gemm} (Relu from the ReLU stages and SE), PN {Conv, Clip,
Add, ReduceMean, Gemm} -- MBv3 holds Relu and Div, PN only Clip (ReLU6), as the
paper's Fig. 3/8 discussion needs.

Speed: the static subnet is a chain of pieces (stem, one piece per MBConv
block, head).  Each piece is exported once per (block position, k, e, input
size) and cached per process; a graph is the pieces stitched in order.  This
equals the export of the whole subnet op for op (tested).  Measured on one CPU
thread: a whole-subnet export takes 0.5-1.5 s; here the first arch takes
0.6-1.4 s, a warm one 2-3 ms, and 3k MBv3 + 3k PN archs 65 s in all
(0.011 s/arch; the caches hold about 1,050 pieces).

Node features (:data:`IR_SCHEMA`), one FE-MLP scalar per category:

* ``op``: ONNX op type from :data:`IR_OPS`, anything else is ``"other"``.
* ``input_shape`` / ``output_shape`` (width 4): C, H, W of the first data
  input / first output as ``log2(1 + v)``, then a flag that is 1 when the shape
  is unknown (C, H, W then 0).  Rank-2 tensors ``(N, C)`` read as ``(C, 1, 1)``.
* ``attributes`` (width 3): kernel size, stride and group count as
  ``log2(1 + v)``; 0 for ops without them (Conv defaults: stride 1, group 1).

(The authors' ``onnx_ir/encoding.py`` scales C/256, H/128, W/128 for up to two
input and two output shapes and uses 9 attribute slots; the log scale keeps
C up to 1,536 and H up to 224 in a similar range to the other features.)

Storage: :func:`save_ir_graphs` writes one compressed ``.npz`` of
concatenated arrays plus pointers (no pickle), about 320 bytes per graph
(6,000 graphs: 1.9 MB); :func:`load_ir_graphs` reads it back into a
:class:`GraphTable`.
"""
from __future__ import annotations

import functools
import heapq
import io
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch_geometric.data import Data

from autobuild_lib.core.graphs import Feature, FeatureSchema, GraphTable, make_data
from autobuild_lib.core.spaces.ofa import EXPANSIONS, KERNELS, OFAArch, OFASpace

__all__ = [
    "IR_OPS",
    "IR_SCHEMA",
    "OFA_SUPERNET_ARGS",
    "ir_from_record",
    "ir_graph",
    "ir_graph_full",
    "load_ir_graphs",
    "read_ir_graphs",
    "ofa_settings",
    "ofa_subnet",
    "save_ir_graphs",
]

# Op vocabulary (fixed order; append only).  The first rows are what the OFA
# exports hold; the rest are ops an ONNX export of such CNNs may also hold
# (e.g. the authors' cache).
IR_OPS: tuple[str, ...] = (
    "Conv", "Add", "Mul", "Div", "Relu", "Clip", "ReduceMean", "Reshape", "Gemm",
    "BatchNormalization", "GlobalAveragePool", "AveragePool", "MaxPool", "HardSigmoid",
    "HardSwish", "Sigmoid", "Sub", "MatMul", "Flatten", "Squeeze", "Unsqueeze",
    "Concat", "Pad", "Transpose", "Identity", "Dropout", "other",
)
_OP_INDEX = {op.casefold(): i for i, op in enumerate(IR_OPS)}
SHAPE_DIM, ATTR_DIM = 4, 3

IR_SCHEMA = FeatureSchema((
    Feature("op", "cat", IR_OPS),
    Feature("input_shape", "num", dim=SHAPE_DIM),
    Feature("output_shape", "num", dim=SHAPE_DIM),
    Feature("attributes", "num", dim=ATTR_DIM),
))

OFA_SUPERNET_ARGS: dict[str, dict] = {
    family: dict(width_mult=width, ks_list=list(KERNELS), expand_ratio_list=list(EXPANSIONS),
                 depth_list=[2, 3, 4])
    for family, width in (("mbv3", 1.2), ("pn", 1.3))
}
OPSET = 13
# Op types that only feed constants or mark graph inputs/outputs: not nodes.
_NOT_OPS = frozenset({"input_dummy", "output_dummy", "constant"})
Shape = tuple[int | None, ...] | None


# ------------------------------------------------------------------ features
def _shape_feat(shape: Shape) -> list[float]:
    """``[log2(1+C), log2(1+H), log2(1+W), unknown]`` of an (N, C, H, W)-style shape."""
    if shape is None:
        return [0.0, 0.0, 0.0, 1.0]
    dims = list(shape[1:4]) if len(shape) >= 2 else list(shape)
    dims += [1] * (3 - len(dims))
    if any(d is None for d in dims):
        return [0.0, 0.0, 0.0, 1.0]
    return [float(np.log2(1.0 + d)) for d in dims] + [0.0]


def _first_int(value: object, default: int) -> int:
    """An int attribute, or the first entry of an ints attribute; ``default`` otherwise."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else default


def _attr_feat(op_type: str, attrs: dict) -> list[float]:
    """``log2(1 + v)`` of kernel size, stride and group count (0 when absent)."""
    kernel = _first_int(attrs.get("kernel_shape"), 0)
    is_conv = op_type.casefold() in ("conv", "convtranspose")
    stride = _first_int(attrs.get("strides"), 1 if is_conv or kernel else 0)
    group = _first_int(attrs.get("group"), 1 if is_conv else 0)
    return [float(np.log2(1.0 + v)) for v in (kernel, stride, group)]


def _op_index(op_type: str) -> int:
    return _OP_INDEX.get(op_type.casefold(), len(IR_OPS) - 1)


def _channels(shape: Shape) -> int:
    return int(shape[1]) if shape is not None and len(shape) >= 2 and shape[1] is not None else 0


@dataclass(frozen=True)
class _Op:
    """One op of an exported piece; ``preds`` index earlier ops, -1 is the piece input."""

    op_type: str
    preds: tuple[int, ...]
    in_shape: Shape
    out_shape: Shape
    attrs: dict


def _data(ops: Sequence[_Op], edges: Sequence[tuple[int, int]],
          stage: Sequence[int], layer: Sequence[int]) -> Data:
    cat = [[_op_index(o.op_type)] for o in ops]
    num = [_shape_feat(o.in_shape) + _shape_feat(o.out_shape) + _attr_feat(o.op_type, o.attrs)
           for o in ops]
    data = make_data(IR_SCHEMA, cat, num, edges)
    data.op_names = [o.op_type for o in ops]
    data.channels = torch.tensor([_channels(o.out_shape) for o in ops], dtype=torch.long)
    data.stage = torch.tensor(stage, dtype=torch.long)
    data.layer = torch.tensor(layer, dtype=torch.long)
    return data


# ---------------------------------------------------------------- ONNX side
def _onnx_attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT:
            out[a.name] = int(a.i)
        elif a.type == onnx.AttributeProto.INTS:
            out[a.name] = [int(v) for v in a.ints]
    return out


def _onnx_ops(model: onnx.ModelProto) -> tuple[list[_Op], int]:
    """Data-flow ops of a shape-inferred model with one input, and the op making its output."""
    g = model.graph
    shapes: dict[str, Shape] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    producer = {g.input[0].name: -1}  # value name -> op index (-1: graph input)
    ops: list[_Op] = []
    for node in g.node:
        data_in = [v for v in node.input if v in producer]
        if not data_in:  # Constant, Identity of an initializer, ...
            continue
        preds = tuple(dict.fromkeys(producer[v] for v in data_in))
        ops.append(_Op(node.op_type, preds, shapes.get(data_in[0]),
                       shapes.get(node.output[0]), _onnx_attrs(node)))
        producer.update({v: len(ops) - 1 for v in node.output})
    return ops, producer[g.output[0].name]


def _export(module: nn.Module, in_shape: tuple[int, ...]) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy-exporter notices
        torch.onnx.export(module.eval(), (torch.zeros(in_shape),), buf, dynamo=False,
                          export_params=False, opset_version=OPSET,
                          input_names=["x"], output_names=["y"])
    return onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue()))


# ----------------------------------------------------------------- OFA side
@functools.cache
def _supernet(family: str) -> nn.Module:
    """The OFA supernet of ``family``, built once per process (global RNG untouched)."""
    from ofa.imagenet_classification.elastic_nn.networks import (
        OFAMobileNetV3,
        OFAProxylessNASNets,
    )

    cls = OFAMobileNetV3 if family == "mbv3" else OFAProxylessNASNets
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(**OFA_SUPERNET_ARGS[family]).eval()


def _block_indices(space: OFASpace, arch: OFAArch) -> list[list[int]]:
    """Supernet block index of every layer of ``arch``, per stage."""
    arch = space.validate(arch)
    groups = _supernet(space.family).block_group_info
    if len(groups) != len(arch.stages):
        raise ValueError(f"{space.name}: OFA supernet has {len(groups)} stages, arch has {len(arch.stages)}")
    for u, (stage, group) in enumerate(zip(arch.stages, groups)):
        if len(stage) > len(group):
            raise ValueError(f"{space.name}: stage {u + 1} has {len(stage)} layers; OFA allows {len(group)}")
    return [group[:len(stage)] for stage, group in zip(arch.stages, groups)]


def ofa_settings(space: OFASpace, arch: OFAArch) -> dict[str, list[int | None]]:
    """``ks``/``e``/``d`` arguments of OFA's ``set_active_subnet`` for ``arch``."""
    idx = _block_indices(space, arch)
    n_blocks = len(_supernet(space.family).blocks) - 1
    ks: list[int | None] = [None] * n_blocks
    es: list[int | None] = [None] * n_blocks
    for stage, blocks in zip(arch.stages, idx):
        for (k, e), b in zip(stage, blocks):
            ks[b - 1], es[b - 1] = k, e
    return {"ks": ks, "e": es, "d": [len(s) for s in arch.stages]}


def ofa_subnet(space: OFASpace, arch: OFAArch) -> nn.Module:
    """The static OFA subnet of ``arch`` (random weights, eval mode)."""
    net = _supernet(space.family)
    net.set_active_subnet(**ofa_settings(space, arch))
    with torch.random.fork_rng(devices=[]):
        return net.get_active_subnet(preserve_weight=False).eval()


def _piece_module(family: str, kind: str, in_channels: int, block: int, k: int, e: int) -> nn.Module:
    """The static module of a piece; the head runs through OFA's own static-net ``forward``."""
    from ofa.imagenet_classification.networks import MobileNetV3, ProxylessNASNets
    from ofa.utils.layers import ResidualBlock

    net = _supernet(family)
    if kind == "stem":
        return nn.Sequential(net.first_conv, net.blocks[0])
    if kind == "head":
        if family == "mbv3":
            return MobileNetV3(nn.Identity(), [], net.final_expand_layer, net.feature_mix_layer, net.classifier)
        return ProxylessNASNets(nn.Identity(), [], net.feature_mix_layer, net.classifier)
    dyn = net.blocks[block]
    dyn.conv.active_kernel_size, dyn.conv.active_expand_ratio = k, e
    with torch.random.fork_rng(devices=[]):
        return ResidualBlock(dyn.conv.get_active_subnet(in_channels, preserve_weight=False), dyn.shortcut)


@functools.cache
def _piece(family: str, kind: str, in_shape: tuple[int, ...], block: int = 0, k: int = 0,
           e: int = 0) -> tuple[tuple[_Op, ...], int]:
    """Ops and output op of one exported piece (``stem``, ``block`` or ``head``), cached."""
    ops, out = _onnx_ops(_export(_piece_module(family, kind, in_shape[1], block, k, e), in_shape))
    return tuple(ops), out


def _stitch(pieces: Sequence[tuple[tuple[_Op, ...], int]]) -> tuple[list[_Op], list[tuple[int, int]], list[int]]:
    """Chain pieces: a piece's input edges come from the previous piece's output op."""
    ops: list[_Op] = []
    edges: list[tuple[int, int]] = []
    owner: list[int] = []
    prev_out = -1
    for p, (piece_ops, out) in enumerate(pieces):
        base = len(ops)
        for i, op in enumerate(piece_ops):
            edges += [(base + j if j >= 0 else prev_out, base + i) for j in op.preds
                      if j >= 0 or prev_out >= 0]
        ops += piece_ops
        owner += [p] * len(piece_ops)
        prev_out = base + out
    return ops, edges, owner


def ir_graph(space: OFASpace, arch: OFAArch) -> Data:
    """Op-level IR graph of ``arch`` in :data:`IR_SCHEMA`, nodes in topological order.

    Besides ``x_cat``/``x_num``/``edge_index`` the graph carries ``op_names``
    (ONNX op type per node), ``channels`` (output channels), ``stage``
    (0 stem, 1..S the arch's stages, S+1 head) and ``layer`` (index inside the stage).
    """
    idx = _block_indices(space, arch)
    fam = space.family
    pieces = [_piece(fam, "stem", (1, 3, arch.resolution, arch.resolution))]
    pos = [(0, 0)]

    def out_shape() -> tuple[int, ...]:
        ops, out = pieces[-1]
        return tuple(ops[out].out_shape)

    for u, (stage, blocks) in enumerate(zip(arch.stages, idx)):
        for j, ((k, e), b) in enumerate(zip(stage, blocks)):
            pieces.append(_piece(fam, "block", out_shape(), b, k, e))
            pos.append((u + 1, j))
    pieces.append(_piece(fam, "head", out_shape()))
    pos.append((len(arch.stages) + 1, 0))
    ops, edges, owner = _stitch(pieces)
    return _data(ops, edges, [pos[p][0] for p in owner], [pos[p][1] for p in owner])


def ir_graph_full(space: OFASpace, arch: OFAArch) -> Data:
    """:func:`ir_graph` from one export of the whole static subnet (slow reference path).

    ``stage`` and ``layer`` are -1: the whole export does not mark block boundaries.
    """
    model = _export(ofa_subnet(space, arch), (1, 3, arch.resolution, arch.resolution))
    ops, _ = _onnx_ops(model)
    edges = [(j, i) for i, op in enumerate(ops) for j in op.preds if j >= 0]
    return _data(ops, edges, [-1] * len(ops), [-1] * len(ops))


# --------------------------------------------------------- released records
def _topological(n: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """Kahn's order, ties broken by the original index; ValueError on a cycle."""
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    heap = [i for i in range(n) if indeg[i] == 0]
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, j)
    if len(order) != n:
        raise ValueError("IR record's edges contain a cycle")
    return order


def ir_from_record(record) -> Data:
    """The authors' released IR graph in :data:`IR_SCHEMA`; ``record`` is an
    ``autobuild_lib.benchmarks.released.IRRecord`` (``index``, ``nodes``, ``edges``).

    ``input_dummy``/``output_dummy`` and ``Constant`` nodes are dropped with
    their edges; unknown ops become ``"other"`` (``op_names`` keeps the real
    name); missing shapes give zeros and the unknown flag.  ``stage`` and
    ``layer`` are -1 (unknown).
    """
    keep = [i for i, n in enumerate(record.nodes) if n.op_type.casefold() not in _NOT_OPS]
    if not keep:
        raise ValueError(f"IR record {record.index} has no op nodes")
    new = {old: i for i, old in enumerate(keep)}
    edges = list(dict.fromkeys((new[a], new[b]) for a, b in record.edges if a in new and b in new))
    order = _topological(len(keep), edges)
    rank = {old: i for i, old in enumerate(order)}
    ops = []
    for i in order:
        n = record.nodes[keep[i]]
        ops.append(_Op(n.op_type, (), n.input_shapes[0] if n.input_shapes else None,
                       n.output_shapes[0] if n.output_shapes else None, n.attributes))
    edges = sorted((rank[a], rank[b]) for a, b in edges)
    return _data(ops, edges, [-1] * len(ops), [-1] * len(ops))


# ------------------------------------------------------------------ storage
_NPZ_FIELDS = ("keys", "ops", "num_names", "node_ptr", "edge_ptr", "x_cat", "x_num", "edge_index")


def save_ir_graphs(path: str | Path, graphs: Sequence[Data], keys: Sequence[str]) -> Path:
    """Write IR graphs and their keys to one compressed ``.npz`` (no pickle)."""
    if len(graphs) != len(keys):
        raise ValueError(f"{len(graphs)} graphs but {len(keys)} keys")
    if not graphs:
        raise ValueError("no graphs to save")
    if not all(isinstance(k, str) for k in keys):
        raise ValueError("keys must be strings")
    for i, g in enumerate(graphs):
        if g.x_cat.shape[1:] != (1,) or g.x_num.shape[1:] != (IR_SCHEMA.num_width,):
            raise ValueError(f"graph {i} ({keys[i]!r}) is not in IR_SCHEMA: x_cat {tuple(g.x_cat.shape)}, "
                             f"x_num {tuple(g.x_num.shape)}")
    n = np.array([g.num_nodes for g in graphs], dtype=np.int64)
    m = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    path = Path(path)
    with path.open("wb") as f:  # keeps the name as given (np.savez would append .npz)
        np.savez_compressed(
            f,
            keys=np.array(keys, dtype=str),
            ops=np.array(IR_OPS, dtype=str),
            num_names=np.array([f"{x.name}:{x.dim}" for x in IR_SCHEMA.numeric], dtype=str),
            node_ptr=np.concatenate([[0], np.cumsum(n)]),
            edge_ptr=np.concatenate([[0], np.cumsum(m)]),
            x_cat=np.concatenate([g.x_cat.numpy() for g in graphs]).astype(np.uint8),
            x_num=np.concatenate([g.x_num.numpy() for g in graphs]),
            edge_index=np.concatenate([g.edge_index.numpy().T for g in graphs]).astype(np.int32),
        )
    return path


def load_ir_graphs(path: str | Path) -> tuple[list[str], GraphTable]:
    """Read :func:`save_ir_graphs` output: keys and a :class:`GraphTable` in :data:`IR_SCHEMA`."""
    keys, graphs = read_ir_graphs(path)
    return keys, GraphTable(graphs, IR_SCHEMA)


def read_ir_graphs(path: str | Path) -> tuple[list[str], list[Data]]:
    """Read :func:`save_ir_graphs` output: keys and one ``Data`` per graph (checked for consistency)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_FIELDS if k not in z.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            a = {k: z[k] for k in _NPZ_FIELDS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable IR graph file ({err})") from None
    expected_num = [f"{x.name}:{x.dim}" for x in IR_SCHEMA.numeric]
    if a["ops"].tolist() != list(IR_OPS) or a["num_names"].tolist() != expected_num:
        raise ValueError(f"{path}: written with another IR schema (ops {a['ops'].tolist()})")
    npt, ept = a["node_ptr"], a["edge_ptr"]
    n_nodes, n_edges = len(a["x_cat"]), len(a["edge_index"])
    ok = (len(npt) == len(ept) == len(a["keys"]) + 1 and len(a["keys"]) > 0
          and npt[0] == 0 == ept[0] and npt[-1] == n_nodes == len(a["x_num"]) and ept[-1] == n_edges
          and np.all(np.diff(npt) >= 0) and np.all(np.diff(ept) >= 0)
          and a["x_num"].shape[1:] == (IR_SCHEMA.num_width,) and a["edge_index"].shape[1:] == (2,)
          and (n_nodes == 0 or a["x_cat"].max() < len(IR_OPS)))
    if ok and n_edges:
        owner = np.repeat(np.arange(len(npt) - 1), np.diff(ept))
        size = np.diff(npt)[owner]
        ok = bool(np.all(a["edge_index"] >= 0) and np.all(a["edge_index"] < size[:, None]))
    if not ok:
        raise ValueError(f"{path}: inconsistent IR graph arrays (pointers, shapes or edge indices)")
    x_cat = torch.from_numpy(a["x_cat"].astype(np.int64)).reshape(-1, 1)
    x_num = torch.from_numpy(a["x_num"].astype(np.float32))
    ei = torch.from_numpy(a["edge_index"].astype(np.int64))
    graphs = [
        Data(x_cat=x_cat[npt[i]:npt[i + 1]], x_num=x_num[npt[i]:npt[i + 1]],
             edge_index=ei[ept[i]:ept[i + 1]].T.contiguous(), num_nodes=int(npt[i + 1] - npt[i]))
        for i in range(len(npt) - 1)
    ]
    return a["keys"].tolist(), graphs
