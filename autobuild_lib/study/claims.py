"""The chapters' "paper vs this study" tables, collected for the book's verdict page.

Every chapter ends with a table of the paper's claims (columns ``claim``, ``paper``,
``this study``, ``verdict``) and passes it to :func:`record_claims`.  When the study's runner
executes the chapters it sets ``AUTOBUILD_CLAIMS_DIR`` (next to the executed notebooks), so each
table is also written there as ``<chapter>.csv``; the verdict chapter (``90_verdicts``), run last,
reads them back with :func:`load_claims`.  Outside the runner nothing is written.

Chapters word their verdicts in two vocabularies ("consistent" / "inconsistent ..." /
"undetermined" and "reproduced" / "not reproduced" / "not checked"); :func:`verdict_category`
maps both onto ``agrees`` / ``disagrees`` / ``open``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["CLAIMS_ENV", "COLUMNS", "record_claims", "load_claims", "verdict_category"]

CLAIMS_ENV = "AUTOBUILD_CLAIMS_DIR"
COLUMNS = ["claim", "paper", "this study", "verdict"]


def record_claims(frame: pd.DataFrame, chapter: str) -> pd.DataFrame:
    """Write ``frame`` to ``$AUTOBUILD_CLAIMS_DIR/<chapter>.csv`` (atomically) when the runner set
    the variable; returns ``frame`` unchanged."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"a claims table needs the columns {COLUMNS}; missing {missing}")
    if not chapter or "/" in chapter:
        raise ValueError(f"chapter must be a notebook stem such as '05_mbv3_pareto', got {chapter!r}")
    directory = os.environ.get(CLAIMS_ENV)
    if directory:
        path = Path(directory) / f"{chapter}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".partial-{path.name}.{os.getpid()}")
        frame[COLUMNS].astype(str).to_csv(tmp, index=False)
        os.replace(tmp, path)
    return frame


def verdict_category(verdict: str) -> str:
    """``agrees``, ``disagrees`` or ``open`` for a chapter's verdict string."""
    v = str(verdict).strip().lower()
    if v.startswith(("consistent", "reproduced")):
        return "agrees"
    if v.startswith(("inconsistent", "not reproduced")):
        return "disagrees"
    return "open"


def load_claims(directory: str | Path | None = None) -> pd.DataFrame:
    """Every recorded table, with ``chapter`` and ``category`` columns (empty frame when none)."""
    directory = Path(directory or os.environ.get(CLAIMS_ENV) or ".")
    frames = []
    for path in sorted(directory.glob("[0-9][0-9]_*.csv")):
        f = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in f.columns]
        if missing:
            raise ValueError(f"{path}: not a claims table (missing {missing}); delete it and re-run its chapter")
        frames.append(f.assign(chapter=path.stem))
    if not frames:
        return pd.DataFrame(columns=["chapter", *COLUMNS, "category"])
    out = pd.concat(frames, ignore_index=True)[["chapter", *COLUMNS]]
    return out.assign(category=out["verdict"].map(verdict_category))
