"""Reading a trained AutoBuild predictor: FE-MLP scores, best m-hop subgraphs, drawings.

Paper Sec. 3.2 / 4.2 / 7.6 (Figs. 3, 4, 8-10):

* The FE-MLP gives every value of every node-feature category one scalar; its
  magnitude is the value's importance (:func:`fe_scores`).
  :func:`initial_predictor` rebuilds the untrained predictor, so a score can be
  compared with its random start.  In the IR format the op-type category is
  the readable one (Fig. 3): :func:`op_usage` says
  which ops each family's graphs hold, so untrained embedding rows (ops that
  never occur) can be told apart from learned ones.
* The score of the m-hop subgraph rooted at node v is ``||h_v^m||_1``
  (:func:`node_norms`).  Its receptive field is every node with a directed
  path of at most m edges into v -- message passing runs along the edges
  (:func:`receptive_field`).  :func:`best_subgraph` finds the highest-scoring
  one over a set of graphs (Fig. 8).
* IR node features are stored as ``log2(1 + v)``; :func:`ir_nodes` decodes
  them back into op, channels, spatial size, kernel, stride and group, and
  :func:`ir_positions` recovers the (stage, layer, k, e) of every node of a
  Mini-OFA graph by rebuilding it with :func:`autobuild_lib.core.ir.ir_graph`.
* Drawing: :func:`draw_subgraph` (networkx, layered by topological
  generation) and :func:`draw_module` (a stage module as a row of MBConv
  blocks, width from k and height from e, as in Fig. 4).
* FE-MLP scores against the data (Figs. 9-10): :func:`fe_score_table` puts the
  scores of several predictors side by side; :func:`value_shares` /
  :func:`value_effects` measure, without any predictor, how the share of a
  graph's nodes taking a feature value goes with the label (Spearman), and
  :func:`top_value_agreement` checks whether the FE-MLP's favourite value of
  each feature goes with better labels, against a random pick.
* Module scores (Table 2, Eq. 5, Fig. 4), on the output of
  :mod:`autobuild_lib.core.scoring`: :func:`table2_hops` / :func:`table2_labels`
  write the moments as ``N(mu, sigma)`` like Table 2, :func:`shift_summary`
  compares raw and Eq. 5-shifted scores per (unit, module length), and
  :func:`extreme_modules` / :func:`draw_extremes` give the best and worst
  module of every unit.

The chapters word the verdicts on these numbers (:mod:`autobuild_lib.study.claims`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from autobuild_lib.core.graphs import FeatureSchema, GraphTable
from autobuild_lib.core.predictor import AutoBuildPredictor
from autobuild_lib.core.training import TrainConfig

__all__ = [
    "RootedSubgraph",
    "best_subgraph",
    "category_means",
    "draw_extremes",
    "draw_module",
    "draw_subgraph",
    "extreme_modules",
    "fe_score_table",
    "fe_scores",
    "graph_edges",
    "initial_predictor",
    "ir_families",
    "ir_nodes",
    "ir_positions",
    "longest_op_chain",
    "node_norms",
    "normal_str",
    "op_usage",
    "pointwise_expansion",
    "receptive_field",
    "rank_of",
    "shift_summary",
    "table2_hops",
    "table2_labels",
    "top_value_agreement",
    "value_effects",
    "value_shares",
]


# ------------------------------------------------------------ FE-MLP scores
def fe_scores(model: AutoBuildPredictor) -> pd.DataFrame:
    """Every FE-MLP score as a long table: feature, value, score, rank (1 = highest in its feature).

    Wraps :meth:`autobuild_lib.core.predictor.FEMLP.scores`; the order of the rows
    within a feature is the schema's vocabulary order.
    """
    rows = [{"feature": feat, "value": value, "score": float(score)}
            for feat, values in model.fe.scores().items() for value, score in values.items()]
    out = pd.DataFrame(rows)
    out["rank"] = out.groupby("feature")["score"].rank(ascending=False, method="min").astype(int)
    return out


def initial_predictor(config: TrainConfig, schema: FeatureSchema) -> AutoBuildPredictor:
    """The untrained predictor that :func:`~autobuild_lib.core.training.train_predictor` starts from with ``config``.

    Same seed and sizes, so its FE-MLP scores are the scores *before* training: comparing them with the
    trained ones shows how far training moved each value (an embedding row of a value that never
    occurs keeps its initial score).  The global torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return AutoBuildPredictor(schema, hidden=config.hidden, n_layers=config.n_layers).eval()


