"""The Mini-OFA benchmark's constants, its architecture list and its table reader: what the
generator, the data card, the checks and the evaluator share (so none of them imports another)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.pipeline.manifest import verify_file
from autobuild_lib.core.spaces.ofa import OFAArch
from autobuild_lib.paths import DATA_DIR, REPO_ROOT

MINI_OFA_DIR = DATA_DIR / "mini-ofa"
WORK_CACHE = REPO_ROOT / ".cache" / "miniofa"
ARCH_SEED = 1
STAGES = ("supernet", "reliability", "static", "latency", "acc", "ir", "latency_model", "merge", "checks")
#: Stages run only when named, in their own window with nothing else on the machine.
EXCLUSIVE_STAGES = ("latency_pilot", "latency_rounds")
#: Wall-time budget of one space's latency rounds (issue 20: about 1.5 hours).
LATENCY_BUDGET_S = 5400.0
LATENCY_PILOT = {"n_archs": 200, "rounds": 8, "passes": 21, "warmup": 3}
UNIT_COLUMNS = {"static": ("flops", "n_params"), "latency": ("latency_cpu",),
                "acc": ("acc", "acc_a", "acc_b", "ce", "flops_mini")}
LABEL_COLUMNS = ("acc", "acc_a", "acc_b", "ce", "flops", "n_params", "latency_cpu", "flops_mini")
#: Reliability bar of the accuracy labels, split-half SRCC(acc_a, acc_b) (issue 20).  The pilots'
#: second bar, SRCC(acc, depth) >= 0.3, is dropped: at 48-56 px with stem stride 2 depth hardly
#: changes accuracy, a property of this benchmark that the data card and chapters 01/04 report.
ACC_SPLIT_HALF_BAR = {"mbv3": 0.9, "pn": 0.85}
# Committed caches, not data: the chapters' evaluations of new architectures and their full-profile
# predictors. The manifest leaves them out (they grow whenever a chapter evaluates something new).
MANIFEST_EXCLUDE = (".partial-", "evaluations.sqlite", "predictors")


def regenerate_command(space: str) -> str:
    return f"python -m autobuild_lib generate mini-ofa --space {space}"


def benchmark_archs(space: str, n: int = 3000, seed: int = ARCH_SEED) -> list[OFAArch]:
    """The ``n`` distinct benchmark architectures of ``space`` in sample order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sp = space_of(space)
    out, seen, i = [], set(), 0
    while len(out) < n:
        a = sp.sample(np.random.default_rng([seed, i]))
        i += 1
        key = sp.to_string(a)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def load_mini_ofa(space: str, root: str | Path = MINI_OFA_DIR, verify: bool = True) -> pd.DataFrame:
    """The benchmark table of ``space`` (``arch`` + label columns), checked against the manifest."""
    if space not in ("mbv3", "pn"):
        raise ValueError(f"unknown Mini-OFA space {space!r}; choose 'mbv3' or 'pn'")
    root = Path(root)
    path = root / f"{space}.csv"
    if verify:
        verify_file(path, root, regenerate_command(space))
    from autobuild_lib.benchmarks.labelled import read_table

    return read_table(path)


def load_latency_model(space: str, root: str | Path = MINI_OFA_DIR):
    """The benchmark's k-GNN latency predictor of ``space`` (``latency-<space>.pt``, the ``latency_model``
    stage) and its record (``latency-model-<space>.json``: test MAE, SRCC, the latencies it learned).

    The paper predicts the latency of architectures outside the benchmark (Sec. 4); chapters 05
    and 06 use this predictor for constructed and searched architectures.  Checked against the
    manifest.
    """
    import json

    from autobuild_lib.core.latency import load_latency_predictor

    if space not in ("mbv3", "pn"):
        raise ValueError(f"unknown Mini-OFA space {space!r}; choose 'mbv3' or 'pn'")
    root = Path(root)
    model, record = root / f"latency-{space}.pt", root / f"latency-model-{space}.json"
    cmd = f"{regenerate_command(space)} --stages latency_model"
    verify_file(model, root, cmd)
    verify_file(record, root, cmd)
    return load_latency_predictor(model), json.loads(record.read_text())
