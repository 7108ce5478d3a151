"""Parallel training gives bit-identical predictors to training one after another."""
import numpy as np
import pytest
import torch

from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.core.train_many import TrainTask, train_many
from autobuild_lib.core.training import TrainConfig, train_predictor


def test_parallel_equals_sequential():
    sp = mbv3()
    rng = np.random.default_rng(0)
    archs = [sp.sample(rng) for _ in range(150)]
    table = GraphTable([ofa_graph(sp, a) for a in archs], OFA_SCHEMA)
    y = rng.normal(size=len(archs))
    tasks = [TrainTask(table, y, TrainConfig(epochs=2, seed=s, hop_srcc=h)) for s in (0, 1) for h in (True, False)]
    got = train_many(tasks, n_jobs=2, min_work=0)
    assert len(got) == 4 and all(t.seconds > 0 and t.cpu_seconds > 0 for t in got)
    for task, (res, _, _) in zip(tasks, got):
        ref = train_predictor(table, y, task.config, progress=False)
        assert res.history == ref.history and res.metrics == ref.metrics
        for name, value in ref.model.state_dict().items():
            assert torch.equal(res.model.state_dict()[name], value), name
    assert got[0].result.history != got[2].result.history  # seeds differ


def test_no_tasks():
    with pytest.raises(ValueError, match="at least one task"):
        train_many([])


def test_small_work_stays_in_process(monkeypatch):
    import autobuild_lib.core.train_many as tm

    def no_workers(*a, **k):
        raise AssertionError("workers started for a tiny job")

    monkeypatch.setattr(tm, "Parallel", no_workers)
    sp = mbv3()
    rng = np.random.default_rng(0)
    table = GraphTable([ofa_graph(sp, sp.sample(rng)) for _ in range(30)], OFA_SCHEMA)
    got = train_many([TrainTask(table, rng.normal(size=30), TrainConfig(epochs=1, seed=s)) for s in (0, 1)])
    assert len(got) == 2
