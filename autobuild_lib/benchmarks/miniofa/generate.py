"""Generate the Mini-OFA benchmark: supernet, labels of 3,000 archs per space, IR graphs, manifest.

Stages (``python -m autobuild_lib generate mini-ofa --space mbv3|pn --stages ...``):

``supernet``
    Export the design's committed pilot weights (``pilots/<design>-<space>/supernet.pt``) to
    ``supernet-<space>.pt``; without them, train the supernet of :data:`DESIGNS` [``design``]
    (resumable checkpoint under ``.cache/miniofa/``) and export it when finished.
``reliability``
    Label reliability of the exported supernet on 40 random subnets
    (:func:`~autobuild_lib.benchmarks.miniofa.reliability.measure_reliability`) -> ``reliability-<space>.json``
    (reused from the design's pilot run in ``.cache/miniofa/`` when its weights are the same).
``static`` / ``latency`` / ``acc``
    Work units (one architecture each, see :mod:`autobuild_lib.benchmarks.pipeline.workunits`) for the labels of
    :mod:`autobuild_lib.benchmarks.miniofa.labels`, stored as shards in ``work/<space>/<stage>/``.
``ir``
    Op-level IR graphs of the ImageNet-scale subnets -> ``ir-<space>.npz``.
``latency_model``
    The k-GNN latency predictor (:mod:`autobuild_lib.core.latency`, paper recipe) trained on the
    measured latencies -> ``latency-<space>.pt`` and its test MAE / SRCC in ``latency-model-<space>.json``.
``latency_pilot`` / ``latency_rounds`` (only when named: they need the machine to themselves)
    Repeatable CPU latency (:mod:`autobuild_lib.benchmarks.miniofa.latency_rounds`): a pilot of 8 shuffled
    rounds x 21 passes on 200 architectures chooses the rounds and passes that fit
    :data:`LATENCY_BUDGET_S` per space (``latency-protocol-<space>.json``); then every round
    visits all architectures in a new random order, stored per (round, architecture) in
    ``work/<space>/latency_rounds/``.
``merge``
    When every unit is done: ``<space>.csv`` (``arch`` + label columns, rows in sample order).
    ``latency_cpu`` comes from the rounds (with ``latency_cpu_a`` / ``latency_cpu_b``) once they
    are complete, else from the single-pass ``latency`` stage.
``checks``
    The quality checks of the data card (:mod:`autobuild_lib.benchmarks.miniofa.checks`) -> ``checks-<space>.json``;
    then ``DATA_CARD.md`` is rewritten from everything recorded.

Every stage appends its wall time and the machine to ``runs.jsonl`` and rewrites
``MANIFEST.json``; every file appears atomically.  The architectures are
``OFASpace.sample(np.random.default_rng([ARCH_SEED, i]))`` for i = 0, 1, ..., duplicates
skipped, until ``n`` distinct ones (OFA's sampling order: depth per stage, then k and e per
layer, then resolution).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.miniofa.constants import (
    ARCH_SEED,
    EXCLUSIVE_STAGES,
    LABEL_COLUMNS,
    LATENCY_BUDGET_S,
    LATENCY_PILOT,
    MANIFEST_EXCLUDE,
    MINI_OFA_DIR,
    STAGES,
    UNIT_COLUMNS,
    WORK_CACHE,
    benchmark_archs,
    load_mini_ofa,
    regenerate_command,
)
from autobuild_lib.benchmarks.miniofa.labels import acc_unit, latency_unit, save_supernet, static_unit
from autobuild_lib.benchmarks.miniofa.latency_rounds import (
    choose_protocol,
    load_protocol,
    rounds_store,
    run_rounds,
    summarise_rounds,
)
from autobuild_lib.benchmarks.miniofa.supernet import SupernetConfig, Trainer, build_data, space_of
from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
from autobuild_lib.benchmarks.pipeline.stages import run_stages
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, run_units

__all__ = ["DESIGNS", "FINAL_DESIGN", "EVAL_FIELDS", "design_config", "training_config", "ARCH_SEED", "STAGES", "EXCLUSIVE_STAGES", "LABEL_COLUMNS", "MINI_OFA_DIR", "benchmark_archs",
           "generate", "load_mini_ofa", "regenerate_command"]

#: Supernet designs tried for label reliability (table in data/mini-ofa/PILOT.md).  A design with
#: ``train_as`` reuses that design's trained weights and changes only :data:`EVAL_FIELDS`.
DESIGNS: dict[str, dict] = {
    "A": dict(width_mult=0.25, stem_stride=2, canvas=56, n_calib=1000, n_heldout=5000, total_steps=580),
    "B": dict(width_mult=0.25, stem_stride=2, canvas=56, n_calib=1000, n_heldout=5000, total_steps=2400),
    "C": dict(width_mult=0.25, stem_stride=2, canvas=56, n_calib=1000, n_heldout=5000, total_steps=2400, distill=False),
}
FINAL_DESIGN = "C"  # accepted in issue 20 (split-half SRCC 0.945 MBv3 / 0.885 PN on 40 subnets)
#: Fields that only choose the evaluation images: prefixes of the held-out train pool and of the
#: test split, never training or calibration images, so changing them needs no retraining.
EVAL_FIELDS = ("n_heldout", "n_test")


def design_config(space: str, design: str | SupernetConfig = FINAL_DESIGN) -> SupernetConfig:
    """The supernet config of a named design (or ``design`` itself when it is a config)."""
    if isinstance(design, SupernetConfig):
        if design.space != space:
            raise ValueError(f"design is for space {design.space!r}, not {space!r}")
        return design
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; known: {sorted(DESIGNS)}")
    return SupernetConfig(space=space, **{k: v for k, v in DESIGNS[design].items() if k != "train_as"})


def training_design(design: str | SupernetConfig) -> tuple[str, str | SupernetConfig]:
    """``(name, design)`` of the run whose weights ``design`` uses (itself unless ``train_as``)."""
    if isinstance(design, SupernetConfig):
        return "custom", design
    base = DESIGNS.get(design, {}).get("train_as", design)
    return base, base


def training_config(space: str, design: str | SupernetConfig = FINAL_DESIGN) -> SupernetConfig:
    """The config the weights of ``design`` were trained under; differs from
    :func:`design_config` at most in :data:`EVAL_FIELDS`."""
    cfg = design_config(space, design)
    train = design_config(space, training_design(design)[1])
    diff = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(train, f.name)]
    if set(diff) - set(EVAL_FIELDS):
        raise ValueError(f"design {design!r} differs from its training design in {diff}; only {EVAL_FIELDS} may differ")
    return train


def _manifest(root: Path) -> None:
    write_manifest(root, exclude=MANIFEST_EXCLUDE)


def _train_supernet(space: str, root: Path, design: str | SupernetConfig, work_dir: Path,
                    time_budget_s: float | None, progress: bool) -> dict:
    cfg, train_cfg = design_config(space, design), training_config(space, design)
    out = root / f"supernet-{space}.pt"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    name = training_design(design)[0]
    pilot = root / "pilots" / f"{name}-{space}" / "supernet.pt"
    if pilot.exists():  # the design's committed pilot weights: export them, no retraining
        from autobuild_lib.benchmarks.miniofa.labels import load_supernet

        pilot_cfg, net = load_supernet(pilot)
        if pilot_cfg != train_cfg:
            raise ValueError(f"{pilot} was trained under another config than design {name!r}; "
                             f"move it away or retrain with --stages supernet after deleting it")
        save_supernet(net, cfg, out)
        return {"exported_from": str(pilot.relative_to(root)), "retrained": False}
    tr = Trainer(train_cfg, build_data(train_cfg), work_dir / f"{name}-{space}" / "ckpt.pt")
    res = tr.train(time_budget_s=time_budget_s, progress=progress)
    if res["done"]:
        save_supernet(tr.net, cfg, out)  # stored with the labelling design's evaluation fields
        (root / f"trainlog-{space}.json").write_text(json.dumps(tr.log))
    return {"steps": res["step"], "train_wall_s_total": tr.wall_s, "done": res["done"]}


def _ir(space: str, keys: Sequence[str], root: Path) -> dict:
    from autobuild_lib.core.ir import ir_graph, save_ir_graphs

    out = root / f"ir-{space}.npz"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    sp = space_of(space)
    graphs = [ir_graph(sp, sp.from_string(k)) for k in keys]
    tmp = root / f".partial-{out.name}.{os.getpid()}"
    save_ir_graphs(tmp, graphs, list(keys))
    os.replace(tmp, out)
    return {"graphs": len(graphs)}


def _reliability(space: str, root: Path, design: str | SupernetConfig, work_dir: Path, progress: bool) -> dict:
    from autobuild_lib.benchmarks.miniofa.labels import load_supernet
    from autobuild_lib.benchmarks.miniofa.reliability import measure_reliability

    out = root / f"reliability-{space}.json"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    weights = root / f"supernet-{space}.pt"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} not found: run the 'supernet' stage first")
    cfg, net = load_supernet(weights)
    name = training_design(design)[0]
    pilot = root / "pilots" / f"{name}-{space}" / "reliability.json"
    if not pilot.exists():
        pilot = work_dir / f"{name}-{space}" / "reliability.json"
    if pilot.exists() and SupernetConfig(**json.loads(pilot.read_text())["config"]) == cfg:
        rel = json.loads(pilot.read_text())  # the pilot evaluated these very weights at the end of training
        rel["source"] = f"pilot run {pilot.parent.name} (scripts/miniofa_pilot.py)"
    else:
        rel = measure_reliability(net, space_of(space), build_data(cfg), n_archs=40, seed=0, progress=progress)
        for k in ("correct", "nll", "halves"):
            rel.pop(k, None)
        rel.update(config=dataclasses.asdict(cfg), source="generate --stages reliability")
    tmp = root / f".partial-{out.name}.{os.getpid()}"
    tmp.write_text(json.dumps(rel, indent=1, default=float))
    os.replace(tmp, out)
    return {"srcc_split_acc": rel["srcc_split_acc"], "srcc_acc_depth": rel["srcc_acc_depth"]}


def _latency_model(space: str, keys: Sequence[str], root: Path, progress: bool, epochs: int = 500) -> dict:
    from autobuild_lib.core.latency import MIN_ARCHS, save_latency_predictor, train_latency_predictor

    out, js = root / f"latency-{space}.pt", root / f"latency-model-{space}.json"
    if len(keys) < MIN_ARCHS:
        return {"skipped": f"a latency predictor needs at least {MIN_ARCHS} architectures, the benchmark has {len(keys)}"}
    lat, source = final_latency(space, keys, root)
    trained_on = json.loads(js.read_text()).get("latency_source", "single pass (latency stage)") if js.exists() else None
    if out.exists() and trained_on == source:
        return {"skipped": f"{out.name} exists, trained on the {source} latencies"}
    rows = (lat[["arch", "latency_cpu"]].to_dict("records") if lat is not None
            else ShardStore(root / "work" / space / "latency").merged(keys))  # raises unless every latency is measured
    res = train_latency_predictor(space_of(space), [r["arch"] for r in rows], [r["latency_cpu"] for r in rows],
                                  epochs=epochs, seed=0, progress=progress)
    tmp = root / f".partial-{out.name}.{os.getpid()}"
    save_latency_predictor(res, tmp)
    os.replace(tmp, out)
    info = {"space": space, "n_train": int(len(res.train_idx)), "n_test": int(len(res.test_idx)),
            "test_mae_ms": float(res.test_mae_ms), "test_srcc": float(res.test_srcc),
            "test_mape_pct": float(100 * np.mean(np.abs(
                res.predict([rows[i]["arch"] for i in res.test_idx])
                - np.array([rows[i]["latency_cpu"] for i in res.test_idx]))
                / np.array([rows[i]["latency_cpu"] for i in res.test_idx]))),
            "epochs": epochs, "train_wall_s": float(res.train_wall_s), "config": res.config,
            "latency_source": source}
    tmp = root / f".partial-{js.name}.{os.getpid()}"
    tmp.write_text(json.dumps(info, indent=1, default=str))
    os.replace(tmp, js)
    return {k: info[k] for k in ("test_mae_ms", "test_srcc", "test_mape_pct")}


def _latency_pilot(space: str, keys: Sequence[str], root: Path, progress: bool) -> dict:
    p = LATENCY_PILOT
    archs = [keys[i] for i in np.random.default_rng(ARCH_SEED).permutation(len(keys))[:p["n_archs"]]]
    run_rounds(space, archs, rounds_store(root, space, "latency_pilot"), p["rounds"], p["passes"], p["warmup"],
               progress=progress)
    rows = list(rounds_store(root, space, "latency_pilot").rows().values())
    _, measured = summarise_rounds(rows, archs, p["rounds"])
    choice = choose_protocol(rows, len(keys), LATENCY_BUDGET_S)
    out = {"space": space, "pilot": {**p, **measured}, **choice}
    dest = root / f"latency-protocol-{space}.json"
    tmp = root / f".partial-{dest.name}.{os.getpid()}"
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(tmp, dest)
    return {k: out[k] for k in ("rounds", "passes", "srcc_halves", "predicted_s")}


def _latency_rounds(space: str, keys: Sequence[str], root: Path, progress: bool) -> dict:
    proto = load_protocol(space, root)
    if proto is None:
        raise FileNotFoundError(f"latency-protocol-{space}.json not found: run the 'latency_pilot' stage first")
    store = rounds_store(root, space)
    rep = run_rounds(space, keys, store, proto["rounds"], proto["passes"], proto["warmup"], progress=progress)
    _, info = summarise_rounds(list(store.rows().values()), keys, proto["rounds"])
    return {**rep, **info}


def final_latency(space: str, keys: Sequence[str], root: Path) -> tuple[pd.DataFrame | None, str]:
    """``latency_cpu`` / ``_a`` / ``_b`` of ``keys`` from complete latency rounds (None while the
    rounds are incomplete or absent), and a phrase naming the source the benchmark uses."""
    proto = load_protocol(space, root)
    if proto is not None:
        try:
            lat, _ = summarise_rounds(list(rounds_store(root, space).rows().values()), keys, proto["rounds"])
            return lat, f"median of {proto['rounds']} shuffled rounds x {proto['passes']} passes"
        except ValueError:
            pass  # rounds incomplete: the single-pass latency stays, and the source says so
    return None, "single pass (latency stage)"


def _merge(space: str, keys: Sequence[str], root: Path) -> dict:
    parts = {stage: ShardStore(root / "work" / space / stage).merged(keys) for stage in UNIT_COLUMNS}
    frame = pd.DataFrame({"arch": list(keys)})
    for stage, cols in UNIT_COLUMNS.items():
        for c in cols:
            frame[c] = [row[c] for row in parts[stage]]
    frame = frame[["arch", *LABEL_COLUMNS]]
    lat, source = final_latency(space, keys, root)
    if lat is not None:
        frame = frame.drop(columns="latency_cpu").merge(lat, on="arch", how="left")
        frame = frame[["arch", *LABEL_COLUMNS, "latency_cpu_a", "latency_cpu_b"]]
    out = root / f"{space}.csv"
    tmp = root / f".partial-{out.name}.{os.getpid()}"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return {"rows": len(frame), "latency_source": source}


def generate(space: str, stages: Sequence[str] = STAGES, n: int = 3000, root: str | Path = MINI_OFA_DIR,
             design: str | SupernetConfig = FINAL_DESIGN, n_jobs: int = 1, chunk: int = 50,
             time_budget_s: float | None = None, progress: bool = True, work_dir: str | Path = WORK_CACHE) -> dict:
    """Run ``stages`` for ``space``; each is resumable and skips what is done.  Returns a report per stage."""
    if space not in ("mbv3", "pn"):
        raise ValueError(f"unknown space {space!r}; choose 'mbv3' or 'pn'")
    bad = [s for s in stages if s not in STAGES + EXCLUSIVE_STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {list(STAGES + EXCLUSIVE_STAGES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sp = space_of(space)
    keys = [sp.to_string(a) for a in benchmark_archs(space, n)]
    order = STAGES[:STAGES.index("latency") + 1] + EXCLUSIVE_STAGES + STAGES[STAGES.index("latency") + 1:]

    def units(stage: str) -> dict:
        store = ShardStore(root / "work" / space / stage)
        if stage == "acc":
            weights = root / f"supernet-{space}.pt"
            if not weights.exists():
                raise FileNotFoundError(f"{weights} not found: run the 'supernet' stage first")
            fn = functools.partial(acc_unit, str(weights))
        else:
            fn = functools.partial(static_unit if stage == "static" else latency_unit, space)
        return run_units(fn, keys, store, chunk=chunk, n_jobs=n_jobs, progress=progress,
                         desc=f"{space} {stage}", on_shard=lambda _p: _manifest(root))

    def checks() -> dict:
        from autobuild_lib.benchmarks.miniofa.checks import run_checks

        return run_checks(space, root, progress=progress)

    runners = {
        "supernet": lambda: _train_supernet(space, root, design, Path(work_dir), time_budget_s, progress),
        **{s: functools.partial(units, s) for s in UNIT_COLUMNS},
        "reliability": lambda: _reliability(space, root, design, Path(work_dir), progress),
        "ir": lambda: _ir(space, keys, root),
        "latency_pilot": lambda: _latency_pilot(space, keys, root, progress),
        "latency_rounds": lambda: _latency_rounds(space, keys, root, progress),
        "latency_model": lambda: _latency_model(space, keys, root, progress),
        "merge": lambda: _merge(space, keys, root),
        "checks": checks,
    }
    tag = dict(space=space, n=n, design=design if isinstance(design, str) else "custom")
    from autobuild_lib.benchmarks.miniofa.card import write_card

    return run_stages(root, order, stages, {s: (lambda f=f: {**f(), **tag}) for s, f in runners.items()},
                      n_jobs, write_card, manifest=_manifest)