def rank_of(scores: pd.Series, key: object) -> int:
    """1-based rank of ``key`` in ``scores`` (highest first; ties share the best rank)."""
    if key not in scores.index:
        raise KeyError(f"{key!r} not among {list(scores.index)}")
    return int((scores > scores[key]).sum()) + 1


def op_usage(table: GraphTable, groups: Sequence[object] | None = None) -> pd.DataFrame:
    """Per op type (IR schema, categorical feature 0) and group: graphs holding it and nodes per graph.

    ``groups`` labels every graph (e.g. its family); ``None`` puts all in one
    group ``"all"``.  Returns a frame indexed by op with columns
    ``(<group>, "graphs")`` (fraction of the group's graphs holding the op) and
    ``(<group>, "per_graph")`` (mean count per graph); ops that occur nowhere are dropped.
    """
    feat = table.schema.categorical[0]
    n = len(table)
    groups = np.array(["all"] * n if groups is None else [str(g) for g in groups], dtype=object)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} graphs")
    counts = np.diff(table.node_ptr.numpy())
    owner = np.repeat(np.arange(n), counts)
    ops = table.x_cat[:, 0].numpy()
    per = np.zeros((n, len(feat.values)), dtype=np.int64)
    np.add.at(per, (owner, ops), 1)
    cols = {}
    for g in dict.fromkeys(groups):
        sel = per[groups == g]
        cols[(g, "graphs")] = (sel > 0).mean(axis=0)
        cols[(g, "per_graph")] = sel.mean(axis=0)
    out = pd.DataFrame(cols, index=pd.Index(feat.values, name="op"))
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["group", "stat"])
    return out[(per.sum(axis=0) > 0)]


