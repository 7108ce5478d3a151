"""``DATA_CARD.md`` of the Mini-OFA benchmark, written from what generation recorded.

Every number in the card comes from a file in ``data/mini-ofa/``: ``runs.jsonl`` (wall time and
machine of each stage), ``reliability-<space>.json``, ``checks-<space>.json``, the tables and
``PILOT.md`` (the designs tried).  Parts not generated yet are listed as such.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd

from autobuild_lib.benchmarks.miniofa.constants import (
    ACC_SPLIT_HALF_BAR,
    ARCH_SEED,
    EXCLUSIVE_STAGES,
    MINI_OFA_DIR,
    STAGES,
    UNIT_COLUMNS,
    regenerate_command,
)
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, folder_lock

__all__ = ["write_card"]

SPACES = ("mbv3", "pn")


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x, nd: int = 3) -> str:
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _runs(root: Path) -> list[dict]:
    path = root / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _walltime_table(runs: list[dict]) -> str:
    wall: dict[tuple[str, str], float] = defaultdict(float)
    for r in runs:
        wall[(r["space"], r["stage"])] += r["wall_s"]
        if r["stage"] == "supernet" and "train_wall_s_total" in r:  # training time lives in the checkpoint
            wall[(r["space"], r["stage"])] = r["train_wall_s_total"]
    lines = ["| stage | " + " | ".join(SPACES) + " |", "|---|" + "---|" * len(SPACES)]
    extra = sorted({st for _, st in wall} - set(STAGES) - set(EXCLUSIVE_STAGES))
    for stage in (*STAGES, *EXCLUSIVE_STAGES, *extra):
        cells = [f"{wall[(s, stage)] / 60:.1f} min" if (s, stage) in wall else "not run" for s in SPACES]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    total = sum(wall.values()) / 3600
    return "\n".join(lines) + f"\n\nTotal recorded: {total:.2f} CPU-hours (one worker process per stage; pilot trainings and their reliability runs are timed in PILOT.md)."


def _machine(runs: list[dict]) -> str:
    if not runs:
        return "not recorded yet"
    m = runs[-1]["machine"]
    return (f"{m['cpu']}, {m['n_cpus']} CPUs, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
            f"ofa {m['ofa']}, {m['torch_threads']} torch thread per worker")


def _reliability_sources(root: Path) -> list[tuple[str, str, dict]]:
    """``(label, space, record)`` of every pilot (``pilots/<design>-<space>/``) and final measurement."""
    out = []
    for path in sorted((root / "pilots").glob("*/reliability.json")):
        design, _, space = path.parent.name.rpartition("-")
        out.append((f"pilot {design}", space, _read(path)))
    for s in SPACES:
        r = _read(root / f"reliability-{s}.json")
        if r is not None:
            out.append(("exported supernet", s, r))
    return out


def _bar_met(r: dict, space: str) -> bool:
    return r["srcc_split_acc"] >= ACC_SPLIT_HALF_BAR[space]


def _reliability(root: Path) -> str:
    rows = ["| measured on | space | subnets | eval images (halves) | split-half SRCC acc | split-half SRCC CE | "
            "SRCC(acc, depth) | SRCC(acc, resolution) | acc mean +/- std [min, max] | split-half bar met |", "|---|" + "---|" * 9]
    sources = _reliability_sources(root)
    if not sources:
        return "Not measured yet."
    for label, s, r in sources:
        rows.append(f"| {label} | {s} | {r['n_archs']} | {r['n_eval']} ({r['n_half'][0]}+{r['n_half'][1]}) | "
                    f"{r['srcc_split_acc']:.3f} | {r['srcc_split_ce']:.3f} | {r['srcc_acc_depth']:.3f} | "
                    f"{r['srcc_acc_resolution']:.3f} | {r['acc_mean']:.2f} +/- {r['acc_std']:.2f} "
                    f"[{r['acc_min']:.2f}, {r['acc_max']:.2f}] | {'yes' if _bar_met(r, s) else '**no**'} |")
    return "\n".join(rows)


def _progress(root: Path) -> str:
    """Finished work units per stage and space, and statistics of the finished labels."""
    from autobuild_lib.benchmarks.miniofa.constants import UNIT_COLUMNS

    lines = ["| space | " + " | ".join(UNIT_COLUMNS) + " |", "|---|" + "---|" * len(UNIT_COLUMNS)]
    stats = []
    for s in SPACES:
        cells = []
        for stage, cols in UNIT_COLUMNS.items():
            rows = ShardStore(root / "work" / s / stage).rows() if (root / "work" / s / stage).is_dir() else {}
            cells.append(str(len(rows)))
            if rows:
                frame = pd.DataFrame(list(rows.values()))[list(cols)]
                stats.append(frame.describe().T[["count", "mean", "std", "min", "max"]].rename(index=lambda c: f"{s} {c}"))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if stats:
        text += "\n\nStatistics of the finished units:\n\n" + pd.concat(stats).to_markdown(floatfmt=".4g")
    return text


def _latency_models(root: Path) -> str:
    out = []
    for s in SPACES:
        m = _read(root / f"latency-model-{s}.json")
        if m is not None:
            out.append(f"- `{s}`: k-GNN trained on {m['n_train']} measured latencies ({m['epochs']} epochs, "
                       f"{m['train_wall_s'] / 60:.1f} min); held-out {m['n_test']}: MAE {m['test_mae_ms']:.2f} ms, "
                       f"mean |relative error| {m['test_mape_pct']:.1f} %, SRCC {m['test_srcc']:.3f}.")
    return "\n".join(out) or "- not trained yet"


def _latency_rounds(root: Path) -> str:
    """The repeatable latency: protocol chosen by the pilot, the rounds' figures, and the predictor's
    error on architectures outside the benchmark (``latency-constructed-<space>.json``)."""
    last = {(r["space"], r["stage"]): r for r in _runs(root) if r.get("stage") in EXCLUSIVE_STAGES}
    out = []
    for s in SPACES:
        proto = _read(root / f"latency-protocol-{s}.json")
        if proto is None:
            out.append(f"- `{s}`: not measured yet (the single-pass `latency` stage stands).")
            continue
        p = proto.get("pilot")
        line = f"- `{s}`: **{proto['rounds']} rounds x {proto['passes']} passes**"
        if p is not None:
            line += (f", chosen by a pilot of {p['rounds']} rounds x {p['passes']} passes on {p['n_archs']} architectures "
                     f"(split-half SRCC {p['srcc_halves']:.3f}; with the chosen protocol {proto['srcc_halves']:.3f}, "
                     f"predicted {proto['predicted_s'] / 60:.0f} min for the space, budget {proto['budget_s'] / 60:.0f} min)")
        line += ". "
        r = last.get((s, "latency_rounds"))
        if r is not None and "srcc_halves" in r:
            line += (f"Rounds: {r['rounds']} x {r['n_archs']:,} architectures on {r['cpu_model']}, "
                     f"{r['wall_s'] / 60:.0f} min; split-half SRCC(latency_cpu_a, latency_cpu_b) {r['srcc_halves']:.4f}, "
                     f"SRCC between two rounds {r['round_srcc_mean']:.4f} on average (min {r['round_srcc_min']:.4f}); "
                     f"{100 * r['units_loaded']:.1f} % of units timed at 1-min load > 1.5.")
        else:
            line += "Rounds not complete yet."
        c = _read(root / f"latency-constructed-{s}.json")
        if c is not None:
            line += (f" Latency predictor on {c['n']} architectures outside the benchmark ({c['source'] or c['tag']}), "
                     f"measured with the same protocol: MAE {c['mae_ms']:.2f} ms, mean |relative error| "
                     f"{c['mape_pct']:.1f} %, SRCC {c['srcc']:.3f} (on the benchmark's held-out split: MAE "
                     f"{_fmt(c['benchmark_test_mae_ms'], 2)} ms, SRCC {_fmt(c['benchmark_test_srcc'])}).")
        out.append(line)
    return "\n".join(out)


def _latency_status(root: Path) -> str:
    bad = {s: c["repeat"]["latency_srcc"] for s in SPACES if (c := _read(root / f"checks-{s}.json")) is not None
           and not c["repeat"]["latency_srcc"] >= 0.9}
    if not bad:
        return ""
    return ("\n\n**The measured latencies fail the repeatability check** (re-measured SRCC "
            + ", ".join(f"{s} {v:.3f}" for s, v in bad.items())
            + " < 0.9): timing on this shared machine drifts by 10-20 % between runs; see *Quality checks* and PILOT.md.")


def _status(root: Path) -> str:
    return _status_tables(root) + _latency_status(root)


def _status_tables(root: Path) -> str:
    done = [s for s in SPACES if (root / f"{s}.csv").exists()]
    finished = ""
    if done:
        finished = "Tables finished: " + ", ".join(f"`{s}.csv` ({_latency_source(root / f'{s}.csv')})" for s in done) + "."
        if len(done) == len(SPACES):
            return finished
        finished += " "
    exported = _exported(root)
    if not exported:
        return finished + "Generation in progress; see *Progress*."
    counts = ", ".join(f"{s} {len(ShardStore(root / 'work' / s / 'acc').rows()):,} of 3,000" for s in SPACES)
    bars = " / ".join(f"{v} ({s})" for s, v in ACC_SPLIT_HALF_BAR.items())
    return (finished + f"**Accuracy labelling in progress** with design {', '.join(sorted({r['design'] for r in exported}))} "
            f"(exported for {', '.join(r['space'] for r in exported)}; a space's supernet is exported when its "
            f"`acc` stage starts): {counts} labels measured. Reliability bar: split-half SRCC(acc_a, acc_b) >= "
            f"{bars} over all labelled architectures. The pilots' depth bar (SRCC(acc, depth) >= 0.3) is dropped: "
            "at 48-56 px with stem stride 2 depth hardly changes accuracy; see *Accuracy labels measured so far*.")


def _latency_source(table: Path) -> str:
    """Where a merged table's ``latency_cpu`` comes from: the shuffled rounds, or the provisional single pass."""
    header = table.read_text().split("\n", 1)[0].split(",")
    if "latency_cpu_a" in header:
        return "latency_cpu from the shuffled rounds"
    return "latency_cpu still from the single pass; merged again when the latency rounds are done"


