"""FLOPs and parameter counts for released architectures whose cache does not carry them.

The authors' README describes ``ofa_mbv3_custom_cache.pkl`` / ``ofa_pn_custom_cache.pkl`` as
annotated with accuracy and GPU/CPU/NPU latency only; ``flops`` and ``n_params`` may be
absent.  A chapter that wants them computes them from the architecture here, the way the
Mini-OFA benchmark counts them (:func:`autobuild_lib.benchmarks.miniofa.labels.static_unit`: the
ImageNet-scale OFA subnet, OFA's ``count_net_flops`` in MFLOPs, ``count_parameters`` in
millions).  These are the study's counts, not the authors' numbers (their
``ofa_manager.py`` uses OFA's FLOPs lookup table for MBv3 and ``thop`` for PN).

Results are cached in ``.cache/released-static.sqlite`` (a cache: deleting it only costs time,
about 0.1 s per architecture on one core), keyed by space, architecture and ofa version.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from autobuild_lib.paths import REPO_ROOT

__all__ = ["STATIC_CACHE", "STATIC_COLUMNS", "fill_static", "static_labels"]

STATIC_CACHE = REPO_ROOT / ".cache" / "released-static.sqlite"
STATIC_COLUMNS = ("flops", "n_params")


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS static (space TEXT, arch TEXT, ofa TEXT, flops REAL, n_params REAL, "
                "PRIMARY KEY (space, arch, ofa))")
    return con


def static_labels(space: str, archs: Sequence[str], cache: str | Path = STATIC_CACHE) -> pd.DataFrame:
    """``arch``, ``flops`` (MFLOPs), ``n_params`` (M) per canonical architecture string, input order."""
    from autobuild_lib.benchmarks.miniofa.labels import static_unit

    if space not in ("mbv3", "pn"):
        raise ValueError(f"space must be 'mbv3' or 'pn', got {space!r}")
    ofa_version = version("ofa")
    found: dict[str, tuple[float, float]] = {}
    with contextlib.closing(_connect(Path(cache))) as con:
        for arch in dict.fromkeys(archs):
            hit = con.execute("SELECT flops, n_params FROM static WHERE space=? AND arch=? AND ofa=?",
                              (space, arch, ofa_version)).fetchone()
            if hit is None:
                row = static_unit(space, arch)
                hit = (row["flops"], row["n_params"])
                con.execute("INSERT OR REPLACE INTO static VALUES (?, ?, ?, ?, ?)", (space, arch, ofa_version, *hit))
                con.commit()   # one row at a time: an interrupted run keeps what it computed
            found[arch] = hit
    return pd.DataFrame([{"arch": a, "flops": found[a][0], "n_params": found[a][1]} for a in archs])


def fill_static(frame: pd.DataFrame, space: str, cache: str | Path = STATIC_CACHE) -> str | None:
    """Add ``flops`` / ``n_params`` to ``frame`` in place where the cache lacks them; say what was done.

    Returns ``None`` when both columns were already there (complete), else one sentence naming
    the columns computed and how.
    """
    missing = [c for c in STATIC_COLUMNS if c not in frame.columns or frame[c].isna().any()]
    if not missing:
        return None
    values = static_labels(space, list(frame["arch"]), cache)
    for c in missing:
        have = frame[c] if c in frame.columns else pd.Series(float("nan"), index=frame.index)
        frame[c] = have.fillna(pd.Series(values[c].to_numpy(), index=frame.index))
    return (f"{space}: the released cache lacks {' and '.join(missing)} (for some or all architectures); "
            "computed here from the architecture with the ofa package (ImageNet-scale subnet, "
            "OFA's count_net_flops in MFLOPs, parameters in millions), as the Mini-OFA benchmark counts them; "
            "these are the study's counts, not the authors'.")
