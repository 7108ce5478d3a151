"""Resumable, idempotent work units stored as append-only shards.

Long label generation (thousands of architectures) runs as *work units*:
one unit = one key (e.g. a canonical architecture string) -> one row (a dict
of labels).  Finished units are written in chunks as shard files
``shard-NNNNN.jsonl``; each shard appears atomically (written to a
``.partial-*`` file, then renamed), so killing the process at any moment
loses at most the chunk in progress and never leaves a half-written shard.
Restarting skips every key already in a shard.  :meth:`ShardStore.merged`
returns the rows in the caller's key order, so the result does not depend on
how the work was chunked or resumed.

The map runs through :class:`joblib.Parallel`; choose its backend with
``joblib.parallel_config`` (e.g. ``with parallel_config(backend="dask"):``
after creating a ``dask.distributed.Client``, or ``backend="ray"`` after
``ray.util.joblib.register_ray()``) to spread the units over a cluster.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["ShardStore", "run_units"]


class ShardStore:
    """A folder of ``shard-*.jsonl`` files, each line one finished unit ``{key_field: key, ...}``."""

    def __init__(self, folder: str | Path, key_field: str = "arch") -> None:
        self.folder = Path(folder)
        self.key_field = key_field

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.jsonl"))

    def clean_partials(self) -> list[Path]:
        """Delete leftovers of a killed write (``.partial-*``); returns what was removed."""
        gone = sorted(self.folder.glob(".partial-*"))
        for p in gone:
            p.unlink()
        return gone

    def rows(self) -> dict[str, dict]:
        """Every finished unit by key.  A key stored twice with different values is an error."""
        out: dict[str, dict] = {}
        for path in self.shards():
            with path.open() as f:
                for n, line in enumerate(f, 1):
                    try:
                        row = json.loads(line)
                        key = row[self.key_field]
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise ValueError(f"{path}:{n}: not a work-unit row with a {self.key_field!r} field ({exc}); "
                                         "delete this shard and rerun the generation to redo its units") from None
                    if key in out and out[key] != row:
                        raise ValueError(f"{path}:{n}: unit {key!r} already stored with other values")
                    out[key] = row
        return out

    def append(self, rows: Sequence[dict]) -> Path | None:
        """Write ``rows`` as the next shard, atomically.  Returns the shard path (None if no rows)."""
        if not rows:
            return None
        for row in rows:
            if self.key_field not in row:
                raise ValueError(f"row without {self.key_field!r}: {row}")
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = self.shards()
        nxt = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        final = self.folder / f"shard-{nxt:05d}.jsonl"
        tmp = self.folder / f".partial-{final.name}.{os.getpid()}"
        with tmp.open("w") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def merged(self, keys: Sequence[str]) -> list[dict]:
        """Rows of ``keys`` in that order; raises when some are not done yet."""
        rows = self.rows()
        missing = [k for k in keys if k not in rows]
        if missing:
            raise ValueError(f"{self.folder}: {len(missing)} of {len(keys)} units not done yet "
                             f"(first: {missing[0]!r}); rerun the generation to finish them")
        return [rows[k] for k in keys]


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_units(fn: Callable[[str], dict], keys: Sequence[str], store: ShardStore, chunk: int = 50,
              n_jobs: int = 1, progress: bool = True, desc: str = "units",
              on_shard: Callable[[Path], None] | None = None) -> dict:
    """Run ``fn(key) -> row`` for every key not yet in ``store``; one shard per chunk.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one) for
    process backends.  Returns ``{"done_before", "done_now", "wall_s"}``.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if len(set(keys)) != len(keys):
        raise ValueError("keys must be unique")
    store.clean_partials()
    done = store.rows()
    todo = [k for k in keys if k not in done]
    t0 = time.perf_counter()
    bar = tqdm(total=len(keys), initial=len(keys) - len(todo), desc=desc, disable=not progress)
    with Parallel(n_jobs=n_jobs) as par:
        for part in _chunks(todo, chunk):
            rows = par(delayed(fn)(k) for k in part)
            for k, row in zip(part, rows):
                if row.get(store.key_field) != k:
                    raise ValueError(f"unit {k!r} returned a row for {row.get(store.key_field)!r}")
            path = store.append(rows)
            if on_shard is not None and path is not None:
                on_shard(path)
            bar.update(len(part))
    bar.close()
    return {"done_before": len(keys) - len(todo), "done_now": len(todo), "wall_s": time.perf_counter() - t0}
