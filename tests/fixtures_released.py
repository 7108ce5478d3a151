"""Small stand-ins for the authors' released caches, written in their exact format.

``write_fixture_caches`` writes the four OFA sequence-graph caches (a pickled
list of dicts with ``"original config"`` and metric keys, ``acc`` a fraction);
``write_fixture_ir_cache`` writes an IR cache whose graphs are pickled as the
authors' ``onnx_ir.graph.Graph`` / ``onnx_ir.node.Node`` classes.  Labels are
deterministic functions of the architecture (deeper / wider / larger input ->
more accurate and slower), so predictors can learn them.
"""
from __future__ import annotations

import base64
import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autobuild_lib.spaces.ofa import OFAArch, OFASpace, mbv3, pn

FIXTURE_FILES = {
    "ofa_mbv3_custom_cache.pkl": ("mbv3", False),
    "ofa_pn_custom_cache.pkl": ("pn", False),
    "ofa_mbv3_pan_seg_custom_cache.pkl": ("mbv3", True),
    "ofa_pn_pan_seg_custom_cache.pkl": ("pn", True),
}
SPACES = {"mbv3": mbv3, "pn": pn}
#: The labels the authors' README names for the two classification caches (no FLOPs, no parameters).
README_KEYS = ("acc", "latency_gpu", "latency_cpu", "latency_npu")


def fixture_labels(arch: OFAArch, pan_seg: bool = False) -> dict[str, float]:
    """Plausible released-format labels (``acc`` a fraction) computed from ``arch``."""
    layers = [layer for stage in arch.stages for layer in stage]
    n = len(layers)
    ek = sum(e * k for k, e in layers)
    work = sum(e * k * k for k, e in layers) * (arch.resolution / 224) ** 2
    res = (arch.resolution - 192) / 32
    labels = {
        "acc": 0.70 + 0.003 * n + 0.00008 * ek + 0.008 * res,
        "latency_gpu": np.float64(3.0 + 0.25 * n + 0.0015 * work),
        "latency_cpu": np.float64(10.0 + 0.9 * n + 0.004 * work),
        "latency_npu": np.float64(2.0 + 0.1 * n + 0.002 * sum(k * k for k, _ in layers)),
        "flops": 150.0 + 0.05 * work,
        "n_params": 3.0e6 + 2.0e3 * sum(e * k * k for k, e in layers),
    }
    if pan_seg:
        labels["pan_seg_PQ"] = 30.0 + 0.3 * n + 0.001 * work
        labels["flops_pan_seg"] = 160.0 + 0.004 * work
    return labels


def sample_archs(space: OFASpace, n: int, seed: int) -> list[OFAArch]:
    """``n`` distinct architectures drawn with ``space.sample``."""
    rng = np.random.default_rng(seed)
    seen: dict[OFAArch, None] = {}
    while len(seen) < n:
        seen.setdefault(space.sample(rng))
    return list(seen)