def _exported(root: Path) -> list[dict]:
    """The latest ``supernet`` record of each space in ``runs.jsonl``."""
    last = {r["space"]: r for r in _runs(root) if r.get("stage") == "supernet" and "design" in r}
    return [last[s] for s in SPACES if s in last]


def _checks(root: Path) -> str:
    out = []
    for s in SPACES:
        c = _read(root / f"checks-{s}.json")
        if c is None:
            out.append(f"- `{s}`: checks not run yet.")
            continue
        rep, ir = c["repeat"], c["ir"]
        if c.get("partial"):
            head = (f"- `{s}` (design-independent labels only, no `acc` yet): {c['rows']} rows; "
                    f"SRCC(flops, latency_cpu) {c['srcc_flops_latency']:.3f}. ")
        else:
            srcc = c["srcc_acc"]
            head = (f"- `{s}`: {c['rows']} rows; acc std {c['labels']['acc']['std']:.2f} (bar >= 0.5); "
                    f"SRCC(acc, flops) {srcc['flops']:.3f}, SRCC(acc, depth) {srcc['depth']:.3f}, "
                    f"SRCC(acc, latency_cpu) {srcc['latency_cpu']:.3f}, SRCC(acc, flops_mini) {srcc['flops_mini']:.3f}. "
                    f"Fresh-process re-evaluation of {rep['n']} rows: {rep['acc_identical']}/{rep['n']} identical acc; ")
        out.append(
            head + f"{rep['exact_rows_identical']}/{rep['n_exact_rows']} rows re-computed in a fresh process identical in "
            f"{', '.join(rep.get('exact_columns', ['acc', 'flops', 'n_params']))}; "
            f"{rep['n']} re-measured latencies: SRCC {rep['latency_srcc']:.3f} with the stored ones (bar >= 0.9), "
            f"median |relative difference| {100 * rep['latency_median_abs_rel_diff']:.1f} %. IR: {ir['graphs']} graphs load "
            f"(keys match table: {ir['keys_match_table']}), {ir['nodes_mean']:.0f} nodes on average; op types "
            + ", ".join(f"{k} ({v})" for k, v in ir["op_vocabulary"].items()) + ".")
    return "\n".join(out)


