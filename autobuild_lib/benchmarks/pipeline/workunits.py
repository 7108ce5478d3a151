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

Several generators may share one output folder: :func:`folder_lock` (the ``filelock`` package,
lock file ``.lock`` in the folder) is held only while a shard number is chosen and the shard
written, and while ``runs.jsonl``, the data card and ``MANIFEST.json`` are rewritten.  A unit
stored by one generator is skipped by the other (the first stored row wins), and leftovers of
killed writes are deleted only when nobody holds the lock.  A generator that has to wait says
which process holds the lock.

The map runs through :class:`joblib.Parallel` on this machine, or on the workers of a Dask
cluster inside :func:`dask_scheduler` (``generate --scheduler local|ADDRESS``); either way only
this process (the client) writes shards.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from autobuild_lib.benchmarks.pipeline.atomic import PARTIAL_PREFIX, atomic_write

__all__ = ["LOCK_NAME", "FolderBusy", "ShardStore", "dask_scheduler", "folder_lock", "run_units"]

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"
LOCK_WAIT_S = 600.0
QUIET_WAIT_S = 2.0
_LOCKS: dict[str, FileLock] = {}
_CLIENT: list[Any] = []  # the Dask client of the innermost dask_scheduler() block


class FolderBusy(RuntimeError):
    """Another process held an output folder's lock for longer than we were willing to wait."""


def _lock(folder: Path) -> FileLock:
    key = str(folder.resolve())
    if key not in _LOCKS:
        _LOCKS[key] = FileLock(folder / LOCK_NAME, thread_local=False)
    return _LOCKS[key]


def _owner(folder: Path) -> str:
    try:
        return (folder / OWNER_NAME).read_text().strip() or "another process"
    except OSError:
        return "another process"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the lock of output folder ``folder`` (re-entrant within this process).

    When another process holds it for more than :data:`QUIET_WAIT_S`, print which one and wait
    up to ``wait_s`` seconds in all, then raise :class:`FolderBusy` naming it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder)
    try:
        lock.acquire(timeout=min(QUIET_WAIT_S, wait_s))
    except Timeout:
        owner = _owner(folder)
        print(f"{folder}: waiting for {owner}, which holds {folder / LOCK_NAME}", file=sys.stderr)
        try:
            lock.acquire(timeout=max(0.0, wait_s - QUIET_WAIT_S))
        except Timeout:
            raise FolderBusy(f"{folder} is still locked by {owner} after {wait_s:g} s; wait until that "
                             f"generator finishes or stop it, then rerun") from None
    try:
        if lock.lock_counter == 1:
            started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            (folder / OWNER_NAME).write_text(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
        yield
    finally:
        lock.release()


class ShardStore:
    """A folder of ``shard-*.jsonl`` files, each line one finished unit ``{key_field: key, ...}``."""

    def __init__(self, folder: str | Path, key_field: str = "arch") -> None:
        self.folder = Path(folder)
        self.key_field = key_field

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.jsonl"))

    def clean_partials(self) -> list[Path]:
        """Delete leftovers of a killed write (``.partial-*``) unless another process holds the
        folder's lock (its partial may be live); returns what was removed."""
        if not self.folder.is_dir():
            return []
        lock = _lock(self.folder)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return []
        try:
            gone = sorted(self.folder.glob(f"{PARTIAL_PREFIX}*"))
            for p in gone:
                p.unlink()
            return gone
        finally:
            lock.release()

    def rows(self) -> dict[str, dict]:
        """Every finished unit by key.  A key stored twice keeps its first stored row (shard order):
        a second generator's late value never makes the store unreadable."""
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
                    out.setdefault(key, row)
        return out

    def append(self, rows: Sequence[dict]) -> Path | None:
        """Write the rows whose keys are not stored yet as the next shard, atomically, under the
        folder's lock.  Returns the shard path (None if nothing was new)."""
        for row in rows:
            if self.key_field not in row:
                raise ValueError(f"row without {self.key_field!r}: {row}")
        if not rows:
            return None
        with folder_lock(self.folder):
            stored = self.rows()
            rows = [r for r in rows if r[self.key_field] not in stored]
            if not rows:
                return None
            existing = self.shards()
            nxt = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
            final = self.folder / f"shard-{nxt:05d}.jsonl"
            with atomic_write(final) as tmp, tmp.open("w") as f:
                for row in rows:
                    f.write(json.dumps(row, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.folder)
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


@contextlib.contextmanager
def dask_scheduler(address: str, n_workers: int = 2) -> Iterator[Any]:
    """Run the work units of :func:`run_units` inside this block on a Dask cluster: ``"local"``
    starts a ``LocalCluster`` of ``n_workers`` single-threaded worker processes, anything else is
    the address of a running scheduler (``tcp://host:8786``).  Yields the ``Client``."""
    from dask.distributed import Client, LocalCluster

    if address == "local":
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            with Client(cluster) as client:
                _CLIENT.append(client)
                try:
                    yield client
                finally:
                    _CLIENT.pop()
        finally:
            cluster.close()
        return
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise ConnectionError(f"no Dask scheduler answers at {address!r} ({exc}); start one with "
                              "`dask scheduler` (and workers with `dask worker ADDRESS`) or use --scheduler local") from None
    with client:
        _CLIENT.append(client)
        try:
            yield client
        finally:
            _CLIENT.pop()


def _map(fn: Callable[[str], dict], part: Sequence[str], par: Any) -> list[dict]:
    if _CLIENT:
        client = _CLIENT[-1]
        return client.gather(client.map(fn, list(part), pure=False))
    from joblib import delayed

    return par(delayed(fn)(k) for k in part)


def run_units(fn: Callable[[str], dict], keys: Sequence[str], store: ShardStore, chunk: int = 50,
              n_jobs: int = 1, progress: bool = True, desc: str = "units",
              on_shard: Callable[[Path], None] | None = None) -> dict:
    """Run ``fn(key) -> row`` for every key not yet in ``store``; one shard per chunk.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one) for
    process backends and Dask.  Inside :func:`dask_scheduler` the units run on the cluster's
    workers, else through ``joblib.Parallel(n_jobs)``; only this process writes shards.
    Returns ``{"done_before", "done_now", "wall_s"}``.
    """
    from joblib import Parallel
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
            rows = _map(fn, part, par)
            for k, row in zip(part, rows):
                if row.get(store.key_field) != k:
                    raise ValueError(f"unit {k!r} returned a row for {row.get(store.key_field)!r}")
            path = store.append(rows)
            if on_shard is not None and path is not None:
                on_shard(path)
            bar.update(len(part))
    bar.close()
    return {"done_before": len(keys) - len(todo), "done_now": len(todo), "wall_s": time.perf_counter() - t0}