# ------------------------------------------------------- rooted subgraphs
@torch.no_grad()
def node_norms(model: AutoBuildPredictor, table: GraphTable, hop: int,
               idx: Sequence[int] | None = None, chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``||h_v^hop||_1`` of every node of the graphs ``idx``.

    Returns ``(norms, graph, local)``: one entry per node, its graph index in
    ``table`` and its node index inside that graph.
    """
    if not 0 <= hop < model.n_hops:
        raise ValueError(f"hop {hop} out of range 0..{model.n_hops - 1}")
    model.eval()
    idx = np.arange(len(table)) if idx is None else np.asarray(idx, dtype=np.int64)
    norms, graphs, local = [], [], []
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        batch = table.batch(part)
        h = model.node_embeddings(batch)[hop]
        norms.append(h.abs().sum(dim=1).double().numpy())
        owner = batch.batch.numpy()
        graphs.append(part[owner])
        local.append(np.arange(len(owner)) - batch.ptr.numpy()[owner])
    return np.concatenate(norms), np.concatenate(graphs), np.concatenate(local)


def graph_edges(table: GraphTable, g: int) -> np.ndarray:
    """Edges ``[E, 2]`` (src, dst) of graph ``g`` in local node indices."""
    a, b = int(table.edge_ptr[g]), int(table.edge_ptr[g + 1])
    return (table.edge_index[:, a:b] - table.node_ptr[g]).T.numpy()


def receptive_field(edges: np.ndarray, root: int, hops: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Nodes with a directed path of at most ``hops`` edges into ``root``, and the edges that carry
    their messages (source in the field, target at most ``hops - 1`` steps upstream of ``root``).

    Nodes come sorted by distance to ``root`` (root first), then by index.
    """
    if hops < 0:
        raise ValueError(f"hops must be >= 0, got {hops}")
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    preds: dict[int, list[int]] = {}
    for s, d in edges.tolist():
        preds.setdefault(d, []).append(s)
    dist = {root: 0}
    frontier = [root]
    for step in range(1, hops + 1):
        nxt = []
        for v in frontier:
            for u in preds.get(v, []):
                if u not in dist:
                    dist[u] = step
                    nxt.append(u)
        frontier = sorted(nxt)
    nodes = sorted(dist, key=lambda v: (dist[v], v))
    used = sorted({(s, d) for s, d in edges.tolist() if d in dist and s in dist and dist[d] < hops})
    return nodes, used


@dataclass
class RootedSubgraph:
    """The m-hop subgraph rooted at ``root`` (local index) of graph ``graph``."""

    graph: int
    root: int
    hop: int
    score: float
    nodes: list[int]
    edges: list[tuple[int, int]]


def best_subgraph(model: AutoBuildPredictor, table: GraphTable, hop: int,
                  idx: Sequence[int] | None = None, worst: bool = False) -> RootedSubgraph:
    """The highest-scoring (``worst``: lowest) ``hop``-hop subgraph over the graphs ``idx``.

    Ties go to the first node in graph order.
    """
    norms, graphs, local = node_norms(model, table, hop, idx)
    i = int(np.argmin(norms) if worst else np.argmax(norms))
    g, root = int(graphs[i]), int(local[i])
    nodes, edges = receptive_field(graph_edges(table, g), root, hop)
    return RootedSubgraph(g, root, hop, float(norms[i]), nodes, edges)


# -------------------------------------------------------- IR node decoding
def ir_nodes(table: GraphTable, g: int) -> pd.DataFrame:
    """Decoded node features of IR graph ``g``: op, in/out C-H-W, kernel, stride, group, kind.

    Shapes and attributes are stored as ``log2(1 + v)`` (see :mod:`autobuild_lib.core.ir`);
    unknown shapes read as -1.  ``kind`` is ``pointwise`` (1x1 Conv, one group),
    ``depthwise`` (groups = input channels > 1), ``conv`` (other Conv) or the op name.
    """
    from autobuild_lib.core.ir import ATTR_DIM, IR_OPS, SHAPE_DIM

    a, b = int(table.node_ptr[g]), int(table.node_ptr[g + 1])
    x = table.x_num[a:b].numpy().astype(np.float64)
    raw = np.rint(np.exp2(x) - 1).astype(np.int64)
    out = pd.DataFrame({"op": [IR_OPS[i] for i in table.x_cat[a:b, 0].tolist()]})
    for j, side in enumerate(("in", "out")):
        base = j * SHAPE_DIM
        unknown = x[:, base + 3] > 0.5
        for k, dim in enumerate("CHW"):
            out[f"{side}_{dim}"] = np.where(unknown, -1, raw[:, base + k])
    att = 2 * SHAPE_DIM
    for k, name in enumerate(("kernel", "stride", "group")[:ATTR_DIM]):
        out[name] = raw[:, att + k]
    conv = out["op"] == "Conv"
    kind = out["op"].copy()
    kind[conv & (out["kernel"] == 1) & (out["group"] == 1)] = "pointwise"
    kind[conv & (out["group"] > 1) & (out["group"] == out["in_C"])] = "depthwise"
    kind[conv & ~kind.isin(["pointwise", "depthwise"])] = "conv"
    indeg = np.bincount(graph_edges(table, g)[:, 1], minlength=b - a)
    out["in_degree"] = indeg
    kind[(out["op"] == "Add") & (indeg >= 2)] = "residual Add"
    out["kind"] = kind
    return out


def pointwise_expansion(nodes: pd.DataFrame, edges: np.ndarray, v: int, max_steps: int = 12) -> float:
    """Expansion ratio of the MBConv layer a pointwise Conv ``v`` belongs to, read from channels.

    An expanding conv (out > in channels) gives ``out / in``.  A projecting one
    gives ``in / C``, where C is the input width of the nearest upstream
    pointwise conv that widens to ``v``'s input width (the layer's expand conv).
    Convs on 1x1 maps (squeeze-excite, the head after pooling) are not MBConv
    expand/project convs.  NaN when ``v`` is not such a conv or no expand conv is
    found within ``max_steps`` hops.  OFA rounds widths to multiples of 8, so the
    ratio can differ from e by a few tenths.
    """
    row = nodes.iloc[v]
    if row["kind"] != "pointwise" or row["in_C"] <= 0 or row["out_C"] <= 0 or row["in_H"] <= 1:
        return float("nan")
    if row["out_C"] > row["in_C"]:
        return float(row["out_C"] / row["in_C"])
    preds: dict[int, list[int]] = {}
    for s_, d_ in np.asarray(edges).reshape(-1, 2).tolist():
        preds.setdefault(d_, []).append(s_)
    seen, frontier = {v}, [v]
    for _ in range(max_steps):
        frontier = [u for w in frontier for u in preds.get(w, []) if u not in seen]
        seen.update(frontier)
        for u in sorted(frontier):
            r = nodes.iloc[u]
            if r["kind"] == "pointwise" and r["out_C"] == row["in_C"] and 0 < r["in_C"] < r["out_C"] and r["in_H"] > 1:
                return float(row["in_C"] / r["in_C"])
    return float("nan")


def longest_op_chain(sub: RootedSubgraph, nodes: pd.DataFrame, kind: str = "residual Add") -> int:
    """Most nodes of ``kind`` (``nodes['kind']``) on one directed path inside the subgraph."""
    succ: dict[int, list[int]] = {}
    for s_, d_ in sub.edges:
        succ.setdefault(s_, []).append(d_)
    memo: dict[int, int] = {}

    def best(v: int) -> int:  # most ``kind`` nodes on a path starting at v (the subgraph is a DAG)
        if v not in memo:
            memo[v] = int(nodes.iloc[v]["kind"] == kind) + max((best(w) for w in succ.get(v, [])), default=0)
        return memo[v]

    return max((best(v) for v in sub.nodes), default=0)


def ir_families(frame: pd.DataFrame) -> pd.Series:
    """Family (``mbv3``/``pn``) of every IR graph: the ``space`` column, else ``ofa_<family>_...`` in
    the ``arch`` name (the authors' graph names), else ``unknown``."""
    fam = frame["space"].astype(object) if "space" in frame else pd.Series([None] * len(frame), index=frame.index)
    named = frame["arch"].astype(str).str.extract(r"(?:^|_)(mbv3|pn)(?:_|$)", expand=False) \
        if "arch" in frame else pd.Series([None] * len(frame), index=frame.index)
    return fam.where(fam.isin(["mbv3", "pn"]), named).fillna("unknown").astype(str)


@torch.no_grad()
def category_means(model: AutoBuildPredictor, table: GraphTable, idx: Sequence[int] | None = None,
                   chunk: int = 1024) -> pd.Series:
    """Mean FE-MLP output ``|f_c(x_v^c)|`` per feature category over every node of the graphs ``idx``."""
    model.eval()
    idx = np.arange(len(table)) if idx is None else np.asarray(idx, dtype=np.int64)
    total, count = None, 0
    for start in range(0, len(idx), chunk):
        batch = table.batch(idx[start:start + chunk])
        h0 = model.fe(batch.x_cat, batch.x_num).double()
        total = h0.sum(dim=0) if total is None else total + h0.sum(dim=0)
        count += h0.shape[0]
    return pd.Series((total / count).numpy(), index=list(model.schema.names), name="mean |f_c|")


def ir_positions(space, arch, n_nodes: int | None = None, ops: Sequence[str] | None = None) -> pd.DataFrame | None:
    """(stage, layer, k, e) of every node of the Mini-OFA IR graph of ``arch``.

    Rebuilds the graph with :func:`autobuild_lib.core.ir.ir_graph` (which marks
    stages: 0 stem, 1..S the stages, S+1 head; k and e are 0 outside MBConv
    stages).  Returns ``None`` when ``n_nodes``/``ops`` are given and do not
    match the rebuilt graph (e.g. a graph from another exporter).
    """
    from autobuild_lib.core.ir import ir_graph

    rebuilt = ir_graph(space, arch)
    if n_nodes is not None and rebuilt.num_nodes != n_nodes:
        return None
    if ops is not None and list(ops) != list(rebuilt.op_names):
        return None
    stage = rebuilt.stage.numpy()
    layer = rebuilt.layer.numpy()
    ks, es = [], []
    for s, li in zip(stage.tolist(), layer.tolist()):
        if 1 <= s <= len(arch.stages):
            k, e = arch.stages[s - 1][li]
        else:
            k, e = 0, 0
        ks.append(k)
        es.append(e)
    return pd.DataFrame({"stage": stage, "layer": layer, "k": ks, "e": es})


# ---------------------------------------------------------------- drawing
_OP_COLOURS = {"Conv": "#4C72B0", "pointwise": "#4C72B0", "depthwise": "#64B5CD", "conv": "#8172B2",
               "Add": "#E9A3A5", "residual Add": "#C44E52", "Mul": "#DD8452", "Div": "#937860",
               "Relu": "#55A868", "Clip": "#8C8C8C", "ReduceMean": "#DA8BC3", "Gemm": "#CCB974", "Reshape": "#BBBBBB"}


def _node_label(row: pd.Series) -> str:
    if row["kind"] in ("pointwise", "depthwise", "conv"):
        head = f"{row['kind']} {row['kernel']}x{row['kernel']}"
    else:
        head = str(row["kind"])
    if row["in_C"] >= 0 and row["out_C"] >= 0 and row["in_C"] != row["out_C"]:
        ch = f"C {row['in_C']}->{row['out_C']}"
    else:
        ch = f"C {row['out_C']}" if row["out_C"] >= 0 else "C ?"
    return f"{head}\n{ch}"


def draw_subgraph(ax, sub: RootedSubgraph, nodes: pd.DataFrame, title: str | None = None,
                  extra: dict[int, str] | None = None) -> None:
    """Draw a rooted subgraph on ``ax``: one column per topological generation, root at the right.

    ``nodes`` is :func:`ir_nodes` of the subgraph's graph (all nodes); labels
    show op kind and channels, ``extra`` adds a line per node (e.g. stage/e).
    """
    import networkx as nx

    dg = nx.DiGraph()
    dg.add_nodes_from(sub.nodes)
    dg.add_edges_from(sub.edges)
    for layer, gen in enumerate(nx.topological_generations(dg)):
        for v in gen:
            dg.nodes[v]["layer"] = layer
    pos = nx.multipartite_layout(dg, subset_key="layer", align="vertical")
    nx.draw_networkx_edges(dg, pos, ax=ax, arrows=True, arrowsize=12, node_size=2400, edge_color="#555555")
    for v in dg.nodes:
        row = nodes.iloc[v]
        text = _node_label(row) + (f"\n{extra[v]}" if extra and v in extra else "")
        colour = _OP_COLOURS.get(row["kind"], _OP_COLOURS.get(row["op"], "#BBBBBB"))
        ax.text(*pos[v], text, ha="center", va="center", fontsize=7, zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", facecolor=colour, alpha=0.35 if v != sub.root else 0.6,
                          edgecolor="black", linewidth=2.0 if v == sub.root else 0.6))
    ax.set_title(title or f"{sub.hop}-hop subgraph rooted at node {sub.root} (score {sub.score:.2f})")
    ax.axis("off")
    ax.margins(0.15)


