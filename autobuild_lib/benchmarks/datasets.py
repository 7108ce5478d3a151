"""What data the study has: benchmark tables under ``data/`` and released caches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from autobuild_lib.benchmarks.labelled import read_csv_file
from autobuild_lib.benchmarks.released import OFA_CACHE_SPACES, find_released, load_ofa_cache
from autobuild_lib.paths import DATA_DIR


def _stats(frame: pd.DataFrame) -> dict:
    """Rows, per numeric label its statistics over the finite values, and the NaN/inf count
    of every label that has any (``nan_labels``)."""
    num = frame.select_dtypes("number")
    finite = num.where(np.isfinite(num))
    bad = {c: int(n) for c, n in finite.isna().sum().items() if n}
    return {"rows": len(frame), "labels": {c: {"mean": float(finite[c].mean()), "std": float(finite[c].std()),
                                               "min": float(finite[c].min()), "max": float(finite[c].max())}
                                           for c in num.columns},
            "nan_labels": bad}


def data_summary(released_dir: Path | None = None, data_dir: Path | None = None) -> dict:
    """Rows and label statistics of every benchmark table (``data/**/*.csv`` with an
    ``arch`` column, named by its path without ``.csv``) and of the authors' caches
    found in ``released_dir``.  An unreadable CSV or a missing ``released_dir`` is an error
    naming the path."""
    if released_dir is not None and not Path(released_dir).is_dir():
        raise FileNotFoundError(f"{released_dir} is not a folder; pass the folder holding the authors' "
                                "released caches")
    data_dir = DATA_DIR if data_dir is None else Path(data_dir)
    tables = {}
    for path in sorted(data_dir.glob("**/*.csv")):
        frame = read_csv_file(path, "table")
        if "arch" in frame.columns:
            tables[str(path.relative_to(data_dir).with_suffix(""))] = _stats(frame)
    released = {}
    if released_dir is not None:
        for name, path in find_released(released_dir).items():
            if name in OFA_CACHE_SPACES:
                released[name] = _stats(load_ofa_cache(path, OFA_CACHE_SPACES[name]))
            else:
                released[name] = {"path": str(path)}
    return {"tables": tables, "released": released}
