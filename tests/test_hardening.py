"""Issue 17: the probes of a skeptical user, each rerun as a test, plus concurrent generation.

CLI probes run in a subprocess and must exit within ``BOUND_S`` seconds of the CLI's own
start-up time (measured here with ``--help``), with a one-line message and no traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autobuild_lib.manifest import MANIFEST_NAME, sha256_file, write_manifest
from autobuild_lib.workunits import FolderBusy, ShardStore, folder_lock

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 5.0


# ------------------------------------------------------------------ concurrent generators
WORKER = textwrap.dedent("""
    import os, random, sys, time
    from pathlib import Path
    from autobuild_lib.manifest import write_manifest
    from autobuild_lib.miniofa.generate import _log_run
    from autobuild_lib.workunits import ShardStore, run_units

    root = Path(sys.argv[1])
    rng = random.Random(os.getpid())

    def measure(key):  # like a measured latency: the value differs between runs
        time.sleep(rng.random() * 0.004)
        return {"arch": key, "y": rng.random(), "pid": os.getpid()}

    keys = [str(i) for i in range(int(sys.argv[2]))]
    rep = run_units(measure, keys, ShardStore(root / "work"), chunk=3, progress=False,
                    on_shard=lambda _p: write_manifest(root))
    _log_run(root, {"pid": os.getpid(), **rep})
""")


def _lock_holder(folder: Path, seconds: float) -> subprocess.Popen:
    """A process that holds ``folder``'s lock for ``seconds``; returns once it holds it."""
    code = (f"import time; from autobuild_lib.workunits import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('held', flush=True); time.sleep({seconds})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_generators_on_one_folder(tmp_path):
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(n)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    store = ShardStore(tmp_path / "work")
    lines = [json.loads(line) for s in store.shards() for line in s.read_text().splitlines()]
    keys = [r["arch"] for r in lines]
    assert sorted(keys, key=int) == [str(i) for i in range(n)]  # nothing lost, nothing stored twice
    assert [s.name for s in store.shards()] == [f"shard-{i:05d}.jsonl" for i in range(len(store.shards()))]
    assert len(store.merged([str(i) for i in range(n)])) == n  # readable
    assert not list(tmp_path.rglob(".partial-*"))
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and sum(r["done_now"] for r in runs) >= n
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())["sha256"]
    shards = {f"work/{s.name}" for s in store.shards()}
    assert shards <= set(manifest) <= shards | {"runs.jsonl"}  # no lock file, no temporary
    for rel in shards:  # the last manifest was written after the last shard
        assert sha256_file(tmp_path / rel) == manifest[rel]


def test_second_generator_waits_then_refuses_naming_the_holder(tmp_path, capsys):
    holder = _lock_holder(tmp_path, 30)
    try:
        t0 = time.perf_counter()
        with pytest.raises(FolderBusy, match=rf"locked by process {holder.pid} .*wait until that generator"):
            with folder_lock(tmp_path, wait_s=0.5):
                pass
        assert time.perf_counter() - t0 < BOUND_S
        assert f"waiting for process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path, wait_s=5):  # free again once the holder is gone
        pass


def test_live_partial_is_not_cleaned_and_first_row_wins(tmp_path):
    store = ShardStore(tmp_path)
    live = tmp_path / ".partial-shard-00000.jsonl.4242"
    live.write_text('{"arch": "a"')
    holder = _lock_holder(tmp_path, 30)
    try:
        assert store.clean_partials() == [] and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert store.clean_partials() == [live] and not live.exists()
    store.append([{"arch": "a", "y": 1}])
    assert store.append([{"arch": "a", "y": 2}, {"arch": "b", "y": 3}]).name == "shard-00001.jsonl"
    assert store.rows() == {"a": {"arch": "a", "y": 1}, "b": {"arch": "b", "y": 3}}


def test_manifest_skips_temporaries(tmp_path):
    for name in ("t.csv", "x.tmp", "y.partial", ".partial-t.csv.1"):
        (tmp_path / name).write_text("1\n")
    with folder_lock(tmp_path):
        write_manifest(tmp_path)  # re-entrant: the generator already holds the lock
    assert set(json.loads((tmp_path / MANIFEST_NAME).read_text())["sha256"]) == {"t.csv"}
