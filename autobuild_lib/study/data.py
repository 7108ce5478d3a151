"""What a chapter needs to start: the chosen dataset, loaded into the study's table form.

Every classification chapter takes ``dataset`` = ``"mini-ofa"`` (the study's own benchmark,
``data/mini-ofa/``, see :mod:`autobuild_lib.benchmarks.miniofa.generate`) or ``"autobuild-release"``
(the authors' released caches in ``data_dir``, see :mod:`autobuild_lib.benchmarks.released`).  Both load
into a :class:`~autobuild_lib.benchmarks.labelled.LabelledSet` whose frame has ``arch`` and label
columns with the same meaning: ``acc`` (top-1 %), ``latency_cpu`` (ms), ``flops`` (MFLOPs),
``n_params``; the release adds ``latency_gpu`` and ``latency_npu``, the Mini-OFA benchmark
adds ``ce`` and ``flops_mini``.  The authors' README names only accuracy and latency for the
released caches: where ``flops`` / ``n_params`` are absent, a chapter computes them with
:func:`autobuild_lib.benchmarks.released_flops.fill_static` or leaves them out and says so.

:func:`require` is the first thing a chapter calls: when files are missing it raises
:class:`DataMissing`, whose message names each missing file and how to get it.
The Mini-OFA folder is ``data/mini-ofa`` unless the environment variable
``AUTOBUILD_MINI_OFA_DIR`` points elsewhere (the tests use this for a small fixture).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autobuild_lib.benchmarks.labelled import LabelledSet, from_frame
from autobuild_lib.benchmarks.pipeline.missing import DataMissing
from autobuild_lib.benchmarks.released import IR_CACHE, OFA_CACHE_SPACES, find_released, load_ofa_cache, missing_message

__all__ = ["DATASETS", "DataMissing", "mini_ofa_dir", "resolve_data_dir", "require", "load_set", "load_ir_set", "can_evaluate",
           "evaluator"]

DATASETS = ("mini-ofa", "autobuild-release")
_RELEASED_OFA = {space: name for name, space in OFA_CACHE_SPACES.items() if "pan_seg" not in name}
_RELEASED_PAN = {space: name for name, space in OFA_CACHE_SPACES.items() if "pan_seg" in name}


def mini_ofa_dir() -> Path:
    from autobuild_lib.benchmarks.miniofa.generate import MINI_OFA_DIR

    env = os.environ.get("AUTOBUILD_MINI_OFA_DIR")
    return Path(env) if env else MINI_OFA_DIR


def resolve_data_dir(data_dir: str | Path) -> Path:
    """``data_dir`` as given when absolute, else relative to the repository root (notebooks run in
    ``notebooks/``, the settings in ``_config.yml`` are relative to the root)."""
    from autobuild_lib.paths import REPO_ROOT

    p = Path(data_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")


def _committed(root: Path, files: Sequence[str]) -> list[str]:
    """Those of ``files`` (names inside ``root``) that git has committed, so that
    ``git checkout`` can restore them; none when ``root`` is not in a git work tree."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "--", *files], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []
    return [f for f in files if f in out]


def _mini_files(spaces: Sequence[str], ir: bool) -> list[str]:
    files = [f"{s}.csv" for s in spaces]
    return files + ([f"ir-{s}.npz" for s in spaces] if ir else [])


def require(dataset: str, data_dir: str | Path | None = None, spaces: Sequence[str] = ("mbv3", "pn"),
            ir: bool = False, panoptic: bool = False) -> None:
    """Raise :class:`DataMissing` unless every file the chapter needs is present."""
    _check_dataset(dataset)
    bad = [s for s in spaces if s not in ("mbv3", "pn")]
    if bad:
        raise ValueError(f"unknown spaces {bad}; choose from ['mbv3', 'pn']")
    if dataset == "mini-ofa":
        if panoptic:
            raise ValueError("the Mini-OFA benchmark has no panoptic labels; use the panoptic benchmark")
        root = mini_ofa_dir()
        missing = [f for f in _mini_files(spaces, ir) if not (root / f).is_file()]
        if missing:
            cmd = f"python -m autobuild_lib generate mini-ofa --space {' '.join(spaces)}"
            committed = _committed(root, missing)
            restore = (f"Restore the committed file(s) with `git checkout -- {' '.join(str(root / f) for f in committed)}`; "
                       if committed else "")
            raise DataMissing(f"the Mini-OFA benchmark is incomplete in {root}: missing {', '.join(missing)}. "
                              f"{restore}generate {'the others' if committed else 'them'} with "
                              f"`{cmd}` (hours on a 2-core CPU; see data/mini-ofa/DATA_CARD.md).")
        return
    if data_dir is None:
        raise ValueError("dataset 'autobuild-release' needs data_dir (where the authors' caches are)")
    data_dir = resolve_data_dir(data_dir)
    names = [(_RELEASED_PAN if panoptic else _RELEASED_OFA)[s] for s in spaces] + ([IR_CACHE] if ir else [])
    found = find_released(data_dir)
    missing = [n for n in names if n not in found]
    if missing:
        raise DataMissing(missing_message(data_dir, missing))