def _stats(root: Path) -> str:
    parts = []
    for s in SPACES:
        path = root / f"{s}.csv"
        if not path.exists():
            parts.append(f"`{s}.csv`: not generated yet.\n")
            continue
        desc = pd.read_csv(path).describe().T[["count", "mean", "std", "min", "max"]]
        parts.append(f"`{s}.csv`\n\n" + desc.to_markdown(floatfmt=".4g") + "\n")
    return "\n".join(parts)


def _label_figures(root: Path) -> str:
    """Split-half reliability over every labelled architecture and SRCC of acc with the cost labels."""
    from scipy.stats import spearmanr

    from autobuild_lib.benchmarks.miniofa.supernet import space_of

    rows = []
    for s in SPACES:
        acc = ShardStore(root / "work" / s / "acc").rows()
        if not acc:
            continue
        d = pd.DataFrame(list(acc.values()))
        for stage in ("static", "latency"):
            done = pd.DataFrame(list(ShardStore(root / "work" / s / stage).rows().values()),
                                columns=["arch", *UNIT_COLUMNS[stage]])
            d = d.merge(done, on="arch", how="left")
        arch = [space_of(s).from_string(a) for a in d["arch"]]
        d["depth"], d["resolution"] = [a.n_layers for a in arch], [a.resolution for a in arch]
        r_half = spearmanr(d["acc_a"], d["acc_b"])[0] if {"acc_a", "acc_b"} <= set(d) else float("nan")
        rows.append({"space": s, "labelled": len(d), "SRCC(acc_a, acc_b)": r_half,
                     "Spearman-Brown": 2 * r_half / (1 + r_half), "acc std": d["acc"].std(),
                     **{f"SRCC(acc, {c})": spearmanr(d["acc"], d[c])[0]
                        for c in ("flops", "depth", "resolution", "latency_cpu")}})
    if not rows:
        return "No accuracy labels yet."
    return (pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f") + "\n\n`acc_a` / `acc_b` are the "
            "accuracies on the two stratified halves of the evaluation canvases (`acc` is their mean); the "
            "Spearman-Brown figure is the reliability of `acc` itself. `latency_cpu` here is the single-pass "
            "measurement (the `latency` stage's units); the tables' repeatable latency is under *Repeatable latency*.")


