"""The authors' released architecture caches, read without running their code.

The AutoBuild authors publish five pickles with their public code,
https://github.com/Ascend-Research/AutoBuild (README section "Architecture
Graph Datasets", which links a Google Drive folder; the code expects them
under ``/cache/``).  Four are OFA sequence-graph caches: a list of dicts with
``entry["original config"] = (resolution, [[block strings per stage], ...])``
plus metric keys (notes Sec. 1).  The fifth, ``ofa_mbv3_pn_onnx_ir_cache.pkl``,
pickles the authors' own graph classes.

Every file is read with :class:`RestrictedUnpickler`, which resolves only
whitelisted globals: builtin data containers, numpy scalars/arrays/dtypes
(through checking wrappers) and, for the IR cache, the authors' graph classes
mapped by name onto the plain stand-ins :class:`PickledGraph` and
:class:`PickledNode`.  Nothing named by a file is imported or called.

What the authors' code says about the IR cache (Ascend-Research/AutoBuild,
commit c278de6):

- ``ge_utils/data_loader.py`` opens ``{CACHE_DIR}/{families}_{format}_cache.pkl``
  with plain ``pickle.load``; the result is a list of dicts.
- ``ge_utils/torch_geo_data.py`` (``get_entry_as_torch_geo``, format
  ``onnx_ir``) reads ``entry["graph"]``: an ``onnx_ir.graph.Graph``; labels sit
  next to it under the same keys as in the OFA caches (``ge_utils/label_eq.py``).
- ``onnx_ir/graph.py``: ``Graph`` keeps ``onnx_meta_info``, ``metadata`` (a dict,
  ``"onnx_graph_name"`` is its name), ``nodes`` (list of ``Node``, dummy
  ``input_dummy``/``output_dummy`` nodes included), ``src2dst`` (dict
  ``str_id -> [str_id]``, the edges), ``input_nodes``, ``output_nodes``.
- ``onnx_ir/node.py``: ``Node`` keeps ``str_id``, ``name``, ``op_type``,
  ``inputs``/``outputs`` (ONNX value infos as protobuf-JSON dicts:
  ``d["type"]["tensorType"]["shape"]["dim"][i]["dimValue"]``), ``attribute``
  (list of ONNX ``AttributeProto`` JSON dicts) and ``initializer`` (dict
  ``name -> TensorProto`` JSON dict with ``"dims"``).

The README leaves open whether IR entries also carry ``"original config"``; the
architecture key uses it when present, the graph name otherwise.
"""
from __future__ import annotations

import base64
import binascii
import collections
import math
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from autobuild_lib.core.spaces.ofa import OFASpace, mbv3, pn

__all__ = [
    "AUTHORS_DATA_URL",
    "AUTHORS_REPO",
    "IR_CLASS_MAP",
    "IR_CACHE",
    "LABEL_KEYS",
    "OFA_CACHE_SPACES",
    "REQUIRED_FILES",
    "IRNodeRecord",
    "IRRecord",
    "PickledGraph",
    "PickledNode",
    "PickledObject",
    "ReleasedDataError",
    "RestrictedUnpickler",
    "find_released",
    "load_ir_cache",
    "load_ofa_cache",
    "missing_message",
]

AUTHORS_REPO = "https://github.com/Ascend-Research/AutoBuild"
AUTHORS_DATA_URL = "https://drive.google.com/drive/folders/1Ku2KmpU1edTZH8su9zCEaT6LiajjUlAg"

