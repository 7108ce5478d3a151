"""``DATA_CARD.md`` of the Mini-Panoptic benchmark, written from what generation recorded.

Every number comes from a file in ``data/mini-panoptic/``: ``supernet.pt`` (its stored
configuration), ``supernet-trainlog.json``, ``reliability.json``, the tables ``pseudo.csv`` /
``full.csv`` / ``constructed.csv``, ``construction.json`` and ``runs.jsonl`` (wall time and machine
of each stage).  Parts not generated yet are listed as such, so the card can be rewritten after
every stage.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.panoptic.archs import pseudo_rows
from autobuild_lib.benchmarks.panoptic.constants import (
    ARCH_SEED,
    BACKBONE,
    CONFIG,
    MINI_PANOPTIC_DIR,
    N_FULL,
    N_PSEUDO,
    RELIABILITY_BAR,
    RELIABILITY_SEED,
    STAGES,
)
from autobuild_lib.benchmarks.panoptic.labelkey import label_work
from autobuild_lib.benchmarks.panoptic.train import PanopticConfig
from autobuild_lib.benchmarks.pipeline.workunits import folder_lock

__all__ = ["REGENERATE", "write_card"]

REGENERATE = "python -m autobuild_lib generate mini-panoptic --n-jobs 2"


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _runs(root: Path) -> list[dict]:
    path = root / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _config(root: Path) -> tuple[PanopticConfig, bool]:
    """The labelling configuration: ``config.json`` (written by every generation run), else the one
    stored in ``supernet.pt`` (``True``), else the default (``False``)."""
    if (root / "config.json").exists():
        return PanopticConfig(**json.loads((root / "config.json").read_text())), True
    path = root / "supernet.pt"
    if path.exists():
        import torch

        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)["config"]
            return PanopticConfig(**stored), True
        except Exception:  # noqa: BLE001 -- an unreadable file is reported by the loader, not the card
            pass
    return CONFIG, False


def _current(root: Path) -> dict[str, str]:
    """The shard folders (relative to ``root``, by label kind) of the configuration the last run used
    (``config.json``, else the default); none while ``supernet.pt`` is absent or unreadable."""
    cfg, _ = _config(root)
    try:
        return {k: label_work(root, cfg, k).relative_to(root).as_posix() for k in ("pseudo", "full")}
    except FileNotFoundError:
        return {}


def _progress(root: Path, work: str | None, n: int) -> str:
    """`` N of n units done in <work>`` while a run is under way, else empty."""
    from autobuild_lib.benchmarks.pipeline.workunits import ShardStore

    if work is None or not (root / work).is_dir():
        return ""
    return f" {len(ShardStore(root / work).rows()):,} of {n:,} units done in `{work}`."


def _pseudo_progress(root: Path, work: str | None) -> str:
    """While the pseudo stage is under way: how many benchmark architectures are labelled (the
    reliability ones stored beside them not counted), their CPU time and their split-half SRCC."""
    if work is None or not (root / work).is_dir():
        return ""
    cfg, _ = _config(root)
    rows = pseudo_rows(root, cfg)
    if not rows:
        return ""
    hours = sum(r.get("eval_s", 0.0) for r in rows) / 3600
    frame = pd.DataFrame(rows)
    return (f" Under way: {len(rows):,} of {N_PSEUDO:,} benchmark architectures labelled in `{work}` "
            f"({hours:.2f} worker-hours, the sum of their `eval_s`: each unit's wall time in its worker process, "
            f"beside whatever else ran); split-half SRCC over them: {_split_half(frame)}.")


def _backbone_width() -> str:
    try:
        import torch

        return f"w{torch.load(BACKBONE, map_location='cpu', weights_only=True)['config']['width_mult']}"
    except Exception:  # noqa: BLE001
        return "reduced-width"


def _machine(m: dict) -> str:
    return f"{m.get('cpu', '?')}, {m.get('n_cpus', '?')} CPUs"


def _design(r: dict) -> str:
    """The mosaic counts a run labelled with (recorded since issue 15)."""
    return f"{r['n_val']:,} / {r['n_test']:,}" if "n_val" in r else "not recorded (pilots)"


def _stage_table(runs: list[dict]) -> str:
    """Wall time per stage and label configuration (validation / test mosaics), summed over its runs."""
    wall: dict[tuple[str, str], float] = {}
    jobs: dict[tuple[str, str], int] = {}
    machines: dict[tuple[str, str], str] = {}
    units: dict[tuple[str, str], tuple[int, int]] = {}   # (labelled by logged runs, done before the first)
    for r in runs:
        key = (r["stage"], _design(r))
        wall[key] = wall.get(key, 0.0) + r["wall_s"]
        jobs[key] = 1 if r["stage"] == "supernet" else r.get("n_jobs", 1)   # the supernet trains in one process
        machines[key] = _machine(r.get("machine", {}))
        if "done_now" in r:   # a work-unit stage: count the units its logged runs labelled
            now, before = units.get(key, (0, r["done_before"]))
            units[key] = (now + r["done_now"], before)
        if r["stage"] == "supernet" and "train_wall_s_total" in r:   # resumed training: the checkpoint's total
            wall[key] = max(wall[key], r["train_wall_s_total"])
    notes = {k: f" ({n:,} units; {b:,} labelled by runs cut off before they were logged)"
             for k, (n, b) in units.items() if b}
    lines = ["| stage | validation / test mosaics | wall time | worker processes | machine |", "|---|---|---|---|---|"]
    for s in STAGES:
        keys = [k for k in wall if k[0] == s]
        lines += [f"| {s} | {k[1]} | {wall[k] / 60:.1f} min{notes.get(k, '')} | {jobs[k]} | {machines[k]} |" for k in keys] or \
            [f"| {s} | | not run | | |"]
    cpu_h = sum(wall[k] * jobs[k] for k in wall) / 3600
    return "\n".join(lines) + f"\n\nTotal: about {cpu_h:.2f} CPU-hours (wall time x worker processes)."


def _unit_hours(tables: dict[str, pd.DataFrame | None]) -> str:
    """Worker-hours per label table, from its per-unit ``finetune_s`` and ``eval_s`` columns (an
    architecture listed twice, e.g. built by two equations, was labelled once)."""
    out = []
    for name, frame in tables.items():
        if frame is None:
            continue
        frame = frame.drop_duplicates("arch") if "arch" in frame.columns else frame   # one unit per architecture
        secs = sum(float(frame[c].sum()) for c in ("finetune_s", "eval_s") if c in frame.columns)
        out.append(f"`{name}.csv` {secs / 3600:.2f} worker-hours over {len(frame):,} architectures")
    return "; ".join(out)


def _split_half(frame: pd.DataFrame | None) -> str:
    """Split-half SRCC of ``pq_a`` / ``pq_b`` over the rows of ``frame``, with the Spearman-Brown
    reliability ``2r / (1 + r)`` of the label that averages both halves, against the bar."""
    if frame is None or not {"pq_a", "pq_b"} <= set(frame.columns) or len(frame) < 3:
        return "not measured yet"
    r = _spearman(frame["pq_a"], frame["pq_b"])
    return (f"**{r:.3f}** over {len(frame)} architectures ({'meets' if r >= RELIABILITY_BAR else 'misses'} the bar "
            f"{RELIABILITY_BAR}; Spearman-Brown reliability of the whole label {2 * r / (1 + r):.3f})")


def _describe(frame: pd.DataFrame, cols: list[str]) -> str:
    d = frame[[c for c in cols if c in frame.columns]].describe().T
    return d[["count", "mean", "std", "min", "50%", "max"]].round(3).to_markdown()


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0]) if len(a) > 2 else float("nan")


def write_card(root: str | Path = MINI_PANOPTIC_DIR) -> Path:
    """Rewrite ``root/DATA_CARD.md`` (atomically) from the recorded files."""
    root = Path(root)
    runs = _runs(root)
    cfg, recorded = _config(root)
    stored = cfg
    work = _current(root)
    pseudo, full, constructed = (pd.read_csv(root / f"{n}.csv") if (root / f"{n}.csv").exists() else None
                                 for n in ("pseudo", "full", "constructed"))
    rel = _read(root / "reliability.json")
    if rel is not None and sum(rel["halves"]) != cfg.n_val:   # the labels record the validation size they used
        cfg = replace(cfg, n_val=int(sum(rel["halves"])))
    n_full = len(pd.read_csv(root / "full.csv")) if (root / "full.csv").exists() else N_FULL
    parts = [
        "# Mini-Panoptic: a CPU-sized panoptic-segmentation benchmark for Sec. 5.2 / 7.7",
        "",
        "*Written by `autobuild_lib.benchmarks.panoptic.card.write_card` from the files in this folder.*",
        "",
        "**Task.** Panoptic segmentation of Fashion-MNIST mosaics (`autobuild_lib.benchmarks.panoptic.mosaics`): a "
        f"{cfg.size}x{cfg.size} canvas split by a random straight line into two textured *stuff* regions "
        "(class 10: stripes, class 11: dots) with 1-4 Fashion-MNIST garments pasted on it as *things* "
        "(classes 0-9, one instance each, non-overlapping 28x28 boxes). Label: **PQ** (panoptic quality "
        "in %, torchmetrics' definition over the 12 classes; `pq_things` over the 10 thing classes only).",
        "",
        f"**Splits** (all mosaics fixed by seed {cfg.seed}): {cfg.n_train} training and {cfg.n_calib} "
        "BatchNorm-calibration mosaics from the Fashion-MNIST train split minus a held-out pool of "
        f"{cfg.n_val_pool} garments; {cfg.n_val} validation mosaics from that pool (the pseudo labels; "
        f"two halves of {cfg.n_val // 2} for the reliability check); {cfg.n_test} test mosaics from the "
        "Fashion-MNIST test split (the fully fine-tuned labels; two halves for their reliability). Each mosaic "
        "draws its garments with replacement from its pool, so a pool serves any number of mosaics (a garment "
        "then appears in several).",
        "",
        f"**Model.** The Mini-OFA MBv3 supernet ({_backbone_width()}, design C weights "
        "`data/mini-ofa/pilots/C-mbv3/supernet.pt`, trained on cluttered Fashion-MNIST) as backbone and a "
        f"light FPN semantic head ({cfg.head_channels} channels; stages 1, 2, 4 and the final expansion) "
        "predicting the 12 classes; instances are the 4-connected components of each predicted thing "
        f"class (components under {cfg.min_area} px go to the likelier stuff class). Supernet and head "
        f"were fine-tuned together for {cfg.supernet_steps} sandwich-rule steps (largest, smallest and one "
        f"random subnet per step; AdamW, lr {cfg.lr}, batch {cfg.batch_size}, pixel-wise cross-entropy).",
        "",
        "**Labels.** `pseudo.csv` (the paper's pseudo labels): each architecture's static subnet with "
        f"inherited weights, BatchNorm recalibrated on the calibration mosaics, PQ on the validation "
        "mosaics (`pq`; `pq_a` / `pq_b` on its halves, `pq_things`, `miou` of the argmax semantic map and the "
        "mean pixel cross-entropy `ce` from the same forward passes). `full.csv` (the paper's fully fine-tuned "
        f"labels): the first {n_full} architectures of `pseudo.csv`, each subnet fine-tuned alone for "
        f"{cfg.ft_steps} steps (lr {cfg.ft_lr}), PQ on the test mosaics (`pq_full`, with the same further "
        "columns on the test halves and set). `flops`: OFA's count "
        f"of conv + linear multiply-accumulates of backbone + head on one {cfg.size}x{cfg.size} mosaic, in "
        "MFLOPs of the mini model.",
        "",
        f"**Architectures**: `OFASpace.sample(np.random.default_rng([{ARCH_SEED}, i]))` of the MBv3 space at "
        f"the one resolution 224 (= the whole {cfg.size} px mosaic), duplicates skipped; the reliability "
        f"set uses seed {RELIABILITY_SEED}. `constructed.csv`: per label equation, the architectures "
        "AutoBuild built from the pseudo labels (top-K modules per stage), labelled exactly like `full.csv`.",
        "",
        f"Regenerate: `{REGENERATE}` (resumable; each stage skips what is done).",
    ]
    if not recorded:
        parts += ["", "*`supernet.pt` not there yet: the configuration above is the default.*"]
    else:
        changed = [f"`{k}` {getattr(stored, k)} -> {getattr(CONFIG, k)}" for k in CONFIG.__dataclass_fields__
                   if getattr(stored, k) != getattr(CONFIG, k)]
        if changed:
            parts += ["", "*The configuration above is the recorded one (`config.json`, else `supernet.pt`; "
                          "validation size from `reliability.json`); the current generation code (`PanopticConfig()`) differs in: "
                          + ", ".join(changed) + ". Stages run after such a change use the current values.*"]
    parts += ["", "## Differences from the paper", "",
              "- 64 px Fashion-MNIST mosaics (12 classes, 1-4 things each) instead of MS-COCO panoptic.",
              f"- Backbone: the {_backbone_width()} MBv3 Mini-OFA supernet trained on cluttered Fashion-MNIST, "
              "instead of OFA's ImageNet MBv3 supernet.",
              "- Head: a light FPN semantic head + connected components for instances, instead of the "
              "paper's panoptic segmentation head.",
              f"- {cfg.supernet_steps} sandwich-rule steps for the panoptic supernet; {cfg.ft_steps} "
              "fine-tuning steps per fully fine-tuned label.",
              "- PQ in %, FLOPs in MFLOPs of the mini model (not the paper's GFLOPs at COCO resolution).",
              "- One fixed input resolution (the paper's panoptic setting has no resolution choice either; "
              "architectures are stored at 224).",
              "", "## Supernet fine-tuning", ""]
    log = _read(root / "supernet-trainlog.json")
    if log:
        def mean_at(key: str, s: int) -> float:
            return float(np.mean([r[key] for r in log[max(0, s - 50):s]]))

        marks = [s for s in (50, 150, 300, 450, len(log)) if s <= len(log)]
        parts.append(f"{len(log)} steps in {log[-1]['wall_s'] / 60:.1f} min. Cross-entropy (mean of the 50 "
                     "steps up to), largest / smallest subnet: "
                     + ", ".join(f"step {s}: {mean_at('loss_largest', s):.3f} / {mean_at('loss_smallest', s):.3f}"
                                 for s in marks))
    else:
        parts.append("not trained yet")
    parts += ["", "## Label reliability", ""]
    parts.append(f"Bar (`constants.RELIABILITY_BAR`): split-half SRCC of PQ >= {RELIABILITY_BAR}, for the pseudo "
                 "labels (validation halves) and the fully fine-tuned labels (test halves).")
    parts.append("")
    if rel is None:
        parts.append("Reliability set: not measured yet.")
    else:
        a, b = np.array(rel["pq_a"]), np.array(rel["pq_b"])
        ok = rel["srcc_halves"] >= RELIABILITY_BAR
        current = rel.get("work") is not None and rel.get("work") == work.get("pseudo")
        parts.append(
            f"{rel['n']} random architectures (seed {RELIABILITY_SEED}) pseudo-labelled; **SRCC between the PQs "
            f"of the two validation halves ({rel['halves'][0]} + {rel['halves'][1]} mosaics): "
            f"{rel['srcc_halves']:.3f}** ("
            + (f"bar: >= {RELIABILITY_BAR}, {'met' if ok else 'NOT met'}" if current else f"bar then: >= {rel.get('bar')}")
            + f"). Mean |PQ_a - PQ_b| "
            f"{np.abs(a - b).mean():.2f} against a PQ spread (std) of {rel['pq_std']:.2f} (mean {rel['pq_mean']:.2f}, "
            f"range {rel['pq_range'][0]:.2f}-{rel['pq_range'][1]:.2f}); SRCC(PQ, FLOPs) {rel['srcc_pq_flops']:.3f}."
            + ("" if current else " *Measured under another label configuration (shards "
               + (f"`{rel['work']}`" if "work" in rel else "not keyed by configuration")
               + "), so it does not count: the `reliability` stage measures it anew under the current one.*"))
    parts += ["", f"Over all labelled architectures (from the halves): pseudo labels {_split_half(pseudo)}; fully "
                  f"fine-tuned labels, random architectures {_split_half(full)}; constructed architectures "
                  f"{_split_half(None if constructed is None else constructed.drop_duplicates('arch'))}."]
    curve = _read(root / "reliability-curve.json")
    if curve is not None:
        c = pd.DataFrame(curve["curve"])
        table = c.pivot(index="n_eval", columns="kind", values="srcc_mean")
        need = ", ".join(f"{k} {v:,.0f}" if np.isfinite(v) else f"{k} never (SRCC <= 0)"
                         for k, v in curve["images_for_bar"].items())
        parts += ["", f"**Reliability curve** (`reliability-curve.json`): the same {curve['n_archs']} architectures "
                      f"on {curve['n_mosaics']} further validation mosaics; mean split-half SRCC over random draws "
                      "of disjoint halves, per evaluation-set size (both halves) and label (PQ; mIoU of the "
                      "semantic map; minus the pixel cross-entropy):", "",
                  table.round(3).to_markdown(), "",
                  f"Mosaics needed for SRCC {curve.get('bar', RELIABILITY_BAR)} (Spearman-Brown from the largest "
                  f"size): {need}."]
    parts += ["", "## Labels", ""]
    if pseudo is not None:
        parts += [f"`pseudo.csv`: {len(pseudo)} architectures, PQ {pseudo['pq'].min():.2f}-{pseudo['pq'].max():.2f} "
                  f"(std {pseudo['pq'].std():.2f}), mean |PQ_a - PQ_b| "
                  f"{(pseudo['pq_a'] - pseudo['pq_b']).abs().mean():.2f}.", "",
                  _describe(pseudo, ["pq", "pq_a", "pq_b", "pq_things", "miou", "ce", "flops", "eval_s"]), ""]
    else:
        unreliable = rel is not None and not rel["srcc_halves"] >= RELIABILITY_BAR
        parts += [("`pseudo.csv` not generated: the reliability bar is not met, so the `pseudo` stage refuses to "
                   "label (see `PILOT.md` for the designs measured and the options)." if unreliable
                   else "`pseudo.csv` not generated yet.") + _pseudo_progress(root, work.get("pseudo")), ""]
    if full is not None:
        parts += [f"`full.csv`: {len(full)} architectures, PQ {full['pq_full'].min():.2f}-{full['pq_full'].max():.2f} "
                  f"(std {full['pq_full'].std():.2f}).", "",
                  _describe(full, ["pq_full", "pq_a", "pq_b", "pq_things", "miou", "ce", "flops", "ft_loss_last10",
                                   "finetune_s", "eval_s"])]
    else:
        parts.append("`full.csv` not generated yet." + _progress(root, work.get("full"), N_FULL))
    both = None if pseudo is None or full is None else full.merge(pseudo[["arch", "pq"]], on="arch")
    parts += ["", "SRCC(pseudo PQ, fully fine-tuned PQ) over the architectures with both: "
              + (f"**{_spearman(both['pq'], both['pq_full']):.3f}** ({len(both)} architectures)."
                 if both is not None and len(both) > 2 else "not measured yet.")]
    parts += ["", "## Constructions (Fig. 6 analogue)", ""]
    con = _read(root / "construction.json")
    if (root / "constructed.csv").exists() and con is not None:
        c = pd.read_csv(root / "constructed.csv")
        rows = []
        for eq, g in c.groupby("equation", sort=False):
            m = con.get(eq, {}).get("metrics", {})
            rows.append({"equation": eq, "archs": len(g), "distinct": g["arch"].nunique(),
                         "predictor SRCC (test)": m.get("srcc_pred", float("nan")),
                         "mean PQ": g["pq_full"].mean(), "best PQ": g["pq_full"].max(),
                         "mean MFLOPs": g["flops"].mean()})
        parts += [f"Predictors: {con.get('epochs')} epochs on the pseudo labels; top-{con.get('k')} modules per "
                  "stage.", "", pd.DataFrame(rows).round(3).to_markdown(index=False)]
    else:
        parts.append("not built yet.")
    parts += ["", "## Generation runs", "", _stage_table(runs) if runs else "none recorded yet"]
    unit_time = _unit_hours({"pseudo": pseudo, "full": full, "constructed": constructed})
    if unit_time:
        parts += ["", "Worker time recorded in the labels themselves (the sum over each table's architectures of "
                      "`finetune_s` + `eval_s`, each unit's wall time in its worker process; it also counts units "
                      "of runs that a session's end cut off before the run was logged above): " + unit_time + "."]
    if runs:
        m = runs[-1]["machine"]
        parts += ["", f"Machine: {m['cpu']}, {m['n_cpus']} CPUs, {m['platform']}, Python {m['python']}, "
                      f"torch {m['torch']}, one torch thread per worker."]
    parts += ["", "## Files", "",
              "Every file here is listed with its sha256 in `MANIFEST.json`; `load_mini_panoptic` verifies it. "
              "`work/<pseudo|full>-<digest>/shard-*.jsonl` are the finished work units the tables are merged from, "
              "one folder per label configuration (its `label-config.json`: the configuration fields and the "
              "sha256 of `supernet.pt`), so labels of another configuration are never reused; `pilots/` holds "
              "the measurements of earlier designs (see `PILOT.md`); "
              "`module-scores.csv` holds every module's score per equation, `construction.json` the "
              "predictors' test metrics and the top modules."]
    out = root / "DATA_CARD.md"
    with folder_lock(root):  # another generator may be writing the card
        tmp = root / f".partial-DATA_CARD.md.{os.getpid()}"
        tmp.write_text("\n".join(parts) + "\n")
        os.replace(tmp, out)
    return out
