"""The parameters every chapter shares, checked once and the same way in all of them.

A chapter's ``prepare()`` passes the common parameters of its ``parameters`` cell to
:func:`check_common` and checks only its own ones itself.  Each failure is a one-line
``ValueError`` naming the parameter, what it must be and what it got.
"""
from __future__ import annotations

from collections.abc import Sequence

from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.study.data import DATASETS

__all__ = ["PROFILES", "SPACES", "check_common", "parse_equations"]

PROFILES = ("smoke", "full")
SPACES = ("mbv3", "pn")
_UNSET = object()


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_common(*, profile: object = _UNSET, dataset: object = _UNSET, datasets: Sequence[str] = DATASETS,
                 seed: object = _UNSET, seeds: object = _UNSET, data_dir: object = _UNSET,
                 space: object = _UNSET, spaces: object = _UNSET) -> None:
    """Check the given parameters (the ones left out are not checked)."""
    if profile is not _UNSET and profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if dataset is not _UNSET and dataset not in datasets:
        raise ValueError(f"dataset must be one of {list(datasets)}, got {dataset!r}")
    if seed is not _UNSET and not (_int(seed) and seed >= 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if seeds is not _UNSET:
        if not (isinstance(seeds, (list, tuple)) and seeds and all(_int(s) and s >= 0 for s in seeds)):
            raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    if data_dir is not _UNSET and not (isinstance(data_dir, str) and data_dir):
        raise ValueError(f"data_dir must be a path string, got {data_dir!r}")
    if space is not _UNSET and space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}, got {space!r}")
    if spaces is not _UNSET and not (isinstance(spaces, (list, tuple)) and spaces and set(spaces) <= set(SPACES)
                                     and len(set(spaces)) == len(spaces)):
        raise ValueError(f"spaces must be a non-empty list of distinct names from {list(SPACES)}, got {spaces!r}")


def parse_equations(equations: object, metrics: Sequence[str] = ("acc", "latency_cpu")) -> list[LabelEquation]:
    """A non-empty list of distinct label equations over ``metrics``, parsed (paper Sec. 4: label equations)."""
    if not isinstance(equations, (list, tuple)) or len(equations) < 1:
        raise ValueError("equations must be a non-empty list of label-equation strings")
    parsed = [LabelEquation.parse(e) for e in equations]  # raises ValueError naming what is not allowed
    bad = [e.text for e in parsed if not set(e.metrics) <= set(metrics)]
    if bad:
        raise ValueError(f"equations may use only {' and '.join(metrics)} here; not: {bad}")
    if len({e.text for e in parsed}) != len(parsed):
        raise ValueError("equations must be distinct")
    return parsed
