"""Which architectures Mini-Panoptic labels, and how many of them have a finished pseudo label.

Shared by the generator, the data card and chapter 07, so none of them imports another.
"""
from __future__ import annotations

from pathlib import Path

from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.panoptic.constants import ARCH_SEED, CONFIG, MINI_PANOPTIC_DIR, N_PSEUDO
from autobuild_lib.benchmarks.panoptic.labelkey import label_work
from autobuild_lib.benchmarks.panoptic.train import PanopticConfig, sample_archs
from autobuild_lib.benchmarks.pipeline.workunits import ShardStore

__all__ = ["benchmark_archs", "pseudo_rows", "pseudo_progress"]


def benchmark_archs(n: int = N_PSEUDO, seed: int = ARCH_SEED) -> list[str]:
    """Canonical strings of the ``n`` benchmark architectures (fixed order)."""
    space = space_of("mbv3")
    return [space.to_string(a) for a in sample_archs(space, n, seed)]


def pseudo_rows(root: str | Path = MINI_PANOPTIC_DIR, cfg: PanopticConfig = CONFIG) -> list[dict]:
    """The finished pseudo labels of the ``N_PSEUDO`` benchmark architectures under ``cfg``, in benchmark
    order (from ``work/pseudo-<digest>/``; the reliability architectures stored beside them are left out)."""
    folder = label_work(Path(root), cfg, "pseudo")
    stored = ShardStore(folder).rows() if folder.is_dir() else {}
    return [stored[key] for key in benchmark_archs() if key in stored]


def pseudo_progress(root: str | Path = MINI_PANOPTIC_DIR, cfg: PanopticConfig = CONFIG) -> int:
    """How many of the ``N_PSEUDO`` benchmark architectures have a finished pseudo label under ``cfg``;
    ``pseudo.csv`` is written once all have one."""
    return len(pseudo_rows(root, cfg))
