"""Evaluate any MBv3 / PN architecture on the Mini-OFA benchmark, with an on-disk cache.

``Evaluator().evaluate("mbv3", arch)`` returns the benchmark's labels for a new
(constructed or searched) architecture, computed exactly as the benchmark computed them
(:mod:`autobuild_lib.benchmarks.miniofa.labels`): ``acc``/``ce``/``flops_mini`` from the committed
supernet weights, ``flops``/``n_params`` of the ImageNet-scale subnet, and ``latency_cpu``
measured on this machine (or, with ``latency="predict"``, from a latency predictor; the
``latency_source`` field says which).

Lookup order: the benchmark table itself, then the SQLite cache (keyed by space, canonical
architecture string and the sha256 of the supernet weights), then computation; computed
rows are committed one by one (an interrupted run keeps what it computed), so a re-run never
recomputes and always returns the same values.  The cache is a cache, not benchmark data: it is not in the manifest, and
deleting it only costs time.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from autobuild_lib.benchmarks.miniofa.constants import LABEL_COLUMNS, MINI_OFA_DIR
from autobuild_lib.benchmarks.miniofa.labels import acc_unit, latency_unit, static_unit
from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.pipeline.manifest import sha256_file
from autobuild_lib.core.spaces.ofa import OFAArch

__all__ = ["Evaluator"]

_COLS = (*LABEL_COLUMNS, "latency_source")


class Evaluator:
    """Cached evaluator of new architectures (see module docstring).

    ``latency``: ``"measure"`` (default), ``"predict"`` (needs ``latency_predictors`` =
    ``{space: callable(list[OFAArch]) -> latencies ms}``) or ``"skip"`` (NaN).
    """

    def __init__(self, root: str | Path = MINI_OFA_DIR, cache: str | Path | None = None,
                 latency: str = "measure",
                 latency_predictors: dict[str, Callable[[Sequence[OFAArch]], Sequence[float]]] | None = None,
                 use_table: bool = True) -> None:
        if latency not in ("measure", "predict", "skip"):
            raise ValueError(f"latency must be 'measure', 'predict' or 'skip', got {latency!r}")
        if latency == "predict" and not latency_predictors:
            raise ValueError("latency='predict' needs latency_predictors={space: predictor}")
        self.root = Path(root)
        self.cache_path = Path(cache) if cache is not None else self.root / "evaluations.sqlite"
        self.latency, self.latency_predictors, self.use_table = latency, latency_predictors or {}, use_table
        self._tables: dict[str, pd.DataFrame] = {}
        self._weights_sha: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    def weights(self, space: str) -> Path:
        path = self.root / f"supernet-{space}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the Mini-OFA supernet of {space!r} is needed to evaluate "
                                    f"new architectures; restore it with `git checkout -- {path}` or train it with "
                                    f"`python -m autobuild_lib generate mini-ofa --space {space} --stages supernet`")
        return path

    def _sha(self, space: str) -> str:
        if space not in self._weights_sha:
            self._weights_sha[space] = sha256_file(self.weights(space))
        return self._weights_sha[space]

    def _table(self, space: str) -> pd.DataFrame | None:
        if not self.use_table:
            return None
        if space not in self._tables:
            path = self.root / f"{space}.csv"
            self._tables[space] = pd.read_csv(path).set_index("arch") if path.is_file() else pd.DataFrame()
        t = self._tables[space]
        return t if len(t) else None

    def _connect(self) -> sqlite3.Connection:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.cache_path)
        cols = ", ".join(f"{c} {'TEXT' if c == 'latency_source' else 'REAL'}" for c in _COLS)
        con.execute(f"CREATE TABLE IF NOT EXISTS evaluations (space TEXT, arch TEXT, weights_sha256 TEXT, {cols}, "
                    "PRIMARY KEY (space, arch, weights_sha256))")
        return con

    # --------------------------------------------------------------------- API
    def evaluate(self, space: str, arch: OFAArch | str) -> dict:
        """Labels of one architecture (see :meth:`evaluate_many`)."""
        return self.evaluate_many(space, [arch], progress=False).iloc[0].to_dict()

    def uncached(self, space: str, archs: Sequence[OFAArch | str], include_cache: bool = True) -> list[str]:
        """Canonical strings of ``archs`` (distinct, input order) that :meth:`evaluate_many` would
        compute: neither in the benchmark table nor in the SQLite cache in a form it accepts (a cached
        row with predicted latency does not count when latency is measured).  ``include_cache=False``
        ignores the cache: what an empty cache would have to compute."""
        sp = space_of(space)
        keys = list(dict.fromkeys(sp.to_string(a if isinstance(a, OFAArch) else sp.from_string(a)) for a in archs))
        table = self._table(space)
        known = set(table.index) if table is not None else set()
        rest = [k for k in keys if k not in known]
        if include_cache and rest and self.cache_path.is_file():
            con = sqlite3.connect(f"file:{self.cache_path}?mode=ro", uri=True)
            try:
                cached = dict(con.execute("SELECT arch, latency_source FROM evaluations WHERE space=? AND "
                                          "weights_sha256=?", (space, self._sha(space))))
            except sqlite3.OperationalError:  # an empty cache file without the table
                cached = {}
            finally:
                con.close()
            known |= {a for a, src in cached.items() if src == "measured" or self.latency != "measure"}
        return [k for k in keys if k not in known]

    def evaluate_many(self, space: str, archs: Sequence[OFAArch | str], progress: bool = True) -> pd.DataFrame:
        """One row per architecture (input order): ``arch``, the label columns, ``latency_source``
        (``measured``, ``predicted``, ``skipped``) and ``source`` (``benchmark``, ``cache``, ``computed``)."""
        from tqdm.auto import tqdm

        sp = space_of(space)
        keys = [sp.to_string(a if isinstance(a, OFAArch) else sp.from_string(a)) for a in archs]
        found: dict[str, dict] = {}
        table = self._table(space)
        if table is not None:
            for k in set(keys) & set(table.index):
                row = {c: float(table.at[k, c]) for c in LABEL_COLUMNS}
                found[k] = {**row, "latency_source": "measured", "source": "benchmark"}
        rest = sorted(set(keys) - set(found))
        sha = self._sha(space) if rest else ""
        with contextlib.closing(self._connect()) as con:
            for k in rest:
                cur = con.execute(f"SELECT {', '.join(_COLS)} FROM evaluations WHERE space=? AND arch=? "
                                  "AND weights_sha256=?", (space, k, sha))
                hit = cur.fetchone()
                if hit is not None and (hit[-1] == "measured" or self.latency != "measure"):
                    row = {c: (float("nan") if v is None else v) for c, v in zip(_COLS, hit)}  # NULL = NaN
                    found[k] = {**row, "source": "cache"}
            todo = [k for k in keys if k not in found]
            todo = list(dict.fromkeys(todo))
            weights = str(self.weights(space)) if todo else ""
            insert = f"INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, {', '.join('?' * len(_COLS))})"
            for k in tqdm(todo, desc=f"evaluate {space}", disable=not progress or not todo):
                row = {**acc_unit(weights, k), **static_unit(space, k)}
                if self.latency == "measure":
                    row.update(latency_unit(space, k), latency_source="measured")
                elif self.latency == "predict":
                    row.update(latency_cpu=float(self.latency_predictors[space]([sp.from_string(k)])[0]),
                               latency_source="predicted")
                else:
                    row.update(latency_cpu=float("nan"), latency_source="skipped")
                con.execute(insert, (space, k, sha, *[row[c] for c in _COLS]))
                con.commit()  # one row at a time: an interrupted run keeps what it computed
                found[k] = {**{c: row[c] for c in _COLS}, "source": "computed"}
        return pd.DataFrame([{"arch": k, **found[k]} for k in keys])