# File name -> the OFA space its "original config" entries belong to.
OFA_CACHE_SPACES: dict[str, str] = {
    "ofa_mbv3_custom_cache.pkl": "mbv3",
    "ofa_pn_custom_cache.pkl": "pn",
    "ofa_mbv3_pan_seg_custom_cache.pkl": "mbv3",
    "ofa_pn_pan_seg_custom_cache.pkl": "pn",
}
IR_CACHE = "ofa_mbv3_pn_onnx_ir_cache.pkl"
REQUIRED_FILES: tuple[str, ...] = (*OFA_CACHE_SPACES, IR_CACHE)
_DESCRIPTIONS = {
    "ofa_mbv3_custom_cache.pkl": "3k MBv3 archs: acc, latency_gpu/cpu/npu (flops, n_params if present)",
    "ofa_pn_custom_cache.pkl": "3k PN archs: acc, latency_gpu/cpu/npu (flops, n_params if present)",
    "ofa_mbv3_pan_seg_custom_cache.pkl": "MBv3 panoptic archs: pan_seg_PQ, flops_pan_seg",
    "ofa_pn_pan_seg_custom_cache.pkl": "PN panoptic archs: pan_seg_PQ, flops_pan_seg",
    IR_CACHE: "3k MBv3 + 3k PN archs as ONNX IR graphs",
}
LABEL_KEYS: tuple[str, ...] = (
    "acc", "latency_gpu", "latency_cpu", "latency_npu", "flops", "n_params",
    "pan_seg_PQ", "flops_pan_seg",
)
_SPACES = {"mbv3": mbv3, "pn": pn}


class ReleasedDataError(ValueError):
    """A released cache is missing, unsafe or not in the expected format."""


# ------------------------------------------------------------- stand-ins
class PickledObject:
    """Stand-in for a class of the authors' code: keeps its pickled state."""

    stands_for = "?"
    state: dict[str, Any]

    def __new__(cls) -> PickledObject:
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise TypeError(f"state of {self.stands_for} is {type(state).__name__}, expected a dict")
        self.state = dict(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stands_for}, keys={sorted(self.state)})"


class PickledGraph(PickledObject):
    """Stand-in for ``onnx_ir.graph.Graph``."""

    stands_for = "onnx_ir.graph.Graph"


class PickledNode(PickledObject):
    """Stand-in for ``onnx_ir.node.Node``."""

    stands_for = "onnx_ir.node.Node"


# (module, class) named in the IR pickle -> stand-in.  To admit another plain
# data class of the authors' code, add ``("pkg.module", "Class"): PickledObject``
# (or a subclass with its own ``stands_for``) here.
IR_CLASS_MAP: dict[tuple[str, str], type[PickledObject]] = {
    ("onnx_ir.graph", "Graph"): PickledGraph,
    ("onnx_ir.node", "Node"): PickledNode,
}


# --------------------------------------------------- checked constructors
def _encode_text(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: str to latin-1/utf-8 only."""
    plain = encoding.lower().replace("-", "").replace("_", "") if isinstance(encoding, str) else ""
    if not isinstance(text, str) or plain not in ("latin1", "utf8"):
        raise pickle.UnpicklingError(f"_codecs.encode only admits str to latin-1/utf-8, got {encoding!r}")
    return text.encode(encoding)


def _numpy_scalar(dtype: np.dtype, data: bytes) -> Any:
    """``numpy.core.multiarray.scalar`` for plain (non-object) dtypes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} is not admitted")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


#: Largest object a pickle may ask a constructor to allocate from a count (``bytes(n)``,
#: ``list(range(n))``, ``ndarray(shape)``): the released caches never do, a crafted 35-byte
#: pickle could otherwise allocate gigabytes.  Data stored inline in the pickle is not capped.
MAX_ALLOCATED_ITEMS = 1 << 20


def _check_count(what: str, n: int) -> None:
    if n > MAX_ALLOCATED_ITEMS:
        raise pickle.UnpicklingError(f"{what} of {n} items is larger than the {MAX_ALLOCATED_ITEMS} admitted")


def _capped(kind: type) -> Callable[..., Any]:
    """``kind(*args)`` that refuses to allocate more than :data:`MAX_ALLOCATED_ITEMS` from a count or range."""
    def make(*args: Any) -> Any:
        for a in args:
            if isinstance(a, int) and not isinstance(a, bool) and kind in (bytes, bytearray):
                _check_count(f"{kind.__name__}({a})", a)
            elif isinstance(a, range):
                _check_count(f"{kind.__name__} of a range", len(a))
        return kind(*args)

    make.__name__ = kind.__name__
    return make


