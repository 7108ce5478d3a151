"""Graph encodings of architectures as PyTorch Geometric data.

Every graph carries two node-feature tensors described by a
:class:`FeatureSchema`: ``x_cat`` (one integer index per categorical feature)
and ``x_num`` (the numeric features side by side).  The FE-MLP (0-hop layer)
turns each *feature category* into one scalar, so the schema is what makes
its scores readable.

Sequence graphs (paper Sec. 3.1): one node per layer, directed edges
layer i -> layer i+1 through the whole network.  Node features ("custom"
format): stage u, layer index l inside the stage, block family, expansion e,
kernel k, and resolution fed as (r - 192) / 32.

:class:`GraphTable` stores many graphs flat and slices mini-batches with a
few vectorised tensor ops, which is what makes 200 epochs on 2.7k graphs fit
in a minute of CPU time.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from autobuild_lib.core.spaces.ofa import EXPANSIONS, KERNELS, OFAArch, OFAModule, OFASpace


@dataclass(frozen=True)
class Feature:
    """One feature category: ``cat`` with a vocabulary, or ``num`` of width ``dim``."""

    name: str
    kind: str
    values: tuple = ()
    dim: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("cat", "num"):
            raise ValueError(f"feature {self.name!r}: kind must be 'cat' or 'num', got {self.kind!r}")
        if self.kind == "cat" and not self.values:
            raise ValueError(f"categorical feature {self.name!r} needs a vocabulary")

    def index(self, value: object) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            raise ValueError(
                f"feature {self.name!r}: value {value!r} not in vocabulary {self.values}"
            ) from None


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered feature categories of a graph encoding."""

    features: tuple[Feature, ...]
    num_display: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "cat")

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "num")

    @property
    def num_width(self) -> int:
        return sum(f.dim for f in self.numeric)

    @property
    def names(self) -> tuple[str, ...]:
        """Order of the FE-MLP output columns: categorical first, then numeric."""
        return tuple(f.name for f in self.categorical + self.numeric)


def make_data(schema: FeatureSchema, cat_rows: Sequence[Sequence[int]],
              num_rows: Sequence[Sequence[float]], edges: Sequence[tuple[int, int]]) -> Data:
    """Build one PyG ``Data`` from per-node category indices and numeric values."""
    n = len(cat_rows) if schema.categorical else len(num_rows)
    x_cat = torch.tensor(np.asarray(cat_rows, dtype=np.int64).reshape(n, len(schema.categorical)))
    x_num = torch.tensor(np.asarray(num_rows, dtype=np.float32).reshape(n, schema.num_width))
    ei = torch.tensor(np.asarray(edges, dtype=np.int64).reshape(-1, 2).T.copy())
    if ei.numel() and (ei.min() < 0 or ei.max() >= n):
        raise ValueError(f"edge index out of range for a graph of {n} nodes")
    return Data(x_cat=x_cat, x_num=x_num, edge_index=ei, num_nodes=n)


# --------------------------------------------------------------------------
# OFA sequence graphs
RES_OFFSET, RES_SCALE = 192.0, 32.0


def ofa_schema(n_stages: int = 6) -> FeatureSchema:
    """Node features of the paper's "custom" OFA sequence graphs."""
    return FeatureSchema(
        (
            Feature("stage", "cat", tuple(range(1, n_stages + 1))),
            Feature("layer", "cat", (1, 2, 3, 4)),
            Feature("block", "cat", ("mbv3", "pn")),
            Feature("expansion", "cat", EXPANSIONS),
            Feature("kernel", "cat", KERNELS),
            Feature("resolution", "num"),
        ),
        num_display={"resolution": ((192, 208, 224), lambda r: (r - RES_OFFSET) / RES_SCALE)},
    )


OFA_SCHEMA = ofa_schema()


def _ofa_rows(family: str, stages: Sequence[int], layers: Sequence[int],
              module: OFAModule, resolution: int) -> tuple[list, list]:
    s = OFA_SCHEMA.features
    fam = s[2].index(family)
    cat = [[s[0].index(u + 1), s[1].index(li + 1), fam, s[3].index(e), s[4].index(k)]
           for u, li, (k, e) in zip(stages, layers, module)]
    num = [[(resolution - RES_OFFSET) / RES_SCALE]] * len(module)
    return cat, num


