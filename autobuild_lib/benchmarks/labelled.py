"""Labelled architecture tables: the study's benchmarks and the authors' caches.

A benchmark table is a CSV file with one row per architecture: column
``arch`` holds the canonical string of the space (see
:meth:`OFASpace.to_string`), the other numeric columns are labels.  The
authors' released caches load into the same form through
:mod:`autobuild_lib.benchmarks.released`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.released import load_ofa_cache
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.spaces import OFAArch, OFASpace, get_space


@dataclass
class LabelledSet:
    """Architectures of one space with their label table and sequence graphs."""

    space: OFASpace
    frame: pd.DataFrame
    archs: list[OFAArch]
    graphs: GraphTable

    def labels(self, equation: str | LabelEquation) -> np.ndarray:
        """Evaluate a label equation (e.g. ``"acc/latency_cpu"``) on every row; refuses
        NaN/inf and constant labels (:meth:`LabelEquation.labels`)."""
        eq = equation if isinstance(equation, LabelEquation) else LabelEquation.parse(equation)
        return eq.labels(self.frame, len(self.frame))


def read_csv_file(path: str | Path, what: str = "table") -> pd.DataFrame:
    """Read any CSV file; errors name the file, what was wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable CSV {what} ({' '.join(str(exc).split())}); "
                         "replace or delete the file") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a benchmark CSV; errors name the file and what was wrong."""
    frame = read_csv_file(path, "benchmark table")
    if "arch" not in frame.columns:
        raise ValueError(f"{path} has no 'arch' column; columns: {list(frame.columns)}")
    return frame


def from_frame(space: str | OFASpace, frame: pd.DataFrame, source: str = "table") -> LabelledSet:
    """Parse the ``arch`` column of ``frame`` and build the sequence graphs."""
    space = get_space(space) if isinstance(space, str) else space
    archs = []
    for i, text in enumerate(frame["arch"]):
        try:
            archs.append(space.from_string(text))
        except ValueError as exc:
            raise ValueError(f"{source}: row {i}: {exc}") from None
    graphs = GraphTable([ofa_graph(space, a) for a in archs], OFA_SCHEMA)
    return LabelledSet(space, frame.reset_index(drop=True), archs, graphs)


def load_labelled(space: str, table: str | Path | None = None,
                  released: str | Path | None = None) -> LabelledSet:
    """Load a benchmark CSV (``table``) or an authors' cache (``released``)."""
    if (table is None) == (released is None):
        raise ValueError("give exactly one of table= (benchmark CSV) or released= (authors' .pkl)")
    if table is not None:
        return from_frame(space, read_table(table), str(table))
    return from_frame(space, load_ofa_cache(released, space), str(released))
