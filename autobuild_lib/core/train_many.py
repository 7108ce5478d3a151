"""Training many independent predictors at once, one per CPU core (joblib).

Chapter 02 trains 36 predictors, chapters 04-06 a dozen more, the ensembles
up to 120 members.  Each predictor trains on one torch thread
(:func:`~autobuild_lib.core.training.single_thread`) in its own worker process,
so the results are bit-identical to training them one after another.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed

from autobuild_lib.core.chain_network import train_fused
from autobuild_lib.core.graphs import GraphTable
from autobuild_lib.core.training import TrainConfig, TrainResult, train_predictor


@dataclass
class TrainTask:
    """The arguments of one :func:`~autobuild_lib.core.training.train_predictor` call."""

    table: GraphTable
    y: np.ndarray
    config: TrainConfig
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    fused: bool = False
    """Train with :func:`~autobuild_lib.core.chain_network.train_fused` (chain tables; same split,
    seeds and batches, about 3x faster) instead of ``train_predictor``'s default path."""


class Trained(NamedTuple):
    """A task's result, and the wall and CPU seconds its training took (not deterministic).

    On a shared machine the wall seconds include waiting for a core; the CPU
    seconds (of the training thread) are what an idle core would take.
    """

    result: TrainResult
    seconds: float
    cpu_seconds: float


def _run(task: TrainTask) -> Trained:
    wall, cpu = time.perf_counter(), time.thread_time()
    train = train_fused if task.fused else train_predictor
    res = train(task.table, task.y, task.config, train_idx=task.train_idx, test_idx=task.test_idx, progress=False)
    return Trained(res, time.perf_counter() - wall, time.thread_time() - cpu)


def train_many(tasks: list[TrainTask], n_jobs: int = -1, min_work: int = 200_000) -> list[Trained]:
    """Train every task, ``n_jobs`` at a time (-1: all cores); results in task order.

    Below ``min_work`` graph-epochs in all (about 10 s of training on this
    study's 2-core machine) the tasks train here one after another: starting
    the worker processes would cost more than it saves.
    """
    if not tasks:
        raise ValueError("train_many needs at least one task")
    work = sum(len(t.table) * t.config.epochs for t in tasks)
    if n_jobs == 1 or len(tasks) == 1 or work < min_work:
        return [_run(t) for t in tasks]
    return Parallel(n_jobs=n_jobs)(delayed(_run)(t) for t in tasks)
