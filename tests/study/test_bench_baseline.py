"""The bench's frozen baseline is the PyG training loop of ``train_predictor`` (issue 19)."""
import numpy as np
import torch

from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable, ofa_graph
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.core.training import TrainConfig, train_predictor
from autobuild_lib.study.bench import cpu_model
from autobuild_lib.study.bench_baseline import train_baseline


def test_baseline_is_the_pyg_loop_bit_for_bit():
    sp = mbv3()
    rng = np.random.default_rng(0)
    table = GraphTable([ofa_graph(sp, sp.sample(rng)) for _ in range(150)], OFA_SCHEMA)
    y = rng.normal(size=150)
    config = TrainConfig(epochs=2, test_fraction=0.0, seed=3)
    model, history = train_baseline(table, y, config)
    ref = train_predictor(table, y, config, progress=False, fast=False)
    assert history == ref.history
    for name, value in ref.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_cpu_model_named():
    assert isinstance(cpu_model(), str) and cpu_model()
