"""The authors' L1 predictors: loader checks, forward pass against a PyG reference, units."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_geometric as tg
from fixtures_l1 import HIDDEN, N_LAYERS, l1_config, l1_state_dict, write_l1_models
from fixtures_released import SPACES, sample_archs

from autobuild_lib.benchmarks.released import ReleasedDataError
from autobuild_lib.benchmarks.released_l1 import L1_SOURCE, L1_TARGETS, L1Evaluator, l1_files, load_l1_predictor


# ------------------------------------------------------------ reference model
class ReferencePredictor(torch.nn.Module):
    """A straightforward PyG model with the authors' module names (written for this test)."""

    def __init__(self) -> None:
        super().__init__()
        emb = torch.nn.Module()
        for name, (n, d) in {"stage": (6, 3), "block": (4, 2), "mbconv": (2, 2), "exp": (3, 2), "kernel": (3, 3)}.items():
            setattr(emb, f"{name}_embed", torch.nn.Embedding(n, d))
            setattr(emb, f"{name}_mlp", torch.nn.Linear(d, 1))
        emb.res_mlp = torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.Linear(3, 1))
        self.embed_layer = emb
        enc = torch.nn.Module()
        enc.gnn_layers = torch.nn.ModuleList(tg.nn.GraphConv(6 if i == 0 else HIDDEN, HIDDEN) for i in range(N_LAYERS))
        enc.bns = torch.nn.ModuleList(tg.nn.norm.BatchNorm(HIDDEN) for _ in range(N_LAYERS))
        self.encoder = enc
        self.post_proj = torch.nn.Sequential(torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.Linear(HIDDEN, HIDDEN),
                                             torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN),
                                             torch.nn.Linear(HIDDEN, HIDDEN))
        self.regressor = torch.nn.Linear(HIDDEN, 1)
        self.mlp_moments = torch.nn.Parameter(torch.tensor([0.0, 1.0]), requires_grad=False)

    def forward(self, batch: tg.data.Batch) -> torch.Tensor:
        x, e = batch.x, self.embed_layer
        parts = [getattr(e, f"{n}_mlp")(getattr(e, f"{n}_embed")(x[:, i].long()))
                 for i, n in enumerate(("stage", "block", "mbconv", "exp", "kernel"))]
        h = torch.cat(parts + [e.res_mlp(x[:, -1:])], dim=-1).abs()
        for conv, bn in zip(self.encoder.gnn_layers, self.encoder.bns):
            h = torch.relu(bn(conv(h, batch.edge_index)))
        g = tg.nn.global_add_pool(h, batch.batch)
        out = self.regressor(torch.relu(self.post_proj(g))).squeeze(1)
        return out * self.mlp_moments[1] + self.mlp_moments[0]


def reference_graph(config: tuple[int, list[list[str]]]) -> tg.data.Data:
    """The authors' custom format, built from the block strings of ``original config``."""
    res, stages = config
    exp_idx, k_idx = {3: 0, 4: 1, 6: 2}, {3: 0, 5: 1, 7: 2}
    rows = []
    for i, blocks in enumerate(stages):
        for j, b in enumerate(blocks):
            kind, e, k = b.split("_")
            rows.append([i, j, int(kind[-1]) - 2, exp_idx[int(e[1:])], k_idx[int(k[1:])], (res - 192) / 32])
    n = len(rows)
    edges = torch.tensor([list(range(n - 1)), list(range(1, n))], dtype=torch.long)
    return tg.data.Data(x=torch.tensor(rows, dtype=torch.float32), edge_index=edges)


@pytest.fixture(scope="module")
def l1_dir(tmp_path_factory) -> Path:
    return write_l1_models(tmp_path_factory.mktemp("l1") / "l1_models")


# ------------------------------------------------------------------- layout
def test_fixture_has_the_authors_layout() -> None:
    sd = l1_state_dict(0)
    assert len(sd) == 67
    assert sd["hop_moments"].shape == (2, 5) and sd["mlp_moments"].shape == (2,)
    assert sd["encoder.init_ff.weight"].shape == (6, 12)
    assert sd["encoder.gnn_layers.3.lin_rel.weight"].shape == (128, 128)
    assert "encoder.bns.2.module.running_var" in sd and "regressor.bias" in sd
    ref = ReferencePredictor()
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not missing
    assert set(unexpected) == {"hop_moments", "test_metrics", "embed_layer.moment_tsr",
                               "encoder.init_ff.weight", "encoder.init_ff.bias"}