def load_set(dataset: str, space: str, data_dir: str | Path | None = None, n: int | None = None,
             seed: int = 0, panoptic: bool = False) -> LabelledSet:
    """The labelled architectures of ``space``; ``n`` keeps a fixed random subset (smoke runs)."""
    require(dataset, data_dir, [space], panoptic=panoptic)
    if dataset == "mini-ofa":
        from autobuild_lib.benchmarks.miniofa.generate import load_mini_ofa

        frame = load_mini_ofa(space, mini_ofa_dir())
        source = str(mini_ofa_dir() / f"{space}.csv")
    else:
        name = (_RELEASED_PAN if panoptic else _RELEASED_OFA)[space]
        source = str(resolve_data_dir(data_dir) / name)
        frame = load_ofa_cache(source, space)
    if n is not None:
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        if n < len(frame):
            keep = np.sort(np.random.default_rng([seed, 11]).choice(len(frame), n, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
    return from_frame(space, frame, source)


def load_ir_set(dataset: str, data_dir: str | Path | None = None, n: int | None = None, seed: int = 0):
    """IR graphs of both spaces with their labels.

    Returns ``(frame, table)``: ``frame`` has ``space``, ``arch`` and the label columns (``acc`` in %),
    one row per graph of the :class:`~autobuild_lib.core.graphs.GraphTable` ``table`` (IR schema).
    """
    import pandas as pd

    from autobuild_lib.core.graphs import GraphTable
    from autobuild_lib.core.ir import IR_SCHEMA, ir_from_record, read_ir_graphs

    require(dataset, data_dir, ("mbv3", "pn"), ir=(dataset == "mini-ofa"))
    if dataset == "mini-ofa":
        frames, graphs = [], []
        for space in ("mbv3", "pn"):
            labels = load_set(dataset, space).frame.set_index("arch")
            keys, gs = read_ir_graphs(mini_ofa_dir() / f"ir-{space}.npz")
            unlabelled = labels.index.get_indexer(keys) < 0
            if unlabelled.any():
                raise DataMissing(f"ir-{space}.npz holds {int(unlabelled.sum())} architectures that {space}.csv does not "
                                  f"label: regenerate both with `python -m autobuild_lib generate mini-ofa --space {space} "
                                  "--stages ir,merge`")
            frames.append(labels.loc[keys].reset_index().assign(space=space))
            graphs.extend(gs)
        frame = pd.concat(frames, ignore_index=True)
    else:
        from autobuild_lib.benchmarks.released import load_ir_cache

        require(dataset, data_dir, (), ir=True)
        records = load_ir_cache(resolve_data_dir(data_dir) / IR_CACHE)
        frame = pd.DataFrame([{"space": r.family, "arch": r.arch, **r.labels} for r in records])
        graphs = [ir_from_record(r) for r in records]
    if n is not None and n < len(frame):
        keep = np.sort(np.random.default_rng([seed, 12]).choice(len(frame), n, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
        graphs = [graphs[i] for i in keep]
    return frame, GraphTable(graphs, IR_SCHEMA)


def can_evaluate(dataset: str) -> bool:
    """Whether new architectures can be evaluated for real (only on the Mini-OFA benchmark)."""
    _check_dataset(dataset)
    return dataset == "mini-ofa"


def evaluator(dataset: str, **kwargs):
    """A :class:`~autobuild_lib.benchmarks.miniofa.evaluator.Evaluator` on the Mini-OFA benchmark.

    For ``autobuild-release`` there is none: ImageNet/COCO evaluation is not available here,
    and chapters report their predictors' estimates instead (labelled as estimates).
    """
    if not can_evaluate(dataset):
        raise ValueError("new architectures cannot be evaluated on the authors' released data here (ImageNet/COCO "
                         "evaluation is not available); report predictor estimates instead")
    from autobuild_lib.benchmarks.miniofa.evaluator import Evaluator

    return Evaluator(mini_ofa_dir(), **kwargs)
