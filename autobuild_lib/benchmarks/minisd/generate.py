"""Generate the Mini-SD benchmark: classifier, base U-Net, label reliability, FID labels.

Stages (``python -m autobuild_lib generate mini-sd --stages ...``), each resumable and
skipping what is done; every file appears atomically under ``data/mini-sd/``:

``classifier``
    Train the FID-FMNIST feature network (:mod:`.fid`) -> ``classifier.pt`` and its
    Fashion-MNIST test accuracy in ``classifier.json``.
``base``
    Train the base U-Net (the SD v1.4 analogue: C_m max, multipliers [1, 2, 3, 4], every
    block) for ``base_steps`` (checkpointed under ``.cache/minisd/``) -> ``base.pt``.
``reliability``
    The first :data:`N_RELIABILITY` label architectures fine-tuned again with a second
    seed; SRCC of FID between the two runs and the run-to-run spread -> ``reliability.json``.
``labels``
    The 68 architectures of the ``sd`` space (the base, then random ones) fine-tuned and
    labelled (:func:`~.train.label_variant`) as work units in ``work/sd/seed0/``;
    when all are done -> ``sd.csv``.
``hw_labels`` / ``hw_latency`` / ``hw_constructions``
    Sec. 7.10 on the hardware space ``sd-hw``: 90 architectures fine-tuned with 1.5x the budget
    -> ``sd-hw.csv``; their CPU latency in shuffled rounds (:mod:`autobuild_lib.benchmarks.pipeline.timing`) ->
    ``latency-sd-hw.json``; per metric (latency, FLOPs, parameters) the label
    ``y = -(z(FID) + z(metric))`` (z: standardised over the 90), both ensembles, and the top-4
    of AutoBuild Constrained, Unconstrained and ES, fine-tuned and labelled like the 90; finally
    the latency of the 90 and the constructed archs measured together -> ``constructed-sd-hw.csv``.
``constructions``
    Sec. 5.3: both 20-predictor ensembles on ``y = -FID`` of ``sd.csv``
    (:func:`~autobuild_lib.core.construction.construct_sd`), AutoBuild's top-4 and ES's top-4;
    their module scores -> ``module-scores-sd.csv``, the picks and every member's held-out
    SRCCs -> ``construction-sd.json``; the picked archs are fine-tuned and labelled like
    the 68 (same work-unit store) -> ``constructed-sd.csv``.

The architectures are the base, then ``SDSpace.sample(np.random.default_rng([ARCH_SEED, i]))``
for i = 0, 1, ..., duplicates skipped.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from autobuild_lib.benchmarks.minisd.constants import (
    ARCH_SEED,
    CKPT_EVERY,
    CONFIG,
    HW_FT_FACTOR,
    HW_METHODS,
    HW_METRICS,
    LABEL_SEED,
    LATENCY_REPEATS,
    LATENCY_ROUNDS,
    MINI_SD_DIR,
    N_LABELS,
    N_RELIABILITY,
    SECOND_SEED,
    STAGES,
    WORK_CACHE,
)
from autobuild_lib.benchmarks.minisd.fid import FeatureNet, classifier_accuracy, fid_metric, train_classifier
from autobuild_lib.benchmarks.minisd.task import MiniSDConfig, load_task
from autobuild_lib.benchmarks.minisd.train import label_variant, train_unet
from autobuild_lib.benchmarks.minisd.unet import MiniUNet
from autobuild_lib.benchmarks.pipeline.atomic import atomic_write
from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
from autobuild_lib.benchmarks.pipeline.stages import run_stages
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, run_units
from autobuild_lib.core.spaces import get_space
from autobuild_lib.core.spaces.sd import SDArch

__all__ = ["MINI_SD_DIR", "CONFIG", "STAGES", "N_LABELS", "N_RELIABILITY", "benchmark_archs", "generate"]

def benchmark_archs(space: str, n: int, seed: int = ARCH_SEED) -> list[SDArch]:
    """The base architecture, then distinct seeded samples, ``n`` in all."""
    sp = get_space(space)
    archs = [sp.base_arch()]
    seen = {sp.to_string(archs[0])}
    i = 0
    while len(archs) < n:
        a = sp.sample(np.random.default_rng([seed, i]))
        i += 1
        if sp.to_string(a) not in seen:
            seen.add(sp.to_string(a))
            archs.append(a)
    return archs


def _atomic_save(obj: object, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp:
        frame.to_csv(tmp, index=False)


def _atomic_text(text: str, path: Path) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def _classifier(root: Path, cfg: MiniSDConfig) -> dict:
    out = root / "classifier.pt"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    task = load_task()
    t0 = time.perf_counter()
    net = train_classifier(task.train[:, :, 2:30, 2:30], task.train_labels, epochs=cfg.classifier_epochs)
    acc = classifier_accuracy(net, task.test, task.test_labels)
    rep = {"test_accuracy": acc, "epochs": cfg.classifier_epochs, "train_s": round(time.perf_counter() - t0, 1),
           "num_features": FeatureNet.num_features}
    _atomic_text(json.dumps(rep, indent=1), root / "classifier.json")
    _atomic_save(net.state_dict(), out)
    return rep


def _base(root: Path, cfg: MiniSDConfig, work_dir: Path, progress: bool) -> dict:
    from tqdm.auto import tqdm

    out = root / "base.pt"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "base-ckpt.pt"
    torch.manual_seed(0)
    model = MiniUNet(get_space("sd").base_arch(), cfg.divisor)
    start, opt_state, log = 0, None, []
    if ckpt_path.exists():
        try:  # the config is stored as a plain dict, so the checkpoint loads without unpickling code
            ck = torch.load(ckpt_path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
            raise ValueError(f"{ckpt_path} cannot be read as weights only ({type(exc).__name__}); it is corrupt or "
                             "from an older version that pickled the config: delete it to start again") from None
        if ck["config"] != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt_path} was trained with another config; delete it to start again")
        model.load_state_dict(ck["model"])
        start, opt_state, log = ck["step"], ck["opt"], ck["log"]
    task = load_task()
    bar = tqdm(total=cfg.base_steps, initial=start, desc="base U-Net", disable=not progress)
    t0 = time.perf_counter()
    wall0 = log[-1]["wall_s"] if log else 0.0

    def on_step(s: int, loss: float, opt: dict) -> None:
        log.append({"step": s, "loss": loss, "wall_s": wall0 + time.perf_counter() - t0})
        bar.update(1)
        if (s + 1) % CKPT_EVERY == 0 or s + 1 == cfg.base_steps:
            _atomic_save({"model": model.state_dict(), "opt": opt, "step": s + 1, "log": log,
                          "config": dataclasses.asdict(cfg)},
                         ckpt_path)

    train_unet(model, task.train, cfg.base_steps, cfg.base_lr, cfg.batch, seed=0, start=start,
               opt_state=opt_state, on_step=on_step)
    bar.close()
    _atomic_text(json.dumps(log), root / "base-trainlog.json")
    _atomic_save(model.state_dict(), out)
    return {"steps": cfg.base_steps, "train_wall_s_total": round(log[-1]["wall_s"], 1) if log else 0.0,
            "final_loss_mean100": float(np.mean([r["loss"] for r in log[-100:]])) if log else None}


@functools.lru_cache(maxsize=2)
def _worker_state(root: str, cfg: MiniSDConfig) -> tuple:
    """Per-process cache: base model, classifier, training/evaluation images, FID metric."""
    torch.set_num_threads(1)
    r = Path(root)
    base = MiniUNet(get_space("sd").base_arch(), cfg.divisor)
    base.load_state_dict(torch.load(r / "base.pt", weights_only=True))
    clf = FeatureNet()
    clf.load_state_dict(torch.load(r / "classifier.pt", weights_only=True))
    clf.eval()
    task = load_task()
    ev = task.eval_images(cfg.n_eval)
    return base.eval(), clf, task.train, ev, fid_metric(clf, ev)


def label_unit(root: str, cfg: MiniSDConfig, space: str, seed: int, key: str) -> dict:
    """One work unit: fine-tune and label the architecture ``key`` with fine-tuning seed ``seed``."""
    base, clf, train, ev, metric = _worker_state(root, cfg)
    arch = get_space(space).from_string(key)
    row = label_variant(arch, base, train, ev, clf, cfg, seed=seed, metric=metric)
    return {"arch": key, "seed": seed, **row}


def _units(space: str, keys: Sequence[str], seed: int, root: Path, cfg: MiniSDConfig, n_jobs: int,
           progress: bool) -> dict:
    for f in ("base.pt", "classifier.pt"):
        if not (root / f).exists():
            raise FileNotFoundError(f"{root / f} not found: run the 'classifier' and 'base' stages first")
    store = ShardStore(root / "work" / space / f"seed{seed}")
    fn = functools.partial(label_unit, str(root), cfg, space, seed)
    return run_units(fn, keys, store, chunk=max(1, n_jobs), n_jobs=n_jobs, progress=progress,
                     desc=f"{space} seed {seed}", on_shard=lambda _p: write_manifest(root))


def _reliability(root: Path, cfg: MiniSDConfig, n_jobs: int, progress: bool) -> dict:
    from scipy.stats import spearmanr

    keys = [get_space("sd").to_string(a) for a in benchmark_archs("sd", N_LABELS["sd"])][:N_RELIABILITY]
    rep = {}
    for seed in (LABEL_SEED, SECOND_SEED):
        rep[f"seed{seed}"] = _units("sd", keys, seed, root, cfg, n_jobs, progress)
    a, b = (ShardStore(root / "work" / "sd" / f"seed{s}").merged(keys) for s in (LABEL_SEED, SECOND_SEED))
    fa, fb = np.array([r["fid"] for r in a]), np.array([r["fid"] for r in b])
    ma, mb = np.array([r["hole_mse"] for r in a]), np.array([r["hole_mse"] for r in b])
    out = {
        "n": len(keys), "seeds": [LABEL_SEED, SECOND_SEED],
        "srcc_fid": float(spearmanr(fa, fb)[0]), "srcc_hole_mse": float(spearmanr(ma, mb)[0]),
        "fid_seed_a": fa.round(4).tolist(), "fid_seed_b": fb.round(4).tolist(),
        "run_to_run_abs_diff_mean": float(np.abs(fa - fb).mean()),
        "run_to_run_abs_diff_max": float(np.abs(fa - fb).max()),
        "fid_range_seed_a": [float(fa.min()), float(fa.max())],
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }
    _atomic_text(json.dumps(out, indent=1), root / "reliability.json")
    return {k: v for k, v in out.items() if not isinstance(v, list)}


def _labels(space: str, root: Path, cfg: MiniSDConfig, n_jobs: int, progress: bool) -> dict:
    keys = [get_space(space).to_string(a) for a in benchmark_archs(space, N_LABELS[space])]
    rep = _units(space, keys, LABEL_SEED, root, cfg, n_jobs, progress)
    rows = ShardStore(root / "work" / space / f"seed{LABEL_SEED}").merged(keys)
    frame = pd.DataFrame(rows)[["arch", "fid", "hole_mse", "flops", "n_params", "finetune_s", "eval_s"]]
    _atomic_csv(frame, root / f"{space}.csv")
    rep["rows"] = len(frame)
    return rep


def _constructions(space: str, root: Path, cfg: MiniSDConfig, n_jobs: int, progress: bool,
                   ensemble: dict | None = None) -> dict:
    """``ensemble``: keyword arguments for :func:`~autobuild_lib.core.construction.construct_sd` (tests use
    small ones; the default is the paper's 5 folds x 4 seeds, 1000 epochs, the whole space for ES)."""
    from autobuild_lib.core.construction import construct_sd

    table = root / f"{space}.csv"
    if not table.exists():
        raise FileNotFoundError(f"{table} not found: run the 'labels' stage first")
    sp = get_space(space)
    frame = pd.read_csv(table)
    out_json = root / f"construction-{space}.json"
    if out_json.exists():
        picks = json.loads(out_json.read_text())["picks"]
    else:
        t0 = time.perf_counter()
        res = construct_sd(sp, [sp.from_string(a) for a in frame["arch"]], -frame["fid"].to_numpy(),
                           n=4, methods=("autobuild", "es"), progress=progress, n_jobs=n_jobs, **(ensemble or {}))
        picks = {m: [{"arch": sp.to_string(a), "score": s} for a, s in lst] for m, lst in res.picks.items()}
        members = lambda e: [{"seed": m.seed, "fold": m.fold, "srcc_hop": m.srcc_hop.round(4).tolist(),  # noqa: E731
                              "srcc_pred": round(m.srcc_pred, 4)} for m in e.members]
        from autobuild_lib.core.interpret import fe_scores

        fe = pd.concat([fe_scores(m.result.model).assign(seed=m.seed, fold=m.fold, srcc_hop0=float(m.srcc_hop[0]))
                        for m in res.ensemble.members])
        _atomic_csv(fe, root / f"fe-scores-{space}.csv")
        scores = res.scores.drop(columns=["module"])
        _atomic_csv(scores, root / f"module-scores-{space}.csv")
        _atomic_text(json.dumps({"label": "y = -fid", "picks": picks, "k_used": res.k_used, "ensemble": members(res.ensemble),
                                 "ensemble_mse": members(res.ensemble_mse),
                                 "seconds": round(time.perf_counter() - t0, 1)}, indent=1), out_json)
    keys = list(dict.fromkeys(p["arch"] for lst in picks.values() for p in lst))
    rep = _units(space, keys, LABEL_SEED, root, cfg, n_jobs, progress)
    rows = {r["arch"]: r for r in ShardStore(root / "work" / space / f"seed{LABEL_SEED}").merged(keys)}
    out = pd.DataFrame([{"method": m, "rank": i + 1, "score": p["score"], **rows[p["arch"]]}
                        for m, lst in picks.items() for i, p in enumerate(lst)])
    out = out[["method", "rank", "arch", "score", "fid", "hole_mse", "flops", "n_params", "finetune_s", "eval_s"]]
    _atomic_csv(out, root / f"constructed-{space}.csv")
    rep["rows"] = len(out)
    best = [out[out["method"] == m].sort_values("fid").iloc[0]["arch"] for m in picks]
    rep["samples"] = _samples(space, root, cfg, list(dict.fromkeys(best)), rows)
    return rep


def _samples(space: str, root: Path, cfg: MiniSDConfig, keys: Sequence[str], rows: dict, n: int = 16) -> dict:
    """Fine-tune ``keys`` again exactly as labelled, keep their first ``n`` inpainted evaluation images
    (``samples-<space>.npz``: ``real``, ``masks``, ``arch_<i>``) and check the FID is reproduced."""
    from autobuild_lib.benchmarks.minisd.masks import eval_masks
    from autobuild_lib.benchmarks.minisd.train import evaluate, finetune_variant, inpaint_eval_set

    out = root / f"samples-{space}.npz"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    base, clf, train, ev, metric = _worker_state(str(root), cfg)
    arrays, check = {"real": ev[:n].numpy(), "masks": eval_masks(n).numpy(), "archs": np.array(list(keys))}, {}
    for i, key in enumerate(keys):
        model = finetune_variant(get_space(space).from_string(key), base, train, cfg, LABEL_SEED)
        fid = evaluate(model, ev, clf, cfg, metric)["fid"]
        check[key] = {"fid_label": rows[key]["fid"], "fid_again": fid}
        arrays[f"arch_{i}"] = inpaint_eval_set(model, ev[:n], cfg).numpy()
    with atomic_write(out, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return check


def hw_config(cfg: MiniSDConfig) -> MiniSDConfig:
    """The Sec. 7.10 labelling config: ``HW_FT_FACTOR`` x the fine-tuning steps."""
    return cfg.replace(ft_steps=round(HW_FT_FACTOR * cfg.ft_steps))


def _latency(space: str, keys: Sequence[str], cfg: MiniSDConfig, seed: int, progress: bool) -> tuple[dict, dict]:
    """Median-of-rounds CPU latency (ms, batch 1, one thread) of freshly built variants."""
    from autobuild_lib.benchmarks.pipeline.timing import measure_rounds, summarise

    sp = get_space(space)
    x = torch.zeros(1, 1, 32, 32)
    t = torch.zeros(1, dtype=torch.long)

    def builder(key: str):
        def build():
            torch.manual_seed(0)
            model = MiniUNet(sp.from_string(key), cfg.divisor).eval()
            return lambda: model(x, t, x, x)
        return build

    times = measure_rounds({k: builder(k) for k in keys}, rounds=LATENCY_ROUNDS, repeats=LATENCY_REPEATS,
                           seed=seed, progress=progress)
    med, info = summarise(times)
    return {k: float(med[k]) for k in keys}, info


def hw_label(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """Sec. 7.10 label of ``metric``: ``-(z(fid) + z(metric))``, z over ``frame`` (higher is better)."""
    if metric not in HW_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(HW_METRICS)}")
    z = lambda v: (v - v.mean()) / v.std(ddof=0)  # noqa: E731
    return -(z(frame["fid"].to_numpy(float)) + z(frame[metric].to_numpy(float)))


def _hw_latency(root: Path, cfg: MiniSDConfig, progress: bool) -> dict:
    out = root / "latency-sd-hw.json"
    if out.exists():
        return {"skipped": f"{out.name} exists"}
    keys = [get_space("sd-hw").to_string(a) for a in benchmark_archs("sd-hw", N_LABELS["sd-hw"])]
    lat, info = _latency("sd-hw", keys, cfg, seed=0, progress=progress)
    _atomic_text(json.dumps({"latency_cpu": lat, **info}, indent=1), out)
    return info


def _hw_constructions(root: Path, cfg: MiniSDConfig, n_jobs: int, progress: bool,
                      ensemble: dict | None = None) -> dict:
    from autobuild_lib.core.construction import construct_sd

    space, sp = "sd-hw", get_space("sd-hw")
    for f in ("sd-hw.csv", "latency-sd-hw.json"):
        if not (root / f).exists():
            raise FileNotFoundError(f"{root / f} not found: run the 'hw_labels' and 'hw_latency' stages first")
    frame = pd.read_csv(root / "sd-hw.csv")
    lat = json.loads((root / "latency-sd-hw.json").read_text())["latency_cpu"]
    frame["latency_cpu"] = frame["arch"].map(lat)
    out_json = root / "construction-sd-hw.json"
    if out_json.exists():
        record = json.loads(out_json.read_text())
    else:
        record = {"label": "y = -(z(fid) + z(metric))", "metrics": {}}
        archs = [sp.from_string(a) for a in frame["arch"]]
        for metric in HW_METRICS:
            t0 = time.perf_counter()
            res = construct_sd(sp, archs, hw_label(frame, metric), n=4, methods=HW_METHODS, progress=progress,
                               n_jobs=n_jobs, **(ensemble or {}))
            record["metrics"][metric] = {
                "picks": {m: [{"arch": sp.to_string(a), "score": sc} for a, sc in lst] for m, lst in res.picks.items()},
                "k_used": res.k_used,
                "srcc_hop_mean": res.ensemble.hop_weights().mean(axis=0).round(4).tolist(),
                "srcc_pred_mean": round(float(res.ensemble.pred_weights().mean()), 4),
                "srcc_pred_mse_mean": round(float(res.ensemble_mse.pred_weights().mean()), 4),
                "seconds": round(time.perf_counter() - t0, 1)}
        _atomic_text(json.dumps(record, indent=1), out_json)
    picks = [(metric, m, i + 1, p) for metric, r in record["metrics"].items() for m, lst in r["picks"].items()
             for i, p in enumerate(lst)]
    keys = list(dict.fromkeys(p["arch"] for *_, p in picks))
    rep = _units(space, keys, LABEL_SEED, root, hw_config(cfg), n_jobs, progress)
    rows = {r["arch"]: r for r in ShardStore(root / "work" / space / f"seed{LABEL_SEED}").merged(keys)}
    joint_path = root / "latency-sd-hw-joint.json"
    if not joint_path.exists():
        every = list(dict.fromkeys(list(frame["arch"]) + keys))
        joint, info = _latency(space, every, cfg, seed=1, progress=progress)
        _atomic_text(json.dumps({"latency_cpu": joint, **info}, indent=1), joint_path)
    joint = json.loads(joint_path.read_text())["latency_cpu"]
    out = pd.DataFrame([{"metric": metric, "method": m, "rank": rank, "score": p["score"], **rows[p["arch"]],
                         "latency_cpu": joint[p["arch"]]} for metric, m, rank, p in picks])
    out = out[["metric", "method", "rank", "arch", "score", "fid", "hole_mse", "flops", "n_params", "latency_cpu"]]
    _atomic_csv(out, root / f"constructed-{space}.csv")
    rep["rows"] = len(out)
    return rep


def generate(stages: Sequence[str] = STAGES, root: str | Path = MINI_SD_DIR, cfg: MiniSDConfig = CONFIG,
             n_jobs: int = 1, progress: bool = True, work_dir: str | Path = WORK_CACHE) -> dict:
    """Run ``stages`` in order; each is resumable and skips what is done.  Returns a report per stage."""
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; choose from {list(STAGES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    runners = {
        "classifier": lambda: _classifier(root, cfg),
        "base": lambda: _base(root, cfg, Path(work_dir), progress),
        "reliability": lambda: _reliability(root, cfg, n_jobs, progress),
        "labels": lambda: _labels("sd", root, cfg, n_jobs, progress),
        "constructions": lambda: _constructions("sd", root, cfg, n_jobs, progress),
        "hw_labels": lambda: _labels("sd-hw", root, hw_config(cfg), n_jobs, progress),
        "hw_latency": lambda: _hw_latency(root, cfg, progress),
        "hw_constructions": lambda: _hw_constructions(root, cfg, n_jobs, progress),
    }
    return run_stages(root, STAGES, stages, runners, n_jobs, _write_card)


def _write_card(root: Path) -> None:
    from autobuild_lib.benchmarks.minisd.card import write_card

    write_card(root)
