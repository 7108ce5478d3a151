"""Repeatable CPU latency: shuffled, resumable rounds over all architectures of a space.

A single pass over 3,000 subnets confounds each subnet's latency with the machine's state at the
moment it was timed (on the study's VMs timing drifts 10-20 % within seconds).  Here every *round*
visits all architectures in a fresh random order (seeded by the round number), and one work unit
is one (round, architecture): build the ImageNet-scale subnet, run ``warmup`` untimed batch-1
passes, then time ``passes`` passes.  Units are stored as shards in
``work/<space>/latency_rounds/`` (keyed ``"<round>/<arch>"``, :mod:`autobuild_lib.benchmarks.pipeline.workunits`), so a
killed run resumes where it stopped.  Every row records the raw pass times, the CPU model, a digest
of the CPU flags and the 1-minute load average when it was timed.

:func:`summarise_rounds` turns the rows into the labels: per architecture the median over rounds
of the per-unit median over passes (``latency_cpu``), and the same over the even- and odd-numbered
rounds (``latency_cpu_a`` / ``latency_cpu_b``), whose SRCC is the measurement's split-half
reliability.  It refuses rounds that came from two CPU models.  :func:`choose_protocol` picks the
number of rounds and passes from a pilot on 200 architectures so that a full space fits a budget.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from functools import lru_cache
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from autobuild_lib.benchmarks.pipeline.workunits import ShardStore, run_units

__all__ = ["cpu_signature", "round_order", "unit_key", "round_unit", "run_rounds", "rounds_store",
           "summarise_rounds", "choose_protocol", "load_protocol", "ROUND_COLUMNS"]

#: The label columns the rounds produce.
ROUND_COLUMNS = ("latency_cpu", "latency_cpu_a", "latency_cpu_b")


@lru_cache(maxsize=1)
def cpu_signature() -> dict:
    """``{"cpu_model", "cpu_flags"}``: the CPU model name and a short digest of its feature flags."""
    model, flags = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return {"cpu_model": model, "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:12]}


def round_order(archs: Sequence[str], rnd: int, seed: int = 0) -> list[str]:
    """The visiting order of round ``rnd``: a permutation of ``archs`` seeded by ``(seed, rnd)``."""
    perm = np.random.default_rng([seed, rnd]).permutation(len(archs))
    return [archs[i] for i in perm]


def unit_key(rnd: int, arch: str) -> str:
    return f"{rnd}/{arch}"


def round_unit(space_name: str, warmup: int, passes: int, key: str) -> dict:
    """Time one (round, architecture) unit: the subnet is built here and dropped afterwards."""
    from autobuild_lib.benchmarks.miniofa.supernet import space_of
    from autobuild_lib.core.ir import ofa_subnet

    rnd, arch = key.split("/", 1)
    torch.set_num_threads(1)
    space = space_of(space_name)
    a = space.from_string(arch)
    t0 = time.perf_counter()
    net = ofa_subnet(space, a).eval()
    build_s = time.perf_counter() - t0
    x = torch.zeros(1, 3, a.resolution, a.resolution)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            net(x)
        for _ in range(passes):
            t = time.perf_counter()
            net(x)
            times.append(1000.0 * (time.perf_counter() - t))
    return {"unit": key, "arch": arch, "round": int(rnd), "warmup": warmup, "times_ms": times,
            "build_s": build_s, "load1": os.getloadavg()[0], **cpu_signature()}


def load_protocol(space: str, root: str | Path) -> dict | None:
    """The rounds and passes the pilot chose for ``space`` (``latency-protocol-<space>.json``), or None."""
    path = Path(root) / f"latency-protocol-{space}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rounds_store(root: str | Path, space: str, folder: str = "latency_rounds") -> ShardStore:
    return ShardStore(Path(root) / "work" / space / folder, key_field="unit")


def run_rounds(space: str, archs: Sequence[str], store: ShardStore, rounds: int, passes: int,
               warmup: int = 3, seed: int = 0, chunk: int = 100, progress: bool = True) -> dict:
    """Measure ``rounds`` shuffled rounds of ``archs`` into ``store``, one process, resumable.

    Round ``r`` runs only after round ``r - 1`` is complete, so an interrupted run leaves whole
    rounds plus the head of one.  Returns ``{"rounds", "units_now", "wall_s"}``.
    """
    import functools

    if rounds < 2 or passes < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 2 (two halves), passes >= 1, warmup >= 0; got {rounds}, {passes}, {warmup}")
    fn = functools.partial(round_unit, space, warmup, passes)
    t0, now = time.perf_counter(), 0
    for r in range(rounds):
        keys = [unit_key(r, a) for a in round_order(list(archs), r, seed)]
        now += run_units(fn, keys, store, chunk=chunk, n_jobs=1, progress=progress,
                         desc=f"{space} latency round {r + 1}/{rounds}")["done_now"]
    return {"rounds": rounds, "units_now": now, "wall_s": time.perf_counter() - t0}


def _unit_frame(rows: Sequence[dict], passes: int | None = None) -> pd.DataFrame:
    """One row per unit: ``arch``, ``round``, ``ms`` (median of the first ``passes`` pass times)."""
    return pd.DataFrame({"arch": [r["arch"] for r in rows], "round": [r["round"] for r in rows],
                         "ms": [float(np.median(r["times_ms"][:passes])) for r in rows]})


def _halves(units: pd.DataFrame) -> pd.DataFrame:
    wide = units.pivot(index="arch", columns="round", values="ms")
    even = [c for c in wide.columns if c % 2 == 0]
    odd = [c for c in wide.columns if c % 2 == 1]
    return pd.DataFrame({"latency_cpu": wide.median(axis=1), "latency_cpu_a": wide[even].median(axis=1),
                         "latency_cpu_b": wide[odd].median(axis=1)})


def summarise_rounds(rows: Sequence[dict], archs: Sequence[str], rounds: int) -> tuple[pd.DataFrame, dict]:
    """Labels of ``archs`` from complete rounds ``0 .. rounds-1``, and the measurement's figures.

    Raises when a unit is missing, when pass counts differ, or when the rounds span CPU models or
    flag sets (such a space must be re-measured on one machine model).
    """
    rows = [r for r in rows if r["round"] < rounds]
    sigs = sorted({(r["cpu_model"], r["cpu_flags"]) for r in rows})
    if len(sigs) > 1:
        raise ValueError(f"latency rounds come from {len(sigs)} CPU models/flag sets {sigs}; "
                         "re-measure the space on one machine model (delete its latency_rounds shards)")
    have = {(r["round"], r["arch"]) for r in rows}
    missing = [(k, a) for k, a in product(range(rounds), archs) if (k, a) not in have]
    if missing:
        raise ValueError(f"{len(missing)} of {rounds * len(archs)} latency units not measured yet "
                         f"(first: round {missing[0][0]}, {missing[0][1]!r}); rerun the latency_rounds stage")
    if len({len(r["times_ms"]) for r in rows}) != 1:
        raise ValueError("latency rounds were measured with different pass counts; re-measure with one protocol")
    labels = _halves(_unit_frame(rows)).loc[list(archs)]
    wide = _unit_frame(rows).pivot(index="arch", columns="round", values="ms")
    pair = [spearmanr(wide[a], wide[b])[0] for a in wide.columns for b in wide.columns if a < b]
    info = {"rounds": rounds, "passes": len(rows[0]["times_ms"]), "n_archs": len(archs),
            "srcc_halves": float(spearmanr(labels["latency_cpu_a"], labels["latency_cpu_b"])[0]),
            "round_srcc_mean": float(np.mean(pair)), "round_srcc_min": float(np.min(pair)),
            "cpu_model": sigs[0][0], "cpu_flags": sigs[0][1],
            "units_loaded": float(np.mean([r["load1"] > 1.5 for r in rows]))}
    return labels.reset_index().rename(columns={"index": "arch"}), info


def choose_protocol(rows: Sequence[dict], n_archs: int, budget_s: float,
                    rounds_grid: Sequence[int] = (2, 4, 6, 8), passes_grid: Sequence[int] = (5, 7, 11, 15, 21)
                    ) -> dict:
    """Rounds and passes for a full space of ``n_archs`` from pilot ``rows`` (more rounds/passes
    than any candidate): the candidate with the highest split-half SRCC on the pilot whose
    predicted wall time (measured build and pass costs) fits ``budget_s``; ties go to the cheaper.
    Returns the choice and the whole grid."""
    units = pd.DataFrame(rows)
    max_r, max_p = int(units["round"].max()) + 1, min(len(t) for t in units["times_ms"])
    build_s = float(units["build_s"].median())
    pass_s = float(np.median(np.concatenate(units["times_ms"].to_numpy()))) / 1000.0
    warmup = int(units["warmup"].iloc[0])
    grid = []
    for r, p in product(rounds_grid, passes_grid):
        if r > max_r or p > max_p:
            continue
        sub = [x for x in rows if x["round"] < r]
        h = _halves(_unit_frame(sub, p))
        cost = n_archs * r * (build_s + (warmup + p) * pass_s)
        grid.append({"rounds": r, "passes": p, "srcc_halves": float(spearmanr(h["latency_cpu_a"], h["latency_cpu_b"])[0]),
                     "predicted_s": cost})
    fits = [g for g in grid if g["predicted_s"] <= budget_s]
    if not fits:
        raise ValueError(f"no protocol fits {budget_s:.0f} s for {n_archs} architectures "
                         f"(cheapest needs {min(g['predicted_s'] for g in grid):.0f} s); raise the budget")
    best = max(fits, key=lambda g: (round(g["srcc_halves"], 3), -g["predicted_s"]))
    return {**best, "warmup": warmup, "build_s": build_s, "pass_s": pass_s, "budget_s": budget_s, "grid": grid}
