"""Chapter parameters: checked once, the same way in every chapter, and resolved for the profile.

Each chapter module holds a ``Params`` dataclass, a subclass of :class:`ChapterParams`, whose
fields are exactly the names of its notebook's ``parameters`` cell.  Creating it checks the
common parameters with :func:`check_common`, then the chapter's own ones in ``resolve()``, which
also fills the derived settings (fields with ``init=False``) from the profile.  Each failure is a
one-line ``ValueError`` naming the parameter, what it must be and what it got.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.study.data import DATASETS

__all__ = ["PROFILES", "SPACES", "ChapterParams", "check_common", "parse_equations", "check_bool", "check_int", "is_int", "check_number"]

PROFILES = ("smoke", "full")
SPACES = ("mbv3", "pn")
_UNSET = object()


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_common(*, profile: object = _UNSET, dataset: object = _UNSET, datasets: Sequence[str] = DATASETS,
                 seed: object = _UNSET, seeds: object = _UNSET, data_dir: object = _UNSET,
                 space: object = _UNSET, spaces: object = _UNSET) -> None:
    """Check the given parameters (the ones left out are not checked)."""
    if profile is not _UNSET and profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if dataset is not _UNSET and dataset not in datasets:
        raise ValueError(f"dataset must be one of {list(datasets)}, got {dataset!r}")
    if seed is not _UNSET and not (is_int(seed) and seed >= 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if seeds is not _UNSET:
        if not (isinstance(seeds, (list, tuple)) and seeds and all(is_int(s) and s >= 0 for s in seeds)):
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


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """``value`` is an int in ``[low, high]`` (no upper bound when ``high`` is None), else a one-line ValueError."""
    if not (is_int(value) and value >= low and (high is None or value <= high)):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {span}, got {value!r}")


def check_number(name: str, value: object, low: float, high: float) -> None:
    """``value`` is a number in ``[low, high]``, else a one-line ValueError."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")


def check_bool(name: str, value: object) -> None:
    """``value`` is True or False, else a one-line ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


_COMMON = ("profile", "dataset", "seed", "seeds", "data_dir", "space", "spaces")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChapterParams:
    """A chapter's notebook parameters, validated once at creation and resolved for the profile.

    Subclasses add their own fields (the rest of the ``parameters`` cell) and derived settings
    (``field(init=False)``), and override :meth:`resolve`.  ``DATASETS`` lists the datasets the
    chapter accepts; ``DATA_DIR_MAY_BE_NONE`` lets ``data_dir`` be None (a default from elsewhere).
    """

    profile: str
    dataset: str
    DATASETS: ClassVar[tuple[str, ...]] = DATASETS
    DATA_DIR_MAY_BE_NONE: ClassVar[bool] = False

    def __post_init__(self) -> None:
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name in _COMMON}
        if self.DATA_DIR_MAY_BE_NONE and given.get("data_dir", "") is None:
            del given["data_dir"]
        check_common(datasets=self.DATASETS, **given)
        self.resolve()

    def resolve(self) -> None:
        """Check the chapter's own parameters and fill its derived settings (override)."""

    def _set(self, **values: Any) -> None:
        """Fill derived settings of this frozen instance (only from :meth:`resolve`)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def smoke(self) -> bool:
        """True in the smoke profile, whose numbers are not evidence."""
        return self.profile == "smoke"