# ------------------------------------------------------------- forward pass
@pytest.mark.parametrize("family", ["mbv3", "pn"])
@pytest.mark.parametrize("target", ["acc", "latency_cpu"])
def test_forward_matches_pyg_reference(l1_dir: Path, family: str, target: str) -> None:
    space = SPACES[family]()
    archs = sample_archs(space, 24, seed=5)
    pt, _ = l1_files(l1_dir, family, target)
    ref = ReferencePredictor()
    ref.load_state_dict(torch.load(pt, weights_only=True), strict=False)
    ref.eval()
    with torch.no_grad():
        expected = ref(tg.data.Batch.from_data_list([reference_graph(space.to_released(a)) for a in archs])).numpy()
    got = L1Evaluator(l1_dir).evaluate_many(family, archs)
    scale = 100.0 if target == "acc" else 1.0
    np.testing.assert_allclose(got[target].to_numpy() / scale, expected, rtol=1e-5, atol=1e-5)
    assert np.std(expected) > 1e-3   # the architectures are told apart
    one = L1Evaluator(l1_dir).evaluate(family, space.to_string(archs[3]))
    assert one[target] == pytest.approx(got[target].iloc[3], rel=1e-6)


def test_evaluator_columns_and_source(l1_dir: Path) -> None:
    space = SPACES["mbv3"]()
    archs = sample_archs(space, 5, seed=1)
    df = L1Evaluator(l1_dir).evaluate_many("mbv3", [space.to_string(a) for a in archs])
    assert list(df.columns) == ["arch", *L1_TARGETS, "source"]
    assert (df["source"] == L1_SOURCE).all()
    assert df["arch"].tolist() == [space.to_string(a) for a in archs]
    assert df[list(L1_TARGETS)].notna().all().all()


def test_missing_target_gives_nan(tmp_path: Path) -> None:
    d = write_l1_models(tmp_path / "l1_models", families=("pn",), targets=("acc",))
    ev = L1Evaluator(d)
    assert ev.targets("pn") == ["acc"] and not ev.has("pn") and ev.has("pn", ["acc"])
    row = ev.evaluate("pn", SPACES["pn"]().sample(np.random.default_rng(0)))
    assert np.isfinite(row["acc"]) and np.isnan(row["latency_gpu"])
    with pytest.raises(FileNotFoundError, match="no L1 predictor for 'mbv3'"):
        ev.evaluate("mbv3", SPACES["mbv3"]().sample(np.random.default_rng(0)))


# --------------------------------------------------------------------- units
def _known(tmp_path: Path, target: str) -> Path:
    """A checkpoint whose output is known: all weights zero, regressor bias 0.5, moments (0.7, 0.1)."""
    d = tmp_path / "l1_models"
    d.mkdir(exist_ok=True)
    sd = {k: torch.zeros_like(v) for k, v in l1_state_dict(0).items()}
    for li in range(N_LAYERS):
        sd[f"encoder.bns.{li}.module.running_var"] = torch.ones(HIDDEN)
    sd["regressor.bias"] = torch.tensor([0.5])
    sd["mlp_moments"] = torch.tensor([0.7, 0.1])
    pt, cfg = l1_files(d, "mbv3", target)
    torch.save(sd, pt)
    cfg.write_bytes(pickle.dumps(l1_config("mbv3", target)))
    return d


def test_accuracy_fraction_becomes_percent(tmp_path: Path) -> None:
    d = _known(tmp_path, "acc")
    _known(tmp_path, "latency_cpu")
    row = L1Evaluator(d).evaluate("mbv3", SPACES["mbv3"]().sample(np.random.default_rng(2)))
    assert row["acc"] == pytest.approx(75.0, abs=1e-4)          # 0.5 * 0.1 + 0.7 = 0.75 -> 75 %
    assert row["latency_cpu"] == pytest.approx(0.75, abs=1e-6)  # latency: as predicted (ms)


# -------------------------------------------------------------------- errors
@pytest.fixture()
def one(tmp_path: Path) -> tuple[Path, Path]:
    d = write_l1_models(tmp_path / "l1_models", families=("mbv3",), targets=("acc",))
    return l1_files(d, "mbv3", "acc")


def test_truncated_checkpoint(one: tuple[Path, Path]) -> None:
    pt, _ = one
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(ReleasedDataError, match="corrupt or truncated") as info:
        load_l1_predictor(pt)
    assert str(pt) in str(info.value)