def chain_edges(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def ofa_graph(space: OFASpace, arch: OFAArch) -> Data:
    """Sequence graph of a whole OFA architecture."""
    arch = space.validate(arch)
    stages = [u for u, st in enumerate(arch.stages) for _ in st]
    layers = [i for st in arch.stages for i in range(len(st))]
    module = tuple(layer for st in arch.stages for layer in st)
    cat, num = _ofa_rows(space.family, stages, layers, module, arch.resolution)
    return make_data(OFA_SCHEMA, cat, num, chain_edges(len(module)))


def ofa_module_graph(space: OFASpace, unit: int, module: OFAModule, resolution: int = 224) -> Data:
    """Standalone chain graph of one module placed in ``unit`` (layer indices from 0)."""
    cat, num = _ofa_rows(space.family, space.module_stage_of_layer(unit, module),
                         space.module_layer_index(unit, module), module, resolution)
    return make_data(OFA_SCHEMA, cat, num, chain_edges(len(module)))


# --------------------------------------------------------------------------
class GraphTable:
    """Many graphs stored flat, with fast vectorised mini-batch slicing."""

    def __init__(self, graphs: Sequence[Data], schema: FeatureSchema) -> None:
        if not graphs:
            raise ValueError("GraphTable needs at least one graph")
        self.schema = schema
        counts = torch.tensor([g.num_nodes for g in graphs])
        ecounts = torch.tensor([g.edge_index.shape[1] for g in graphs])
        self.node_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self.edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long), ecounts.cumsum(0)])
        self.x_cat = torch.cat([g.x_cat for g in graphs])
        self.x_num = torch.cat([g.x_num for g in graphs])
        self.edge_index = torch.cat(
            [g.edge_index + int(self.node_ptr[i]) for i, g in enumerate(graphs)], dim=1)
        self.edge_graph = torch.repeat_interleave(torch.arange(len(graphs)), ecounts)

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @staticmethod
    def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
        first = torch.cumsum(counts, 0) - counts
        return starts[owner] + torch.arange(int(counts.sum())) - first[owner], owner

    def batch(self, idx: torch.Tensor | Sequence[int] | None = None) -> Batch:
        """A PyG ``Batch`` of the graphs ``idx`` (all graphs when ``None``)."""
        idx = torch.arange(len(self)) if idx is None else torch.as_tensor(idx, dtype=torch.long)
        ncount = self.node_ptr[idx + 1] - self.node_ptr[idx]
        nodes, owner = self._ranges(self.node_ptr[idx], ncount)
        ecount = self.edge_ptr[idx + 1] - self.edge_ptr[idx]
        edges, eowner = self._ranges(self.edge_ptr[idx], ecount)
        new_ptr = torch.cat([torch.zeros(1, dtype=torch.long), ncount.cumsum(0)])
        shift = new_ptr[:-1] - self.node_ptr[idx]
        ei = self.edge_index[:, edges] + shift[eowner]
        return Batch(x_cat=self.x_cat[nodes], x_num=self.x_num[nodes], edge_index=ei,
                     batch=owner, ptr=new_ptr, num_graphs=len(idx))

    def batches(self, idx: torch.Tensor | Sequence[int], batch_size: int,
                min_size: int = 1) -> Iterator[tuple[int, int, FlatBatch]]:
        """``(start, stop, batch)`` for consecutive slices ``idx[start:stop]`` of ``batch_size``.

        The same tensors as ``self.batch(idx[start:stop])``, but the graphs
        are gathered once for all of ``idx`` and every mini-batch is a slice
        of that (a few tensor ops per step instead of a full gather plus a
        PyG ``Batch``).  Slices with fewer than ``min_size`` graphs are skipped.
        """
        idx = torch.as_tensor(idx, dtype=torch.long)
        whole = self.batch(idx)
        ecount = self.edge_ptr[idx + 1] - self.edge_ptr[idx]
        node_ptr = whole.ptr.tolist()
        edge_ptr = [0] + ecount.cumsum(0).tolist()
        for start in range(0, len(idx), batch_size):
            stop = min(start + batch_size, len(idx))
            if stop - start < min_size:
                continue
            n0, n1, e0, e1 = node_ptr[start], node_ptr[stop], edge_ptr[start], edge_ptr[stop]
            yield start, stop, FlatBatch(
                x_cat=whole.x_cat[n0:n1], x_num=whole.x_num[n0:n1],
                edge_index=whole.edge_index[:, e0:e1] - n0, batch=whole.batch[n0:n1] - start,
                ptr=whole.ptr[start:stop + 1] - n0, num_graphs=stop - start)


class FlatBatch(NamedTuple):
    """A mini-batch with the fields of a PyG ``Batch`` the predictor reads."""

    x_cat: torch.Tensor
    x_num: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    num_graphs: int