def _shape_size(shape: Any) -> int:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"ndarray shape {shape!r} is not a tuple of non-negative integers")
    return int(np.prod(dims, dtype=object)) if dims else 1


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: passed to ``_reconstruct``, or called with a capped shape."""

    def __call__(self, shape: Any, *args: Any) -> np.ndarray:
        _check_count(f"ndarray of shape {shape!r}", _shape_size(shape))
        return np.ndarray(shape, *args)


_NDARRAY = _NdarrayType()


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain ``ndarray`` only, of capped size."""
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {cls!r} is not admitted")
    _check_count(f"ndarray of shape {shape!r}", _shape_size(shape))
    return np.ndarray.__new__(np.ndarray, shape, typecode)


def _reconstructor(cls: type, base: type, state: Any) -> PickledObject:
    """``copyreg._reconstructor`` (protocols 0/1) for stand-in classes only."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object:
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r} is not admitted")
    return cls.__new__(cls)


_BUILTINS = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool,
             slice, range, object)
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in _BUILTINS},
    **{("builtins", t.__name__): _capped(t) for t in (bytes, bytearray, list, tuple, set, frozenset)},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("_codecs", "encode"): _encode_text,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): _NDARRAY,
    **{(m, "scalar"): _numpy_scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_reconstruct"): _numpy_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
}
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals and never imports."""

    def __init__(self, file: BinaryIO, source: Path | str,
                 mapped: Mapping[tuple[str, str], type[PickledObject]] | None = None) -> None:
        super().__init__(file)
        self.source = source
        self.mapped = dict(mapped or {})

    def find_class(self, module: str, name: str) -> Any:
        key = (_PY2_MODULES.get(module, module), name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        if key in self.mapped:
            return self.mapped[key]
        if self.mapped:
            hint = (f" If it is a plain data class of the authors' code, add ({module!r}, {name!r}): "
                    "PickledObject to autobuild_lib.benchmarks.released.IR_CLASS_MAP.")
        elif key in IR_CLASS_MAP:
            hint = " This looks like the IR cache; read it with load_ir_cache, not as an OFA cache."
        else:
            hint = ""
        raise ReleasedDataError(
            f"{self.source}: refused to load {module}.{name}: only builtin data types, numpy "
            f"scalars/arrays and mapped classes ({', '.join(f'{m}.{c}' for m, c in self.mapped) or 'none'}) "
            f"are admitted.{hint}"
        )


# ----------------------------------------------------------- file lookup
def find_released(data_dir: str | Path) -> dict[str, Path]:
    """Which of :data:`REQUIRED_FILES` exist in ``data_dir`` (name -> path)."""
    data_dir = Path(data_dir)
    return {name: data_dir / name for name in REQUIRED_FILES if (data_dir / name).is_file()}


def missing_message(data_dir: str | Path, names: Iterable[str]) -> str:
    """Say which released files are missing from ``data_dir`` and where to get them."""
    lines = "\n".join(f"  - {n}" + (f" ({_DESCRIPTIONS[n]})" if n in _DESCRIPTIONS else "") for n in names)
    return (
        f"missing released data file(s) in {Path(data_dir)}:\n{lines}\n"
        f"The AutoBuild authors publish these caches with their public code, {AUTHORS_REPO} "
        f"(README, 'Architecture Graph Datasets': Google Drive folder {AUTHORS_DATA_URL}); "
        f"download them into {Path(data_dir)} under exactly these names."
    )


def _load_pickle(path: str | Path, mapped: Mapping[tuple[str, str], type[PickledObject]]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ReleasedDataError(missing_message(path.parent, [path.name]))
    try:
        with path.open("rb") as f:
            data = RestrictedUnpickler(f, path, mapped).load()
    except ReleasedDataError:
        raise
    except Exception as err:  # noqa: BLE001 -- any failure of a corrupt stream
        raise ReleasedDataError(
            f"{path}: corrupt or truncated pickle ({type(err).__name__}: {err}); expected the "
            "authors' released cache, a pickled list of dicts"
        ) from err
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        bad = type(data).__name__ if not isinstance(data, list) else \
            f"list holding {type(next(e for e in data if not isinstance(e, dict))).__name__}"
        raise ReleasedDataError(f"{path}: top level is a {bad}; expected a list of dicts, one per architecture")
    if not data:
        raise ReleasedDataError(f"{path}: holds no entries; expected a list of dicts, one per architecture")
    return data


def _labels(entry: dict, index: int, path: Path) -> dict[str, float]:
    keys = [k for k in LABEL_KEYS if k in entry]
    if not keys:
        raise ReleasedDataError(
            f"{path}: entry {index} has no label key; expected at least one of {list(LABEL_KEYS)}, "
            f"found keys {sorted(map(str, entry))}"
        )
    out = {}
    for k in keys:
        value = entry[k]
        try:
            if value is None:
                out[k] = float("nan")
            elif isinstance(value, (str, bytes, bool)):
                raise TypeError(type(value).__name__)
            else:
                arr = np.asarray(value, dtype=float)
                if arr.size != 1:
                    raise TypeError(f"array of shape {arr.shape}")
                out[k] = float(arr.reshape(()))
        except (TypeError, ValueError) as err:
            raise ReleasedDataError(
                f"{path}: entry {index} label {k!r} is {value!r} ({err}); expected a number"
            ) from None
    if "acc" in out:
        if not (math.isnan(out["acc"]) or 0.0 <= out["acc"] <= 1.0):
            raise ReleasedDataError(
                f"{path}: entry {index} acc = {out['acc']!r}; the released caches store a fraction in [0, 1]"
            )
        out["acc"] *= 100.0
    return out


def _arch_string(space: OFASpace, entry: dict, index: int, path: Path) -> str:
    if "original config" not in entry:
        raise ReleasedDataError(
            f"{path}: entry {index} has no 'original config'; expected (resolution, [[block strings "
            f"per stage], ...]), found keys {sorted(map(str, entry))}"
        )
    try:
        return space.to_string(space.from_released(entry["original config"]))
    except ValueError as err:
        raise ReleasedDataError(
            f"{path}: entry {index}: {err}; its 'original config' is {entry['original config']!r}"
        ) from None


# --------------------------------------------------------- OFA caches
def load_ofa_cache(path: str | Path, space_name: str) -> pd.DataFrame:
    """Read an OFA sequence-graph cache into one row per entry, in file order.

    Columns: ``arch`` (canonical string of the ``space_name`` space, ``"mbv3"``
    or ``"pn"``) and the label keys present, named as released; ``acc`` is
    converted from a fraction to % (the paper's equations such as ``100**acc``
    were written for the fraction).  Missing labels of an entry are NaN.
    """
    if space_name not in _SPACES:
        raise ValueError(f"space_name must be one of {sorted(_SPACES)}, got {space_name!r}")
    path = Path(path)
    space = _SPACES[space_name]()
    rows = []
    for i, entry in enumerate(_load_pickle(path, {})):
        arch = _arch_string(space, entry, i, path)
        rows.append({"arch": arch, **_labels(entry, i, path)})
    columns = ["arch"] + [k for k in LABEL_KEYS if any(k in r for r in rows)]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------- IR cache
@dataclass(frozen=True)
class IRNodeRecord:
    """One ONNX op of an IR graph as plain data (shapes: ``None`` = unknown, ``()`` = scalar)."""

    id: str
    name: str
    op_type: str
    input_shapes: tuple[tuple[int | None, ...] | None, ...]
    output_shapes: tuple[tuple[int | None, ...] | None, ...]
    attributes: dict[str, Any]
    initializer_shapes: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class IRRecord:
    """One architecture of the IR cache: key, labels, nodes and ``(src, dst)`` node-index edges."""

    index: int
    arch: str | None
    family: str | None
    labels: dict[str, float]
    nodes: tuple[IRNodeRecord, ...]
    edges: tuple[tuple[int, int], ...]


def _shape(info: Any) -> tuple[int | None, ...] | None:
    try:
        shape = info["type"]["tensorType"]["shape"]
    except (KeyError, TypeError):
        return None
    return tuple(int(d["dimValue"]) if "dimValue" in d else None for d in shape.get("dim", []))


def _decode(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return text


_ATTR_READERS = {
    "INT": ("i", lambda v: int(v if v is not None else 0)),
    "FLOAT": ("f", lambda v: float(v if v is not None else 0.0)),
    "STRING": ("s", lambda v: _decode(v or "")),
    "INTS": ("ints", lambda v: [int(x) for x in v or []]),
    "FLOATS": ("floats", lambda v: [float(x) for x in v or []]),
    "STRINGS": ("strings", lambda v: [_decode(x) for x in v or []]),
}


def _attributes(raw: Any) -> dict[str, Any]:
    """ONNX ``AttributeProto`` JSON dicts -> ``{name: value}`` (ints, floats, strings decoded)."""
    items = [raw] if isinstance(raw, dict) else list(raw or [])
    out = {}
    for d in items:
        kind = d.get("type") or next((t for t, (k, _) in _ATTR_READERS.items() if k in d), None)
        if kind in _ATTR_READERS:
            key, read = _ATTR_READERS[kind]
            out[d["name"]] = read(d.get(key))
        else:
            out[d["name"]] = {k: v for k, v in d.items() if k not in ("name", "type")}
    return out


def _node_record(node: PickledNode) -> IRNodeRecord:
    s = node.state
    return IRNodeRecord(
        id=str(s["str_id"]),
        name=str(s.get("name", "")),
        op_type=str(s["op_type"]),
        input_shapes=tuple(_shape(d) for d in s.get("inputs") or []),
        output_shapes=tuple(_shape(d) for d in s.get("outputs") or []),
        attributes=_attributes(s.get("attribute")),
        initializer_shapes={
            str(k): tuple(int(x) for x in d.get("dims", [])) for k, d in (s.get("initializer") or {}).items()
        },
    )


def _ir_arch(entry: dict, graph: PickledGraph, spaces: dict[str, OFASpace]) -> tuple[str | None, str | None]:
    """Canonical string and family from ``original config``, else the graph's name."""
    if "original config" in entry:
        for family, space in spaces.items():
            try:
                return space.to_string(space.from_released(entry["original config"])), family
            except ValueError:
                continue
    name = (graph.state.get("metadata") or {}).get("onnx_graph_name")
    return (str(name) if name else None), None


def load_ir_cache(path: str | Path) -> list[IRRecord]:
    """Read ``ofa_mbv3_pn_onnx_ir_cache.pkl`` into plain :class:`IRRecord` objects, in file order."""
    path = Path(path)
    spaces = {family: make() for family, make in _SPACES.items()}
    records = []
    for i, entry in enumerate(_load_pickle(path, IR_CLASS_MAP)):
        graph = entry.get("graph")
        if not isinstance(graph, PickledGraph):
            raise ReleasedDataError(
                f"{path}: entry {i} has no 'graph' holding an onnx_ir.graph.Graph "
                f"(found {type(graph).__name__}); keys {sorted(map(str, entry))}"
            )
        raw_nodes = graph.state.get("nodes") or []
        if not all(isinstance(n, PickledNode) for n in raw_nodes):
            raise ReleasedDataError(f"{path}: entry {i}: graph nodes must be onnx_ir.node.Node objects")
        try:
            nodes = tuple(_node_record(n) for n in raw_nodes)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ReleasedDataError(f"{path}: entry {i}: malformed graph node ({type(err).__name__}: {err})") from None
        index = {n.id: j for j, n in enumerate(nodes)}
        try:
            edges = tuple(
                (index[str(src)], index[str(dst)])
                for src, dsts in (graph.state.get("src2dst") or {}).items() for dst in dsts
            )
        except KeyError as err:
            raise ReleasedDataError(f"{path}: entry {i}: edge names unknown node {err}") from None
        arch, family = _ir_arch(entry, graph, spaces)
        records.append(IRRecord(i, arch, family, _labels(entry, i, path), nodes, edges))
    return records
