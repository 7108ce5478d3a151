"""How reliable a *fully fine-tuned* panoptic label is, by test-set size (issue 7, before labelling).

Usage: python scripts/panoptic_full_reliability.py [N_ARCHS] [N_TEST] [N_JOBS]
Fine-tunes the first N_ARCHS (default 20) benchmark architectures exactly as the ``full`` stage
does (``train.finetune_subnet``), evaluates each on N_TEST (default 4000) test mosaics (they start
with the ``full`` stage's test set) keeping per-image counts, and writes the split-half SRCC
per test-set size (``reliability.split_half_curve``) to
``data/mini-panoptic/pilots/full-reliability.json``.  Nothing else in ``data/`` is touched.
"""
import json
import os
import sys
import time
from pathlib import Path

from joblib import Parallel, delayed

from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.panoptic import generate as gen
from autobuild_lib.benchmarks.panoptic.mosaics import make_mosaics
from autobuild_lib.benchmarks.panoptic.reliability import label_from_stats, spearman_brown_size, split_half_curve
from autobuild_lib.benchmarks.panoptic.train import finetune_subnet


def _arg(i: int, default: int) -> int:
    return int(sys.argv[i]) if len(sys.argv) > i else default


N_ARCHS, N_TEST, N_JOBS = _arg(1, 20), _arg(2, 4000), _arg(3, 2)
OUT = gen.MINI_PANOPTIC_DIR / "pilots" / "full-reliability.json"


def unit(key: str) -> dict:
    import torch

    from autobuild_lib.benchmarks.fashion_mnist import load_fashion_mnist
    from autobuild_lib.benchmarks.panoptic.reliability import image_stats
    from autobuild_lib.benchmarks.panoptic.train import _compact

    model, data = gen._worker_state(str(gen.MINI_PANOPTIC_DIR), gen.CONFIG)
    fm = load_fashion_mnist()
    cfg = gen.CONFIG
    test = _compact(make_mosaics(fm["test_images"], fm["test_labels"], N_TEST, seed=cfg.seed * 10 + 4, size=cfg.size))
    n = min(N_TEST, cfg.n_test)
    assert torch.equal(test.images[:n], data.test.images[:n])   # the full stage's test set comes first
    t0 = time.perf_counter()
    sub, losses = finetune_subnet(model, space_of("mbv3").from_string(key), data, cfg)
    ft_s = time.perf_counter() - t0
    return {"key": key, "stats": image_stats(sub, test, cfg.min_area), "finetune_s": ft_s,
            "eval_s": time.perf_counter() - t0 - ft_s}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    keys = gen.benchmark_archs(gen.N_FULL)[:N_ARCHS]
    t0 = time.perf_counter()
    res = Parallel(n_jobs=N_JOBS)(delayed(unit)(k) for k in keys)
    stats = [r["stats"] for r in res]
    sizes = [s for s in (500, 1000, 2000, 4000) if s <= N_TEST]
    curve = split_half_curve(stats, sizes, n_draws=20, seed=0)
    at_max = curve[curve["n_eval"] == max(sizes)].set_index("kind")["srcc_mean"]
    out = {"n_archs": len(keys), "n_test": N_TEST, "ft_steps": gen.CONFIG.ft_steps,
           "pq_full_on_all": [label_from_stats("pq", s["pq"]) for s in stats],
           "pq_full_on_first_1000": [label_from_stats("pq", s["pq"][:1000]) for s in stats],
           "curve": curve.to_dict(orient="records"),
           "bar": gen.RELIABILITY_BAR,
           "images_for_bar": {k: spearman_brown_size(float(r), max(sizes)) for k, r in at_max.items()},
           "finetune_s_mean": sum(r["finetune_s"] for r in res) / len(res),
           "eval_s_mean": sum(r["eval_s"] for r in res) / len(res), "wall_s": time.perf_counter() - t0,
           "n_jobs": N_JOBS}
    Path(OUT).parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(f".partial-{OUT.name}")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(OUT)
    print(curve.pivot(index="n_eval", columns="kind", values="srcc_mean").round(3).to_markdown())
    print({k: v for k, v in out.items() if k not in ("curve", "pq_full_on_all", "pq_full_on_first_1000")})
