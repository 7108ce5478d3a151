"""Atomic file writes: nothing half-written is ever seen under a file's final name."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PARTIAL_PREFIX", "atomic_write"]

#: the name prefix of a file being written (the manifest and the work units skip and clean these)
PARTIAL_PREFIX = ".partial-"


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (``.partial-<name>.<pid><suffix>``; ``suffix`` for writers
    that add one, such as ``np.savez``) to write; when the block ends it is renamed onto ``path``, and
    when the block raises it is deleted."""
    path = Path(path)
    tmp = path.with_name(f"{PARTIAL_PREFIX}{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