_E_COLOURS = {3: "#9ecae1", 4: "#4292c6", 6: "#08519c"}


def draw_module(ax, module: Sequence[tuple[int, int]], y: float = 0.0, x0: float = 0.0,
                label: str | None = None, gap: float = 0.25) -> float:
    """Draw a module as a row of MBConv blocks (width grows with k, height and colour with e).

    Returns the x where the row ends, so rows can be laid side by side.
    """
    from matplotlib.patches import Rectangle

    x = x0
    for k, e in module:
        w, h = 0.4 + 0.1 * k, 0.25 + 0.1 * e
        ax.add_patch(Rectangle((x, y - h / 2), w, h, facecolor=_E_COLOURS.get(e, "#cccccc"),
                               edgecolor="black", linewidth=0.8))
        ax.text(x + w / 2, y, f"k{k}\ne{e}", ha="center", va="center", fontsize=7,
                color="white" if e == 6 else "black")
        x += w + gap
    if label:
        ax.text(x0 - 0.15, y, label, ha="right", va="center", fontsize=8)
    return x


# ----------------------------------------------------- FE-MLP vs the data
def fe_score_table(models: Mapping[str, AutoBuildPredictor], features: Sequence[str] | None = None) -> pd.DataFrame:
    """FE-MLP scores of several predictors side by side: index (feature, value), one column per model name.

    ``features`` keeps (and orders) those categories; values keep the schema's vocabulary order.
    """
    if not models:
        raise ValueError("no models given")
    cols = {}
    for name, model in models.items():
        fe = fe_scores(model)
        if features is not None:
            unknown = [f for f in features if f not in set(fe["feature"])]
            if unknown:
                raise ValueError(f"features {unknown} not in the schema {list(model.schema.names)}")
            fe = fe[fe["feature"].isin(features)]
        cols[name] = fe.set_index(["feature", "value"])["score"]
    out = pd.DataFrame(cols)
    if features is not None:
        order = {f: i for i, f in enumerate(features)}
        keys = sorted(range(len(out)), key=lambda i: order[out.index[i][0]])  # stable: values keep their order
        out = out.iloc[keys]
    return out