def test_corrupt_checkpoint(one: tuple[Path, Path]) -> None:
    pt, _ = one
    pt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ReleasedDataError, match="corrupt or truncated") as info:
        load_l1_predictor(pt)
    assert str(pt) in str(info.value)


def test_checkpoint_with_missing_key(one: tuple[Path, Path]) -> None:
    pt, _ = one
    sd = torch.load(pt, weights_only=True)
    del sd["encoder.gnn_layers.2.lin_rel.weight"]
    torch.save(sd, pt)
    with pytest.raises(ReleasedDataError, match=r"missing key 'encoder\.gnn_layers\.2\.lin_rel\.weight'") as info:
        load_l1_predictor(pt)
    assert str(pt) in str(info.value)


def test_checkpoint_with_wrong_shape(one: tuple[Path, Path]) -> None:
    pt, _ = one
    sd = torch.load(pt, weights_only=True)
    sd["post_proj.3.weight"] = torch.zeros(64, 128)
    torch.save(sd, pt)
    with pytest.raises(ReleasedDataError, match=r"key 'post_proj\.3\.weight' has shape \(64, 128\); expected \(128, 128\)") as info:
        load_l1_predictor(pt)
    assert str(pt) in str(info.value)


def test_checkpoint_that_is_not_a_state_dict(one: tuple[Path, Path]) -> None:
    pt, _ = one
    torch.save([torch.zeros(2)], pt)
    with pytest.raises(ReleasedDataError, match="expected a state dict"):
        load_l1_predictor(pt)


def test_config_errors(one: tuple[Path, Path]) -> None:
    pt, cfg = one
    cfg.unlink()
    with pytest.raises(ReleasedDataError, match="config file missing") as info:
        load_l1_predictor(pt)
    assert str(cfg) in str(info.value)
    cfg.write_bytes(pickle.dumps({**l1_config("mbv3", "acc"), "gnn_type": "GATConv"}))
    with pytest.raises(ReleasedDataError, match="'gnn_type' is 'GATConv'"):
        load_l1_predictor(pt)
    cfg.write_bytes(pickle.dumps({"make": os.system}))   # a global outside the whitelist: refused, never called
    with pytest.raises(ReleasedDataError, match="refused to load"):
        load_l1_predictor(pt)
    cfg.write_bytes(pickle.dumps(l1_config("mbv3", "acc"))[:20])
    with pytest.raises(ReleasedDataError, match="corrupt or truncated config"):
        load_l1_predictor(pt)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="l1_models"):
        L1Evaluator(tmp_path / "l1_models")


# ----------------------------------------------------------------------- CLI
def test_cli_evaluate(l1_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import io

    import pandas as pd

    from autobuild_lib.cli import main

    space = SPACES["pn"]()
    keys = [space.to_string(a) for a in sample_archs(space, 6, seed=9)]
    archs = tmp_path / "archs.txt"
    archs.write_text("# constructed\n" + "\n".join(keys) + "\n\n")
    assert main(["evaluate", "--l1-dir", str(l1_dir), "--space", "pn", "--archs", str(archs)]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    expected = L1Evaluator(l1_dir).evaluate_many("pn", keys)
    assert out["arch"].tolist() == keys
    np.testing.assert_allclose(out[list(L1_TARGETS)].to_numpy(), expected[list(L1_TARGETS)].to_numpy(), rtol=1e-9)
    csv = tmp_path / "archs.csv"
    pd.DataFrame({"arch": keys}).to_csv(csv, index=False)
    assert main(["evaluate", "--l1-dir", str(l1_dir), "--space", "pn", "--archs", str(csv),
                 "--out", str(tmp_path / "pred.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "pred.csv")) == 6


def test_cli_evaluate_errors(one: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from autobuild_lib.cli import main

    pt, _ = one
    archs = tmp_path / "archs.txt"
    assert main(["evaluate", "--l1-dir", str(pt.parent), "--space", "mbv3", "--archs", str(archs)]) == 2
    assert "no such file" in capsys.readouterr().err
    archs.write_text("224|k3e3\n")
    assert main(["evaluate", "--l1-dir", str(pt.parent), "--space", "mbv3", "--archs", str(archs)]) == 2
    assert "stages" in capsys.readouterr().err
    archs.write_text(SPACES["mbv3"]().to_string(SPACES["mbv3"]().sample(np.random.default_rng(0))) + "\n")
    pt.write_bytes(pt.read_bytes()[:100])
    assert main(["evaluate", "--l1-dir", str(pt.parent), "--space", "mbv3", "--archs", str(archs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(pt) in err and "Traceback" not in err