def _speed(root: Path) -> str:
    r = _read(root / "label-speed.json")
    if r is None:
        return "not measured"
    lines = [f"Measured by `scripts/label_speed.py` on {r['machine']['cpu']} ({r['machine']['n_cpus']} cores, "
             f"1 torch thread), baseline and new code alternating in one process:", "",
             "| space | subnets re-labelled | max abs diff acc / acc_a / acc_b vs stored | CPU s/label before | after | speed-up |",
             "|---|---|---|---|---|---|"]
    for s, x in r["spaces"].items():
        d = x["max_abs_diff_vs_stored"]
        lines.append(f"| {s} | {x['n_subnets']} | {d['acc']:g} / {d['acc_a']:g} / {d['acc_b']:g} | "
                     f"{x['baseline_s_per_label']['cpu']:.2f} | {x['new_s_per_label']['cpu']:.2f} | {x['speedup_cpu']:.2f}x |")
    return "\n".join(lines)


def _config(root: Path) -> str:
    lines = []
    for r in _exported(root):
        rel = _read(root / "pilots" / f"{r['design']}-{r['space']}" / "reliability.json") or {}
        cfg = rel.get("config", {})
        lines.append(f"- `{r['space']}`: design {r['design']}, `supernet-{r['space']}.pt` exported from "
                     f"`{r.get('exported_from', '?')}` (retrained: {r.get('retrained', '?')}); "
                     + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    return "\n".join(lines) or "- no supernet exported yet"


def write_card(root: str | Path = MINI_OFA_DIR) -> Path:
    """(Re)write ``root/DATA_CARD.md`` from the recorded files."""
    root = Path(root)
    runs = _runs(root)
    pilot = root / "PILOT.md"
    text = f"""# Mini-OFA benchmark: data card

*Written by `autobuild_lib.benchmarks.miniofa.card.write_card` from the files in this folder; regenerate
everything with `{regenerate_command('mbv3')}` and `... --space pn` (resumable).*

## What it is
The paper's classification data (3k random OFA MobileNetV3 and ProxylessNAS architectures with
ImageNet accuracy and device latencies) rebuilt at CPU scale with every label measured here:

- `acc` (top-1 %) and `ce`: the subnet of an OFA elastic supernet (the `ofa` package's
  `OFAMobileNetV3` / `OFAProxylessNASNets`, reduced width) trained on *cluttered Fashion-MNIST*
  (real Fashion-MNIST items on 56 px canvases with fragments of other items; resolutions
  192/208/224 map to 48/52/56 px), inherited weights, BatchNorm recalibrated on fixed calibration
  canvases, evaluated on fixed held-out canvases. Task, splits and training: `autobuild_lib/miniofa/supernet.py`.
- `flops` (MFLOPs, OFA's count of conv + linear multiply-accumulates) and `n_params` (millions) of
  the same architecture at ImageNet scale (1000 classes, MBv3 w1.2 / PN w1.3, input 192/208/224).
- `latency_cpu` (ms): batch-1 forward time of that ImageNet-scale subnet on the machine below,
  1 torch thread. Once a space's shuffled rounds are complete: the median over rounds of the
  median over timed passes, each round visiting all architectures in a new random order
  (`latency_cpu_a` / `_b`: the same over the even / odd rounds; see *Repeatable latency*);
  until then the single pass, the median of 11 timed passes after 3 warm-up passes.
- `flops_mini` (MFLOPs): the mini subnet that produced `acc`, at its mini input size.
- `ir-<space>.npz`: op-level IR graphs (ONNX export) of the ImageNet-scale subnets.

Architectures: `OFASpace.sample(np.random.default_rng([{ARCH_SEED}, i]))`, i = 0, 1, ..., duplicates
skipped (OFA's order: depth per stage, then k and e per layer, then resolution).

## Status
{_status(root)}

## Supernet configuration
{_config(root)}

## Label reliability (40 random subnets, measured before labelling)
{_reliability(root)}

Designs tried before this one: see `PILOT.md`{' (below)' if pilot.exists() else ''}.

## Quality checks
{_checks(root)}

## Progress (finished work units)
{_progress(root)}

## Repeatable latency (shuffled rounds)
{_latency_rounds(root)}

## Latency predictors
{_latency_models(root)}

## Accuracy labels measured so far
{_label_figures(root)}

Evaluation speed (inputs prepared once per resolution, BatchNorm folded, `torch.inference_mode`):
{_speed(root)}

## Label statistics
{_stats(root)}

## Wall time per stage
{_walltime_table(runs)}

Machine: {_machine(runs)}.

## Files
Every file here is listed with its sha256 in `MANIFEST.json`; loading a table verifies it.
`work/<space>/<stage>/shard-*.jsonl` are the finished work units the tables are merged from.
`evaluations.sqlite` and `predictors/` are committed caches, not data (the manifest leaves them out): the accuracy
of the new architectures chapters 05 and 06 evaluate (keyed by the supernet weights' sha256; filled by
`python -m autobuild_lib chapter05 --fill` / `chapter06 --fill`, whose runs the wall-time table lists as
`chapter05_fill` / `chapter06_fill`), and the full-profile predictors of chapters 03-06 (keyed by labels,
training config and model code), so that a fresh clone builds the same architectures without retraining.
"""
    if pilot.exists():
        text += "\n## Pilot designs (PILOT.md)\n\n" + pilot.read_text().split("\n", 1)[1]
    out = root / "DATA_CARD.md"
    with folder_lock(root):  # another generator may be writing the card
        tmp = root / f".partial-DATA_CARD.md.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, out)
    return out
