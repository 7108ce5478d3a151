"""What data the study has: benchmark tables under ``data/`` and released caches."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from autobuild_lib.benchmarks.released import OFA_CACHE_SPACES, find_released, load_ofa_cache
from autobuild_lib.paths import DATA_DIR


def _stats(frame: pd.DataFrame) -> dict:
    num = frame.select_dtypes("number")
    return {"rows": len(frame), "labels": {c: {"mean": float(num[c].mean()), "std": float(num[c].std()),
                                               "min": float(num[c].min()), "max": float(num[c].max())}
                                           for c in num.columns}}


def data_summary(released_dir: Path | None = None, data_dir: Path = DATA_DIR) -> dict:
    """Rows and label statistics of every benchmark table (``data/**/*.csv`` with an
    ``arch`` column, named by its path without ``.csv``) and of the authors' caches
    found in ``released_dir``."""
    tables = {}
    for path in sorted(data_dir.glob("**/*.csv")):
        frame = pd.read_csv(path)
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