def value_shares(table: GraphTable, feature: str) -> pd.DataFrame:
    """Per graph, the fraction of its nodes that take each value of ``feature`` (graphs x values).

    Categorical features are read from ``x_cat``; a numeric one needs display values in the schema
    (``num_display``, e.g. resolution 192/208/224) and counts the nodes whose encoded value matches.
    """
    schema = table.schema
    counts = np.diff(table.node_ptr.numpy())
    owner = np.repeat(np.arange(len(table)), counts)
    cats = [f.name for f in schema.categorical]
    if feature in cats:
        values = list(schema.categorical[cats.index(feature)].values)
        col = table.x_cat[:, cats.index(feature)].numpy()
        hit = np.stack([col == i for i in range(len(values))], axis=1)
    else:
        start = 0
        for f in schema.numeric:
            if f.name == feature:
                break
            start += f.dim
        else:
            raise ValueError(f"feature {feature!r} not in the schema {list(schema.names)}")
        if feature not in schema.num_display or f.dim != 1:
            raise ValueError(f"numeric feature {feature!r} has no display values to count")
        values, encode = schema.num_display[feature]
        col = table.x_num[:, start].numpy().astype(np.float64)
        hit = np.stack([np.isclose(col, encode(v)) for v in values], axis=1)
    per = np.zeros((len(table), len(values)))
    np.add.at(per, owner, hit.astype(np.float64))
    per /= np.maximum(counts, 1)[:, None]
    return pd.DataFrame(per, columns=pd.Index(list(values), name=feature))