def write_fixture_caches(directory: str | Path, n: int = 40, seed: int = 0,
                         keys: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write the four OFA caches (``n`` entries each) into ``directory``; name -> path.

    ``keys`` (e.g. :data:`README_KEYS`) keeps only those labels in the two classification
    caches; the panoptic caches keep theirs.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for offset, (name, (family, pan_seg)) in enumerate(FIXTURE_FILES.items()):
        space = SPACES[family]()
        entries = []
        for a in sample_archs(space, n, seed + offset):
            labels = fixture_labels(a, pan_seg)
            if keys is not None and not pan_seg:
                labels = {k: labels[k] for k in keys}
            entries.append({"original config": space.to_released(a), **labels})
        paths[name] = directory / name
        with paths[name].open("wb") as f:
            pickle.dump(entries, f, protocol=4)
    return paths


# ------------------------------------------------------------------ IR cache
@contextlib.contextmanager
def _authors_classes() -> Iterator[tuple[type, type]]:
    """Classes named ``onnx_ir.graph.Graph`` / ``onnx_ir.node.Node``, registered while pickling."""
    graph_cls = type("Graph", (), {"__module__": "onnx_ir.graph"})
    node_cls = type("Node", (), {"__module__": "onnx_ir.node"})
    fakes = {"onnx_ir": types.ModuleType("onnx_ir"), "onnx_ir.graph": types.ModuleType("onnx_ir.graph"),
             "onnx_ir.node": types.ModuleType("onnx_ir.node")}
    fakes["onnx_ir.graph"].Graph = graph_cls
    fakes["onnx_ir.node"].Node = node_cls
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        yield graph_cls, node_cls
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _value_info(name: str, shape: list[int]) -> dict:
    dims = [{"dimValue": str(d)} for d in shape]
    return {"name": name, "type": {"tensorType": {"elemType": 1, "shape": {"dim": dims}}}}


def _ir_nodes(arch: OFAArch, family: str) -> list[tuple[str, list[list[int]], list[list[int]], list[dict], dict]]:
    """(op_type, input shapes, output shapes, attributes, initializer) per op, in order."""
    r = arch.resolution // 2
    c = 16
    ops: list = [("Conv", [[1, 3, arch.resolution, arch.resolution]], [[1, c, r, r]],
                  [{"name": "kernel_shape", "ints": ["3", "3"], "type": "INTS"},
                   {"name": "strides", "ints": ["2", "2"], "type": "INTS"}],
                  {"stem.weight": {"name": "stem.weight", "dims": ["16", "3", "3", "3"], "dataType": 1}})]
    act = ("Clip", [{"name": "min", "type": "FLOAT"}, {"name": "max", "f": 6.0, "type": "FLOAT"}]) \
        if family == "pn" else ("Relu", [])
    for s, stage in enumerate(arch.stages):
        c_out = 16 * (s + 2)
        for li, (k, e) in enumerate(stage):
            r_out = r // 2 if li == 0 else r
            mid = c * e
            ops += [
                ("Conv", [[1, c, r, r]], [[1, mid, r, r]],
                 [{"name": "kernel_shape", "ints": ["1", "1"], "type": "INTS"}], {}),
                (act[0], [[1, mid, r, r]], [[1, mid, r, r]], act[1], {}),
                ("Conv", [[1, mid, r, r]], [[1, mid, r_out, r_out]],
                 [{"name": "kernel_shape", "ints": [str(k), str(k)], "type": "INTS"},
                  {"name": "group", "i": str(mid), "type": "INT"},
                  {"name": "auto_pad", "s": base64.b64encode(b"NOTSET").decode(), "type": "STRING"}], {}),
                ("Conv", [[1, mid, r_out, r_out]], [[1, c_out, r_out, r_out]],
                 [{"name": "kernel_shape", "ints": ["1", "1"], "type": "INTS"}], {}),
            ]
            if li > 0:
                ops.append(("Add", [[1, c_out, r, r]] * 2, [[1, c_out, r, r]], [], {}))
            c, r = c_out, r_out
    ops.append(("GlobalAveragePool", [[1, c, r, r]], [[1, c, 1, 1]], [], {}))
    return ops


def _make_graph(graph_cls: type, node_cls: type, arch: OFAArch, family: str, name: str) -> object:
    def node(str_id: str, op_type: str, ins: list[list[int]], outs: list[list[int]],
             attribute: list[dict] | None, initializer: dict | None) -> object:
        obj = node_cls()
        obj.__dict__.update(
            str_id=str_id, name=f"{op_type}_{str_id}", op_type=op_type,
            inputs=[_value_info(f"{str_id}_in{i}", s) for i, s in enumerate(ins)],
            outputs=[_value_info(f"{str_id}_out{i}", s) for i, s in enumerate(outs)],
            attribute=attribute, initializer=initializer,
        )
        return obj

    ops = _ir_nodes(arch, family)
    first, last = ops[0][1][0], ops[-1][2][0]
    nodes = [node("in", "input_dummy", [], [first], None, None)]
    nodes += [node(str(i), op, ins, outs, attrs or None, init or None)
              for i, (op, ins, outs, attrs, init) in enumerate(ops)]
    nodes.append(node("out", "output_dummy", [last], [], None, None))
    graph = graph_cls()
    graph.__dict__.update(
        onnx_meta_info={"irVersion": "6", "producerName": "pytorch"},
        metadata={"onnx_graph_name": name},
        nodes=nodes,
        src2dst={a.str_id: [b.str_id] for a, b in zip(nodes, nodes[1:])},
        input_nodes=[nodes[0]],
        output_nodes=[nodes[-1]],
    )
    return graph


def write_fixture_ir_cache(directory: str | Path, n: int = 6, seed: int = 0, protocol: int = 4) -> Path:
    """Write ``ofa_mbv3_pn_onnx_ir_cache.pkl``: ``n`` MBv3 then ``n`` PN graphs.

    Even entries carry ``"original config"``, odd ones only the graph (named
    ``ofa_<family>_<i>``), so both ways of keying an entry are exercised.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ofa_mbv3_pn_onnx_ir_cache.pkl"
    with _authors_classes() as (graph_cls, node_cls):
        entries = []
        for family in ("mbv3", "pn"):
            space = SPACES[family]()
            for a in sample_archs(space, n, seed):
                i = len(entries)
                entry = {"graph": _make_graph(graph_cls, node_cls, a, family, f"ofa_{family}_{i}"),
                         **fixture_labels(a)}
                if i % 2 == 0:
                    entry["original config"] = space.to_released(a)
                entries.append(entry)
        with path.open("wb") as f:
            pickle.dump(entries, f, protocol=protocol)
    return path
