"""Running a benchmark's generation stages: each timed, logged to ``runs.jsonl``, followed by a
fresh data card and manifest (shared by Mini-OFA, Mini-SD and Mini-Panoptic)."""
from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from autobuild_lib.benchmarks.miniofa.labels import machine_info
from autobuild_lib.benchmarks.pipeline.atomic import atomic_write
from autobuild_lib.benchmarks.pipeline.manifest import write_manifest
from autobuild_lib.benchmarks.pipeline.workunits import folder_lock


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def log_run(root: Path, record: dict) -> None:
    """Append one record to ``runs.jsonl`` (rewritten atomically, under the folder's lock)."""
    path = root / "runs.jsonl"
    with folder_lock(root):
        old = path.read_text() if path.exists() else ""
        with atomic_write(path) as tmp:
            tmp.write_text(old + json.dumps(record, sort_keys=True) + "\n")


def read_runs(root: str | Path) -> list[dict]:
    """The records of ``root/runs.jsonl`` (none when it is absent); lines that are not JSON are skipped."""
    path = Path(root) / "runs.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def run_stages(root: Path, order: Sequence[str], stages: Sequence[str], runners: Mapping[str, Callable[[], dict]],
               n_jobs: int, write_card: Callable[[Path], object],
               manifest: Callable[[Path], object] = write_manifest) -> dict:
    """Run the requested ``stages`` in ``order`` (``runners[stage]()`` returns its report), each timed
    and logged to ``runs.jsonl`` unless it was skipped; after each, rewrite the data card and the
    manifest (``manifest(root)``).  Returns the reports by stage."""
    report = {}
    for stage in [s for s in order if s in stages]:
        t0, started = time.perf_counter(), now_utc()
        rep = runners[stage]()
        rep.update(stage=stage, started_utc=started, wall_s=round(time.perf_counter() - t0, 2),
                   n_jobs=n_jobs, machine=machine_info())
        with folder_lock(root):
            if not rep.get("skipped"):
                log_run(root, rep)
            write_card(root)
            manifest(root)
        report[stage] = rep
    return report