def value_effects(table: GraphTable, y: np.ndarray, features: Sequence[str],
                  idx: Sequence[int] | None = None) -> pd.DataFrame:
    """How each feature value goes with the label in the data itself: SRCC over the graphs ``idx``
    between the share of a graph's nodes taking the value and the label.

    Returns index (feature, value) and columns ``effect`` (the SRCC; NaN when the share is constant)
    and ``share`` (mean share).  This is the data's answer that an FE-MLP score can be checked against.
    """
    from scipy.stats import spearmanr

    y = np.asarray(y, dtype=np.float64)
    if len(y) != len(table):
        raise ValueError(f"{len(y)} labels for {len(table)} graphs")
    idx = np.arange(len(table)) if idx is None else np.asarray(idx, dtype=np.int64)
    rows = []
    for feat in features:
        shares = value_shares(table, feat).iloc[idx]
        for v in shares.columns:
            s = shares[v].to_numpy()
            eff = float(spearmanr(s, y[idx]).statistic) if np.ptp(s) > 0 else float("nan")
            rows.append({"feature": feat, "value": v, "effect": eff, "share": float(s.mean())})
    return pd.DataFrame(rows).set_index(["feature", "value"])


def top_value_agreement(scores: pd.Series, effects: pd.Series) -> pd.DataFrame:
    """Per feature: does the value the FE-MLP scores highest go with better labels in the data?

    Both series are indexed (feature, value); values whose effect is NaN (never varying in the data)
    are left out, and so are features with fewer than two values left.  Columns:

    * ``top FE-MLP value`` and ``its data effect``;
    * ``helps``: that effect is positive;
    * ``chance``: the share of the feature's values with a positive effect -- the probability that a
      value picked at random ``helps``, so the sum of this column is the count expected by chance;
    * ``top data value`` (strongest positive effect) and ``agree`` (the two top values are the same).
    """
    joined = pd.DataFrame({"score": scores, "effect": effects}).dropna()
    rows = []
    for feat, g in joined.groupby(level=0, sort=False):
        g = g.droplevel(0)
        if len(g) < 2:
            continue
        top_s, top_e = g["score"].idxmax(), g["effect"].idxmax()
        eff = float(g.loc[top_s, "effect"])
        rows.append({"feature": feat, "top FE-MLP value": top_s, "its data effect": eff, "helps": bool(eff > 0),
                     "chance": float((g["effect"] > 0).mean()), "top data value": top_e,
                     "agree": bool(top_s == top_e)})
    cols = ["feature", "top FE-MLP value", "its data effect", "helps", "chance", "top data value", "agree"]
    return pd.DataFrame(rows, columns=cols).set_index("feature")


# ------------------------------------------------ module scores (Table 2, Eq. 5)
def normal_str(mu: float, sigma: float, digits: int = 2) -> str:
    """``N(mu, sigma)`` as the paper's Table 2 writes it; ``n/a`` when either is NaN."""
    if not (np.isfinite(mu) and np.isfinite(sigma)):
        return "n/a"
    return f"N({mu:.{digits}f}, {sigma:.{digits}f})"


