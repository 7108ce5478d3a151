"""Generate the Mini-Panoptic benchmark (paper Sec. 5.2 / 7.7 at CPU scale).

Stages (``python -m autobuild_lib generate mini-panoptic --stages ...``), each resumable and
skipping what is done; every file appears atomically under ``data/mini-panoptic/``, with the
labelling config in ``config.json``, the data card ``DATA_CARD.md`` and ``MANIFEST.json``:

``supernet``
    Fine-tune the Mini-OFA MBv3 supernet (design C weights,
    ``data/mini-ofa/pilots/C-mbv3/supernet.pt``) with a fresh panoptic head on the training
    mosaics (:func:`~.train.train_supernet`, checkpointed under ``.cache/panoptic/``)
    -> ``supernet.pt`` and ``supernet-trainlog.json``.
``reliability``
    :data:`N_RELIABILITY` random architectures pseudo-labelled; SRCC between the PQs of the two
    halves of the validation mosaics -> ``reliability.json`` (bar: >= :data:`RELIABILITY_BAR`;
    it names the shard folder it was measured from, so a result of another label configuration
    never lets the ``pseudo`` stage run).
``noise``
    The same architectures on :data:`N_NOISE` further validation mosaics (same garment pool, other
    seed): per-image PQ counts, semantic IoU counts and pixel cross-entropy, turned into the
    split-half SRCC per evaluation-set size (:mod:`.reliability`) -> ``reliability-curve.json``:
    how many mosaics a reliable label would need, for PQ and two cheaper alternatives.
``pseudo``
    :data:`N_PSEUDO` random architectures pseudo-labelled (inherited weights + BN
    recalibration; PQ, its halves, mIoU and pixel CE on the validation mosaics) as work units in
    ``work/pseudo-<digest>/`` -> ``pseudo.csv``.
``full``
    The first :data:`N_FULL` of them fine-tuned on their own (:func:`~.train.full_label`); PQ,
    its halves, mIoU and pixel CE on the test mosaics, in ``work/full-<digest>/`` -> ``full.csv``.
``constructions``
    Per label equation of :data:`EQUATIONS`: an AutoBuild predictor on the pseudo labels
    (300 epochs, as the paper's panoptic setting), module scores with the Eq. 5 shift, the
    top-:data:`K` modules per stage -> ``K ** 5`` architectures, each fine-tuned and labelled
    exactly like the full set -> ``constructed.csv``, ``module-scores.csv``, ``construction.json``.

Shard folders are keyed by the label configuration (:func:`label_work`: the digest of the
supernet's and the label kind's configuration fields and of ``supernet.pt``), so changing the
mosaic counts, say, measures every label anew instead of reusing shards.

Architectures: ``OFASpace.sample(np.random.default_rng([ARCH_SEED, i]))`` at resolution 224
(the whole 64 px mosaic), duplicates skipped; the reliability set uses ``RELIABILITY_SEED``.
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.panoptic.archs import benchmark_archs, pseudo_progress
from autobuild_lib.benchmarks.panoptic.constants import (
    BACKBONE,
    CONFIG,
    EQUATIONS,
    MINI_PANOPTIC_DIR,
    N_FULL,
    N_NOISE,
    N_PSEUDO,
    N_RELIABILITY,
    NOISE_SIZES,
    PREDICTOR_EPOCHS,
    RELIABILITY_BAR,
    RELIABILITY_SEED,
    STAGES,
    WORK_CACHE,
    K,
)
from autobuild_lib.benchmarks.panoptic.labelkey import check_supernet, label_config, label_work
from autobuild_lib.benchmarks.panoptic.train import (
    LABEL_FIELDS,
    PanopticConfig,
    build_data,
    build_model,
    full_label,
    pseudo_label,
    train_supernet,
)
from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
from autobuild_lib.benchmarks.pipeline.stages import run_stages
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, run_units

__all__ = ["MINI_PANOPTIC_DIR", "BACKBONE", "CONFIG", "STAGES", "EQUATIONS", "N_PSEUDO", "N_FULL", "K", "pseudo_progress",
           "RELIABILITY_BAR", "benchmark_archs", "check_supernet", "label_config", "label_work", "check_reliability",
           "generate"]

def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".partial-{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".partial-{path.name}.{os.getpid()}")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _stored_supernet(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the 'supernet' stage first")
    return torch.load(path, map_location="cpu", weights_only=True)


def _store(root: Path, cfg: PanopticConfig, kind: str) -> ShardStore:
    """The shard store of ``kind`` labels under ``cfg``; records :func:`label_config` in it."""
    folder = label_work(root, cfg, kind)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "label-config.json").exists():
        _atomic_text(json.dumps(label_config(root, cfg, kind), indent=1, sort_keys=True), folder / "label-config.json")
    return ShardStore(folder)


def _supernet(root: Path, cfg: PanopticConfig, work_dir: Path, progress: bool) -> dict:
    out = root / "supernet.pt"
    if out.exists():
        check_supernet(_stored_supernet(out)["config"], cfg, out)
        return {"skipped": f"{out.name} exists"}
    torch.set_num_threads(1)
    work_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, BACKBONE)
    log = train_supernet(model, build_data(cfg), cfg, ckpt=work_dir / "supernet-ckpt.pt", progress=progress)
    _atomic_text(json.dumps(log), root / "supernet-trainlog.json")
    tmp = out.with_name(f".partial-{out.name}")
    torch.save({"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                "model": {k: v.contiguous() for k, v in model.state_dict().items()}}, tmp)
    os.replace(tmp, out)
    last = log[-50:]
    return {"steps": len(log), "train_wall_s_total": log[-1]["wall_s"],
            "final_loss_largest_mean50": float(np.mean([r["loss_largest"] for r in last])),
            "final_loss_smallest_mean50": float(np.mean([r["loss_smallest"] for r in last]))}


@functools.lru_cache(maxsize=2)
def _worker_state(root: str, cfg: PanopticConfig) -> tuple:
    """Per-process cache: the fine-tuned panoptic supernet and the mosaics."""
    torch.set_num_threads(1)
    path = Path(root) / "supernet.pt"
    stored = _stored_supernet(path)
    check_supernet(stored["config"], cfg, path)
    model = build_model(cfg, BACKBONE)
    model.load_state_dict(stored["model"])
    return model.eval(), build_data(cfg)


def pseudo_unit(root: str, cfg: PanopticConfig, key: str) -> dict:
    """One work unit: the pseudo label of architecture ``key``."""
    model, data = _worker_state(root, cfg)
    return {"arch": key, **pseudo_label(model, space_of("mbv3").from_string(key), data, cfg)}


def full_unit(root: str, cfg: PanopticConfig, key: str) -> dict:
    """One work unit: the fully fine-tuned label of architecture ``key``."""
    model, data = _worker_state(root, cfg)
    return {"arch": key, **full_label(model, space_of("mbv3").from_string(key), data, cfg)}


def _run(kind: str, keys: Sequence[str], root: Path, cfg: PanopticConfig, n_jobs: int, progress: bool) -> dict:
    fn = functools.partial(pseudo_unit if kind == "pseudo" else full_unit, str(root), cfg)
    store = _store(root, cfg, kind)
    chunk = 20 * n_jobs if kind == "pseudo" else 2 * n_jobs
    return run_units(fn, list(keys), store, chunk=chunk, n_jobs=n_jobs, progress=progress, desc=f"panoptic {kind}",
                     on_shard=lambda _p: write_manifest(root))


def _reliability(root: Path, cfg: PanopticConfig, n_jobs: int, progress: bool) -> dict:
    from scipy.stats import spearmanr

    out_path = root / "reliability.json"
    keys = benchmark_archs(N_RELIABILITY, RELIABILITY_SEED)
    rep = _run("pseudo", keys, root, cfg, n_jobs, progress)
    work = label_work(root, cfg, "pseudo")
    rows = ShardStore(work).merged(keys)
    a, b = np.array([r["pq_a"] for r in rows]), np.array([r["pq_b"] for r in rows])
    pq, flops = np.array([r["pq"] for r in rows]), np.array([r["flops"] for r in rows])
    out = {"n": len(keys), "halves": [cfg.n_val // 2, cfg.n_val // 2], "srcc_halves": float(spearmanr(a, b)[0]),
           "srcc_pq_flops": float(spearmanr(pq, flops)[0]), "pq_mean": float(pq.mean()), "pq_std": float(pq.std()),
           "pq_range": [float(pq.min()), float(pq.max())], "pq_a": a.round(4).tolist(), "pq_b": b.round(4).tolist(),
           "bar": RELIABILITY_BAR, "work": work.relative_to(root).as_posix()}
    _atomic_text(json.dumps(out, indent=1), out_path)
    return {**rep, **{k: v for k, v in out.items() if not isinstance(v, list)}}


@functools.lru_cache(maxsize=1)
def _noise_set(cfg: PanopticConfig, n: int):
    from autobuild_lib.benchmarks.panoptic.train import noise_mosaics

    return noise_mosaics(cfg, n)


def noise_unit(root: str, cfg: PanopticConfig, key: str) -> dict:
    """Per-image statistics of the pseudo-labelled architecture ``key`` on the noise mosaics."""
    from autobuild_lib.benchmarks.panoptic.reliability import image_stats
    from autobuild_lib.benchmarks.panoptic.train import recalibrate_bn, static_model

    model, data = _worker_state(root, cfg)
    sub = recalibrate_bn(static_model(model, space_of("mbv3").from_string(key)), data.calib.images)
    return image_stats(sub, _noise_set(cfg, N_NOISE), cfg.min_area)


def _noise(root: Path, cfg: PanopticConfig, n_jobs: int, progress: bool) -> dict:
    from joblib import Parallel, delayed

    from autobuild_lib.benchmarks.panoptic.reliability import spearman_brown_size, split_half_curve

    out_path = root / "reliability-curve.json"
    if out_path.exists():
        return {"skipped": f"{out_path.name} exists"}
    keys = benchmark_archs(N_RELIABILITY, RELIABILITY_SEED)
    t0 = time.perf_counter()
    stats = Parallel(n_jobs=n_jobs)(delayed(noise_unit)(str(root), cfg, k) for k in keys)
    curve = split_half_curve(stats, NOISE_SIZES, n_draws=20, seed=cfg.seed)
    last = curve[curve["n_eval"] == max(NOISE_SIZES)].set_index("kind")["srcc_mean"]
    need = {k: spearman_brown_size(float(r), max(NOISE_SIZES)) for k, r in last.items()}
    out = {"n_archs": len(keys), "n_mosaics": N_NOISE, "curve": curve.to_dict(orient="records"),
           "bar": RELIABILITY_BAR, "images_for_bar": need, "eval_wall_s": round(time.perf_counter() - t0, 1)}
    _atomic_text(json.dumps(out, indent=1), out_path)
    return {"bar": RELIABILITY_BAR, "images_for_bar": need, "srcc_at_max": last.to_dict()}


def check_reliability(root: Path, cfg: PanopticConfig = CONFIG) -> dict:
    """The reliability result of the current label configuration; raises ``ValueError`` when it
    was measured under another one (other shards) or misses :data:`RELIABILITY_BAR` (issue 7: do
    not label noise)."""
    path = root / "reliability.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the 'reliability' stage first")
    rel = json.loads(path.read_text())
    want = label_work(root, cfg, "pseudo").relative_to(root).as_posix()
    if rel.get("work") != want:
        raise ValueError(f"{path} was measured under another label configuration ({sum(rel['halves'])} validation "
                         f"mosaics, shards {rel.get('work', 'not recorded')}; now {cfg.n_val} mosaics, shards {want}): "
                         "run the 'reliability' stage first")
    if not rel["srcc_halves"] >= RELIABILITY_BAR:
        raise ValueError(f"pseudo labels are not reliable: split-half SRCC of PQ {rel['srcc_halves']:.3f} < "
                         f"{RELIABILITY_BAR} on {rel['n']} architectures with {sum(rel['halves'])} validation mosaics "
                         f"(see {path.name} and reliability-curve.json). Change the design, or pass "
                         "--allow-unreliable to label anyway")
    return rel


def _labels(kind: str, root: Path, cfg: PanopticConfig, n_jobs: int, progress: bool,
            allow_unreliable: bool = False) -> dict:
    from scipy.stats import spearmanr

    if kind == "pseudo" and not allow_unreliable:
        check_reliability(root, cfg)
    keys = benchmark_archs(N_PSEUDO if kind == "pseudo" else N_FULL)
    rep = _run(kind, keys, root, cfg, n_jobs, progress)
    frame = pd.DataFrame(ShardStore(label_work(root, cfg, kind)).merged(keys))
    _atomic_csv(frame, root / f"{kind}.csv")
    srcc = float(spearmanr(frame["pq_a"], frame["pq_b"])[0])
    return {**rep, "rows": len(frame), "srcc_halves": srcc, "bar": RELIABILITY_BAR, "bar_met": srcc >= RELIABILITY_BAR}


def labelled_set(root: str | Path = MINI_PANOPTIC_DIR):
    """The pseudo-labelled architectures as a :class:`~autobuild_lib.benchmarks.labelled.LabelledSet` with
    metric columns ``PQ`` (%) and ``flops`` (MFLOPs) for the label equations."""
    from autobuild_lib.benchmarks.labelled import from_frame

    frame = pd.read_csv(Path(root) / "pseudo.csv")
    frame = frame.assign(PQ=frame["pq"])
    return from_frame("mbv3", frame, source=str(Path(root) / "pseudo.csv"))


def _constructions(root: Path, cfg: PanopticConfig, n_jobs: int, progress: bool,
                   epochs: int | None = None, k: int | None = None) -> dict:
    from autobuild_lib.core.build import build_equation
    from autobuild_lib.core.training import TrainConfig

    out_path = root / "constructed.csv"
    if out_path.exists():
        return {"skipped": f"{out_path.name} exists"}
    for f in ("pseudo.csv", "full.csv"):
        if not (root / f).exists():
            raise FileNotFoundError(f"{root / f} not found: run the 'pseudo' and 'full' stages first")
    epochs, k = epochs or PREDICTOR_EPOCHS, k or K
    torch.set_num_threads(1)
    ls = labelled_set(root)
    space = ls.space
    picks, scores, info = [], [], {}
    for eq in EQUATIONS:
        build = build_equation(ls, eq, TrainConfig(epochs=epochs, seed=cfg.seed), progress=progress)
        scores.append(build.run.scores.assign(equation=eq))
        archs = build.construct(space, k, resolution=224)
        info[eq] = {"metrics": {m: float(v) for m, v in build.info.items() if isinstance(v, (int, float))},
                    "top": [[str(m) for m in unit] for unit in build.top(k)], "n_archs": len(archs)}
        picks += [(eq, space.to_string(a)) for a in archs]
    keys = list(dict.fromkeys(key for _, key in picks))
    rep = _run("full", keys, root, cfg, n_jobs, progress)
    rows = ShardStore(label_work(root, cfg, "full")).rows()
    frame = pd.DataFrame([{"equation": eq, **rows[key]} for eq, key in picks])
    _atomic_csv(pd.concat(scores, ignore_index=True), root / "module-scores.csv")
    _atomic_text(json.dumps({"equations": list(EQUATIONS), "k": k, "epochs": epochs, **info}, indent=1),
                 root / "construction.json")
    _atomic_csv(frame, out_path)
    return {**rep, "rows": len(frame)}


def generate(stages: Sequence[str] = STAGES, root: str | Path = MINI_PANOPTIC_DIR, cfg: PanopticConfig = CONFIG,
             n_jobs: int = 1, progress: bool = True, work_dir: str | Path = WORK_CACHE,
             allow_unreliable: bool = False) -> dict:
    """Run ``stages`` in order; each is resumable and skips what is done.  Returns a report per stage.

    The ``pseudo`` stage refuses to run when the reliability check missed its bar, unless
    ``allow_unreliable``."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {list(STAGES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _atomic_text(json.dumps({k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, indent=1), root / "config.json")
    runners = {
        "supernet": lambda: _supernet(root, cfg, Path(work_dir), progress),
        "reliability": lambda: _reliability(root, cfg, n_jobs, progress),
        "noise": lambda: _noise(root, cfg, n_jobs, progress),
        "pseudo": lambda: _labels("pseudo", root, cfg, n_jobs, progress, allow_unreliable),
        "full": lambda: _labels("full", root, cfg, n_jobs, progress),
        "constructions": lambda: _constructions(root, cfg, n_jobs, progress),
    }

    def tagged(stage: str) -> dict:   # each run record names the label configuration it ran under
        rep = runners[stage]()
        work = {k: label_work(root, cfg, k).relative_to(root).as_posix() for k in LABEL_FIELDS}
        return {**rep, "n_val": cfg.n_val, "n_test": cfg.n_test, "work": work}

    return run_stages(root, STAGES, stages, {s: functools.partial(tagged, s) for s in runners}, n_jobs, _write_card)


def _write_card(root: Path) -> None:
    from autobuild_lib.benchmarks.panoptic.card import write_card

    write_card(root)
