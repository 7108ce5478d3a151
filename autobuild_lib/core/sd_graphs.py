"""Graph encodings of the SD v1.4 inpainting U-Net spaces (paper Sec. 5.3, 7.8).

Node features (notes Sec. 7), all categorical so that the FE-MLP gives one
readable score per value (paper Table 3):

* ``op``: ResConv, Attention, Downsample, Upsample;
* ``channels``: every channel count of the study's SD spaces (``sd_unet``'s
  C_m * multiplier values, a superset of ``sd_unet_hw``'s), so Table 3's
  "more channels is better" is one score per channel value;
* ``section``: input, middle, output;
* ``stage``: 0 (middle) and 1-4.

A whole U-Net is the graph of :meth:`SDSpace.graph` (forward chain plus the
four long skips); a module is the standalone chain of
:meth:`SDSpace.module_graph`.  :func:`sd_table` encodes many architectures
straight into a :class:`GraphTable` from per-module node rows cached per unit
(no per-graph ``Data`` objects), which is what makes scoring all 884,736
architectures of ``sd_unet`` feasible.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from autobuild_lib.core.graphs import Feature, FeatureSchema, GraphTable, make_data
from autobuild_lib.core.spaces.sd import MIDDLE_STAGE, N_STAGES, OPS, SECTIONS, SDArch, SDModule, SDSpace, sd_unet

Node = dict[str, object]


def sd_schema(space: SDSpace) -> FeatureSchema:
    """Schema whose channel vocabulary is every channel count of ``space``."""
    channels = sorted({c for u in range(space.n_units) for c in space.unit_channels(u)})
    return FeatureSchema((
        Feature("op", "cat", OPS),
        Feature("channels", "cat", tuple(channels)),
        Feature("section", "cat", SECTIONS),
        Feature("stage", "cat", (MIDDLE_STAGE, *range(1, N_STAGES + 1))),
    ))


SD_SCHEMA = sd_schema(sd_unet())


def _rows(nodes: Sequence[Node], schema: FeatureSchema) -> list[list[int]]:
    f = schema.features
    return [[f[0].index(n["op"]), f[1].index(n["channels"]), f[2].index(n["section"]),
             f[3].index(n["stage"])] for n in nodes]


def _data(nodes: Sequence[Node], edges: Sequence[tuple[int, int]], schema: FeatureSchema) -> Data:
    if not nodes:
        raise ValueError("an SD graph needs at least one node")
    return make_data(schema, _rows(nodes, schema), np.zeros((len(nodes), 0)), edges)


def sd_graph(space: SDSpace, arch: SDArch, schema: FeatureSchema = SD_SCHEMA) -> Data:
    """Graph of a whole U-Net: forward chain plus one long skip per stage."""
    return _data(*space.graph(arch), schema)


def sd_module_graph(space: SDSpace, unit: int, module: SDModule,
                    schema: FeatureSchema = SD_SCHEMA) -> Data:
    """Standalone chain of the nodes ``module`` contributes in ``unit`` (sampler included)."""
    return _data(*space.module_graph(unit, module), schema)


# --------------------------------------------------------------------------
# Fast tables: per-unit node rows cached, architectures encoded in bulk.
class _Segments:
    """Padded node rows of every module of each forward segment.

    The forward order is input stages 1-4, the middle stage, output stages
    4-1 (units 0-3, middle, units 7-4).  Each segment keeps a lookup
    ``(channels, blocks) -> module id`` and arrays ``rows [n_mod, L_max, 4]``
    and ``lens [n_mod]``; the middle segment is keyed by stage-4 channels.
    """

    def __init__(self, space: SDSpace, schema: FeatureSchema) -> None:
        self.order: list[int | None] = [0, 1, 2, 3, None, 7, 6, 5, 4]
        self.lut: list[dict] = []
        self.rows: list[np.ndarray] = []
        self.lens: list[np.ndarray] = []
        for unit in self.order:
            if unit is None:
                keys = list(space.unit_channels(N_STAGES - 1))
                node_lists = [[{"op": op, "channels": c, "section": "middle", "stage": MIDDLE_STAGE}
                               for op in ("ResConv", "Attention", "ResConv")] for c in keys]
            else:
                mods = list(space.modules(unit))
                keys = [(m.channels, m.blocks) for m in mods]
                node_lists = [space.module_graph(unit, m)[0] for m in mods]
            width = max(len(n) for n in node_lists)
            rows = np.zeros((len(keys), width, 4), dtype=np.int64)
            for i, nodes in enumerate(node_lists):
                rows[i, :len(nodes)] = _rows(nodes, schema)
            self.lut.append({k: i for i, k in enumerate(keys)})
            self.rows.append(rows)
            self.lens.append(np.array([len(n) for n in node_lists], dtype=np.int64))

    def _ids(self, space: SDSpace, arch: SDArch) -> tuple[int, ...]:
        if arch.c_m not in space.c_ms or arch.multipliers not in space.combos:
            raise KeyError(arch.multipliers)
        ch = arch.channels
        lut = self.lut
        return (lut[0][ch[0], arch.inputs[0]], lut[1][ch[1], arch.inputs[1]],
                lut[2][ch[2], arch.inputs[2]], lut[3][ch[3], arch.inputs[3]], lut[4][ch[3]],
                lut[5][ch[3], arch.outputs[3]], lut[6][ch[2], arch.outputs[2]],
                lut[7][ch[1], arch.outputs[1]], lut[8][ch[0], arch.outputs[0]])

    def module_ids(self, space: SDSpace, archs: Sequence[SDArch]) -> np.ndarray:
        """``[n_archs, 9]`` module id of every segment.

        Canonical archs take a dictionary fast path; anything else goes
        through ``space.validate`` (which raises its own message when invalid).
        """
        ids = np.empty((len(archs), len(self.order)), dtype=np.int64)
        for a, arch in enumerate(archs):
            try:
                ids[a] = self._ids(space, arch)
            except (KeyError, AttributeError, TypeError, IndexError):
                ids[a] = self._ids(space, space.validate(arch))
        return ids


class _ArrayGraphTable(GraphTable):
    """A :class:`GraphTable` built from flat arrays instead of ``Data`` objects."""

    def __init__(self, schema: FeatureSchema, x_cat: np.ndarray, node_counts: np.ndarray,
                 edge_index: np.ndarray, edge_counts: np.ndarray) -> None:
        self.schema = schema
        counts, ecounts = torch.from_numpy(node_counts), torch.from_numpy(edge_counts)
        zero = torch.zeros(1, dtype=torch.long)
        self.node_ptr = torch.cat([zero, counts.cumsum(0)])
        self.edge_ptr = torch.cat([zero, ecounts.cumsum(0)])
        self.x_cat = torch.from_numpy(x_cat)
        self.x_num = torch.zeros((len(x_cat), 0), dtype=torch.float32)
        self.edge_index = torch.from_numpy(edge_index)
        self.edge_graph = torch.repeat_interleave(torch.arange(len(counts)), ecounts)


class SDTableBuilder:
    """Encodes batches of architectures of one SD space into :class:`GraphTable` s.

    Equivalent to ``GraphTable([sd_graph(space, a) for a in archs], schema)``
    (same nodes, same edges per graph) but vectorised over the archs.
    """

    def __init__(self, space: SDSpace, schema: FeatureSchema = SD_SCHEMA) -> None:
        self.space, self.schema = space, schema
        self.seg = _Segments(space, schema)

    def __call__(self, archs: Sequence[SDArch]) -> GraphTable:
        if len(archs) == 0:
            raise ValueError("sd_table needs at least one architecture")
        seg = self.seg
        ids = seg.module_ids(self.space, archs)
        lens = np.stack([seg.lens[s][ids[:, s]] for s in range(ids.shape[1])], axis=1)  # [n, 9]
        rows = np.concatenate([seg.rows[s][ids[:, s]] for s in range(ids.shape[1])], axis=1)
        mask = np.concatenate([np.arange(seg.rows[s].shape[1])[None, :] < lens[:, s:s + 1]
                               for s in range(ids.shape[1])], axis=1)
        x_cat = rows[mask]
        n_nodes = lens.sum(axis=1)
        start = np.cumsum(lens, axis=1) - lens  # local index of each segment's first node
        # chain edges i -> i+1, then the long skips input stage s -> output stage s
        width = int(n_nodes.max()) - 1
        chain = np.broadcast_to(np.arange(width), (len(ids), width))
        chain_ok = chain < (n_nodes - 1)[:, None]
        in_last = start[:, :N_STAGES] + lens[:, :N_STAGES] - 1 - (np.arange(N_STAGES) < N_STAGES - 1)
        out_first = start[:, [8, 7, 6, 5]]  # output stages 1-4
        src = np.concatenate([chain, in_last], axis=1)
        dst = np.concatenate([chain + 1, out_first], axis=1)
        ok = np.concatenate([chain_ok, np.ones_like(in_last, dtype=bool)], axis=1)
        offset = (np.cumsum(n_nodes) - n_nodes)[:, None]
        edge_index = np.stack([(src + offset)[ok], (dst + offset)[ok]])
        return _ArrayGraphTable(self.schema, np.ascontiguousarray(x_cat), n_nodes,
                                edge_index, ok.sum(axis=1))


def sd_table(space: SDSpace, archs: Sequence[SDArch], schema: FeatureSchema = SD_SCHEMA) -> GraphTable:
    """:class:`GraphTable` of ``archs`` (for many calls, reuse one :class:`SDTableBuilder`)."""
    return SDTableBuilder(space, schema)(archs)