def table2_hops(hop_mom: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Hop moments (:func:`autobuild_lib.core.scoring.hop_moments`) as one row of ``N(mu, sigma)`` per hop."""
    return pd.DataFrame({"N(mu_m^h, sigma_m^h)": [normal_str(r.mu, r.sigma, digits) for r in hop_mom.itertuples()]},
                        index=pd.Index([f"m={m}" for m in hop_mom.index], name="hop"))


def table2_labels(label_mom: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Label moments (:func:`autobuild_lib.core.scoring.label_moments`) as a unit x layers grid of ``N(mu, sigma)``."""
    cells = label_mom.apply(lambda r: normal_str(r["mu"], r["sigma"], digits), axis=1)
    out = cells.unstack("layers")
    out.index = [f"u={u}" for u in out.index]
    out.columns = [f"l={ln}" for ln in out.columns]
    return out.fillna("-")


def shift_summary(scores: pd.DataFrame, k: int) -> pd.DataFrame:
    """Before/after Eq. 5 per unit and module length.

    ``scores`` is :func:`autobuild_lib.core.scoring.score_modules` output (``raw`` and shifted ``score``).
    Columns: modules (count), mean/std of the raw and of the shifted score, and how many of the unit's
    top-``k`` modules (highest score) have this length, ranked by raw and by shifted score.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = []
    for u, grp in scores.groupby("unit", sort=True):
        top_raw = grp.sort_values("raw", ascending=False, kind="stable").head(k)["layers"]
        top_shift = grp.sort_values("score", ascending=False, kind="stable").head(k)["layers"]
        for ln, g in grp.groupby("layers", sort=True):
            rows.append({"unit": u, "layers": ln, "modules": len(g),
                         "raw mean": g["raw"].mean(), "raw std": g["raw"].std(),
                         "shifted mean": g["score"].mean(), "shifted std": g["score"].std(),
                         f"in raw top-{k}": int((top_raw == ln).sum()),
                         f"in shifted top-{k}": int((top_shift == ln).sum())})
    return pd.DataFrame(rows).set_index(["unit", "layers"])


def extreme_modules(scores: pd.DataFrame, n: int = 1, maximize: bool = True) -> pd.DataFrame:
    """The ``n`` best and ``n`` worst modules of every unit by shifted ``score``.

    ``maximize=False`` (e.g. a latency label) calls the lowest scores best.  Columns: unit, which
    (``best``/``worst``), rank (1 = most extreme), module, layers, raw, score.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows = []
    for u, grp in scores.groupby("unit", sort=True):
        order = grp.sort_values("score", ascending=not maximize, kind="stable")
        for which, part in (("best", order.head(n)), ("worst", order.iloc[::-1].head(n))):
            for r, row in enumerate(part.itertuples(), start=1):
                rows.append({"unit": u, "which": which, "rank": r, "module": row.module, "layers": row.layers,
                             "raw": row.raw, "score": row.score})
    return pd.DataFrame(rows)


def draw_extremes(ax, extremes: pd.DataFrame, title: str | None = None, unit_name: str = "unit") -> None:
    """Fig. 4-style drawing on ``ax``: one row per unit, its best module on the left and its worst on
    the right (rank 1 of :func:`extreme_modules`), each as MBConv blocks with its score."""
    from autobuild_lib.core.scoring import parse_module

    top = extremes[extremes["rank"] == 1]
    units = sorted(top["unit"].unique())
    width = 0.0
    right = 9.0
    for i, u in enumerate(units):
        y = -i
        for which, x0 in (("best", 0.0), ("worst", right)):
            row = top[(top["unit"] == u) & (top["which"] == which)]
            if row.empty:
                continue
            row = row.iloc[0]
            end = draw_module(ax, parse_module(row["module"]), y=y, x0=x0)
            ax.text(end, y, f" {row['score']:.3g}", ha="left", va="center", fontsize=7)
            width = max(width, end + 1.2)
        ax.text(-0.3, y, f"{unit_name} {u}", ha="right", va="center", fontsize=8)
    ax.text(0.0, 0.75, "best", fontsize=9, fontweight="bold")
    ax.text(right, 0.75, "worst", fontsize=9, fontweight="bold")
    ax.set_xlim(-2.0, max(width, right + 4.0))
    ax.set_ylim(-len(units) + 0.4, 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)

