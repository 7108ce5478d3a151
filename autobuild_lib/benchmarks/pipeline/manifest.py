"""sha256 manifests of generated data: written after every change, verified on load."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from autobuild_lib.benchmarks.pipeline.atomic import PARTIAL_PREFIX, atomic_write

__all__ = ["MANIFEST_NAME", "sha256_file", "write_manifest", "verify_file"]

MANIFEST_NAME = "MANIFEST.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Never listed: leftovers of writes in progress and the folder locks of :mod:`autobuild_lib.benchmarks.pipeline.workunits`.
TEMPORARY_PREFIXES = (PARTIAL_PREFIX, ".lock")
TEMPORARY_SUFFIXES = (".tmp", ".partial")


def _temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_PREFIXES) or name.endswith(TEMPORARY_SUFFIXES)


def write_manifest(folder: str | Path, exclude: tuple[str, ...] = (PARTIAL_PREFIX,)) -> Path:
    """(Re)write ``folder/MANIFEST.json``: ``{relative path: sha256}`` of every file below ``folder``
    except temporaries and files whose name, or the name of a folder above them, starts with one of
    ``exclude``; under the folder's lock."""
    from autobuild_lib.benchmarks.pipeline.workunits import folder_lock, fsync_dir

    folder = Path(folder)
    with folder_lock(folder):
        files = {}
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder)
            if (p.is_file() and p.name != MANIFEST_NAME and not _temporary(p.name)
                    and not any(part.startswith(e) for part in rel.parts for e in exclude)):
                files[rel.as_posix()] = sha256_file(p)
        out = folder / MANIFEST_NAME
        with atomic_write(out) as tmp:
            tmp.write_text(json.dumps({"sha256": files}, indent=1, sort_keys=True) + "\n")
        fsync_dir(folder)
    return out


def verify_file(path: str | Path, folder: str | Path, regenerate: str) -> None:
    """Check ``path`` against ``folder/MANIFEST.json``; errors say which file and how to restore it."""
    path, folder = Path(path), Path(folder)
    man = folder / MANIFEST_NAME
    rel = path.resolve().relative_to(folder.resolve()).as_posix()
    how = f"restore it with `git checkout -- {path}` or regenerate it with `{regenerate}`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {how}")
    try:
        entries = json.loads(man.read_text())["sha256"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{man} is missing, so {path} cannot be verified; {how}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{man} is not a valid manifest ({exc}); restore it with `git checkout -- {man}`") from None
    if rel not in entries:
        raise ValueError(f"{path} is not listed in {man}; {how}")
    got = sha256_file(path)
    if got != entries[rel]:
        raise ValueError(f"{path} does not match {man} (sha256 {got[:12]}..., expected {entries[rel][:12]}...): "
                         f"the file was changed or is corrupt; {how}")
