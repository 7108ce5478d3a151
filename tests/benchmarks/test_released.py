"""Released caches: restricted unpickling, OFA/IR loaders, error messages."""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_released import (
    FIXTURE_FILES,
    SPACES,
    fixture_labels,
    write_fixture_caches,
    write_fixture_ir_cache,
)

from autobuild_lib.benchmarks.released import (
    AUTHORS_REPO,
    IR_CACHE,
    REQUIRED_FILES,
    ReleasedDataError,
    find_released,
    load_ir_cache,
    load_ofa_cache,
    missing_message,
)


def _dump(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _entry(space_name: str = "mbv3", **extra: object) -> dict:
    space = SPACES[space_name]()
    arch = space.sample(np.random.default_rng(1))
    return {"original config": space.to_released(arch), **fixture_labels(arch), **extra}


# ------------------------------------------------------------ OFA caches
@pytest.mark.parametrize("name", list(FIXTURE_FILES))
def test_round_trip_to_canonical_strings(tmp_path: Path, name: str) -> None:
    paths = write_fixture_caches(tmp_path, n=12, seed=3)
    family, pan_seg = FIXTURE_FILES[name]
    df = load_ofa_cache(paths[name], family)
    with paths[name].open("rb") as f:
        raw = pickle.load(f)  # our own fixture: trusted
    space = SPACES[family]()
    assert len(df) == 12
    expected_cols = ["arch", "acc", "latency_gpu", "latency_cpu", "latency_npu", "flops", "n_params"]
    assert list(df.columns) == expected_cols + (["pan_seg_PQ", "flops_pan_seg"] if pan_seg else [])
    for row, entry in zip(df.itertuples(index=False), raw):
        arch = space.from_string(row.arch)
        assert space.to_released(arch) == tuple(entry["original config"])
        assert row.acc == pytest.approx(100 * entry["acc"])
        assert row.latency_gpu == pytest.approx(float(entry["latency_gpu"]))
    assert df["arch"].is_unique
    assert df["acc"].between(70, 90).all()


def test_fixture_labels_deterministic(tmp_path: Path) -> None:
    a = write_fixture_caches(tmp_path / "a", n=8, seed=0)
    b = write_fixture_caches(tmp_path / "b", n=8, seed=0)
    for name in FIXTURE_FILES:
        assert a[name].read_bytes() == b[name].read_bytes()
    df = load_ofa_cache(a["ofa_mbv3_custom_cache.pkl"], "mbv3")
    depth = df["arch"].map(lambda s: s.count("k"))
    assert np.corrcoef(depth, df["acc"])[0, 1] > 0.5


def test_find_released_and_missing_message(tmp_path: Path) -> None:
    assert find_released(tmp_path) == {}
    write_fixture_caches(tmp_path, n=3)
    found = find_released(tmp_path)
    assert set(found) == set(FIXTURE_FILES) and IR_CACHE not in found
    assert all(p.parent == tmp_path for p in found.values())
    assert len(REQUIRED_FILES) == 5
    msg = missing_message(tmp_path, [n for n in REQUIRED_FILES if n not in found])
    assert IR_CACHE in msg and AUTHORS_REPO in msg and str(tmp_path) in msg
    assert "ofa_mbv3_custom_cache.pkl" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReleasedDataError) as info:
        load_ofa_cache(tmp_path / "ofa_pn_custom_cache.pkl", "pn")
    msg = str(info.value)
    assert "ofa_pn_custom_cache.pkl" in msg and AUTHORS_REPO in msg


def test_truncated_file(tmp_path: Path) -> None:
    path = write_fixture_caches(tmp_path, n=10)["ofa_mbv3_custom_cache.pkl"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ReleasedDataError, match="corrupt or truncated") as info:
        load_ofa_cache(path, "mbv3")
    assert str(path) in str(info.value)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "ofa_mbv3_custom_cache.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ReleasedDataError, match="corrupt or truncated"):
        load_ofa_cache(path, "mbv3")


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ({"original config": 1}, "top level is a dict"),
        ([{"acc": 0.7}, 3], "list holding int"),
        ([], "holds no entries"),
    ],
)
def test_wrong_top_level(tmp_path: Path, obj: object, what: str) -> None:
    path = _dump(tmp_path / "ofa_mbv3_custom_cache.pkl", obj)
    with pytest.raises(ReleasedDataError, match="expected a list of dicts") as info:
        load_ofa_cache(path, "mbv3")
    assert what in str(info.value)


def test_missing_original_config(tmp_path: Path) -> None:
    path = _dump(tmp_path / "c.pkl", [_entry(), {"acc": 0.75}])
    with pytest.raises(ReleasedDataError, match="entry 1 has no 'original config'"):
        load_ofa_cache(path, "mbv3")


@pytest.mark.parametrize("block", ["mbconv3_e5_k9", "sep_conv_3x3", 7])
def test_unknown_block_string(tmp_path: Path, block: object) -> None:
    bad = _entry()
    bad["original config"][1][2][0] = block
    path = _dump(tmp_path / "c.pkl", [_entry(), _entry(), bad])
    with pytest.raises(ReleasedDataError) as info:
        load_ofa_cache(path, "mbv3")
    msg = str(info.value)
    assert "entry 2" in msg and repr(block) in msg and str(path) in msg


def test_wrong_family(tmp_path: Path) -> None:
    path = _dump(tmp_path / "c.pkl", [_entry("pn")])
    with pytest.raises(ReleasedDataError, match="entry 0.*mbconv2_e"):
        load_ofa_cache(path, "mbv3")
    with pytest.raises(ValueError, match="space_name"):
        load_ofa_cache(path, "resnet")


def test_no_label_keys(tmp_path: Path) -> None:
    entry = _entry()
    labelled = dict(entry)
    for k in list(entry):
        if k != "original config":
            del entry[k]
    path = _dump(tmp_path / "c.pkl", [labelled, entry])
    with pytest.raises(ReleasedDataError, match="entry 1 has no label key"):
        load_ofa_cache(path, "mbv3")


def test_bad_label_values(tmp_path: Path) -> None:
    with pytest.raises(ReleasedDataError, match="label 'flops' is 'many'"):
        load_ofa_cache(_dump(tmp_path / "a.pkl", [_entry(flops="many")]), "mbv3")
    with pytest.raises(ReleasedDataError, match="fraction"):
        load_ofa_cache(_dump(tmp_path / "b.pkl", [_entry(acc=75.6)]), "mbv3")


def test_partial_labels_are_nan(tmp_path: Path) -> None:
    full, partial = _entry(), _entry()
    del partial["latency_npu"]
    df = load_ofa_cache(_dump(tmp_path / "c.pkl", [full, partial]), "mbv3")
    assert np.isnan(df["latency_npu"].iloc[1]) and not np.isnan(df["latency_npu"].iloc[0])


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_protocols_and_numpy_scalars(tmp_path: Path, protocol: int) -> None:
    entry = _entry(n_params=np.int64(5_000_000), flops=np.float32(180.5))
    df = load_ofa_cache(_dump(tmp_path / "c.pkl", [entry], protocol), "mbv3")
    assert df["n_params"].iloc[0] == 5_000_000 and df["flops"].iloc[0] == pytest.approx(180.5)


# ------------------------------------------------------ malicious pickles
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("loader", ["ofa", "ir"])
def test_malicious_pickle_refused_without_side_effect(tmp_path: Path, loader: str) -> None:
    marker = tmp_path / "pwned_marker"
    path = _dump(tmp_path / "c.pkl", [{"original config": _Evil(marker), "acc": 0.7}])
    with pytest.raises(ReleasedDataError) as info:
        load_ofa_cache(path, "mbv3") if loader == "ofa" else load_ir_cache(path)
    msg = str(info.value)
    assert f"refused to load {os.system.__module__}.system" in msg and str(path) in msg
    assert not marker.exists()


@pytest.mark.parametrize("func", [eval, exec, getattr, __import__, open, compile])
def test_dangerous_builtins_refused(tmp_path: Path, func: object) -> None:
    path = _dump(tmp_path / "c.pkl", [{"original config": func}])
    with pytest.raises(ReleasedDataError, match=f"refused to load {func.__module__}.{func.__name__}"):
        load_ofa_cache(path, "mbv3")


def test_ir_classes_refused_by_ofa_loader(tmp_path: Path) -> None:
    path = write_fixture_ir_cache(tmp_path, n=1)
    with pytest.raises(ReleasedDataError, match="refused to load onnx_ir.*load_ir_cache"):
        load_ofa_cache(path, "mbv3")


# ------------------------------------------------------------- IR cache
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_ir_cache_to_plain_records(tmp_path: Path, protocol: int) -> None:
    path = write_fixture_ir_cache(tmp_path, n=3, seed=1, protocol=protocol)
    assert "onnx_ir" not in sys.modules
    records = load_ir_cache(path)
    assert "onnx_ir" not in sys.modules  # nothing was imported
    assert len(records) == 6 and [r.index for r in records] == list(range(6))
    for r in records:
        assert r.labels["acc"] > 1  # in %
        assert r.nodes[0].op_type == "input_dummy" and r.nodes[-1].op_type == "output_dummy"
        assert r.edges == tuple((j, j + 1) for j in range(len(r.nodes) - 1))
    with_config = [r for r in records if r.index % 2 == 0]
    assert [r.family for r in with_config] == ["mbv3", "mbv3", "pn"]
    for r in with_config:
        space = SPACES[r.family]()
        n_layers = space.from_string(r.arch).n_layers
        assert sum(n.op_type == "Conv" for n in r.nodes) == 1 + 3 * n_layers
    named = [r for r in records if r.index % 2 == 1]
    assert all(r.family is None and r.arch == f"ofa_{'mbv3' if r.index < 3 else 'pn'}_{r.index}" for r in named)
    ops = {n.op_type for r in records for n in r.nodes}
    assert {"Relu", "Clip", "Add", "GlobalAveragePool"} <= ops


def test_ir_node_fields(tmp_path: Path) -> None:
    records = load_ir_cache(write_fixture_ir_cache(tmp_path, n=1))
    pn_record = records[1]
    stem = pn_record.nodes[1]
    assert stem.op_type == "Conv" and stem.attributes["kernel_shape"] == [3, 3]
    assert stem.initializer_shapes == {"stem.weight": (16, 3, 3, 3)}
    assert stem.output_shapes[0][:2] == (1, 16)
    dw = next(n for n in pn_record.nodes if "group" in n.attributes)
    assert dw.attributes["auto_pad"] == "NOTSET"
    assert dw.attributes["group"] == dw.input_shapes[0][1]
    clip = next(n for n in pn_record.nodes if n.op_type == "Clip")
    assert clip.attributes == {"min": 0.0, "max": 6.0}
    assert pn_record.nodes[0].input_shapes == () and pn_record.nodes[0].attributes == {}


def test_ir_unknown_class_says_how_to_map(tmp_path: Path) -> None:
    class Foreign:  # pickled as tests' module, not a mapped class
        pass

    Foreign.__module__, Foreign.__qualname__ = __name__, "Foreign"
    globals()["Foreign"] = Foreign
    try:
        path = _dump(tmp_path / IR_CACHE, [{"graph": Foreign(), "acc": 0.7}])
    finally:
        del globals()["Foreign"]
    with pytest.raises(ReleasedDataError, match="add .*'Foreign'.*IR_CLASS_MAP"):
        load_ir_cache(path)


def test_ir_entry_without_graph(tmp_path: Path) -> None:
    path = _dump(tmp_path / IR_CACHE, [_entry()])
    with pytest.raises(ReleasedDataError, match="entry 0 has no 'graph'"):
        load_ir_cache(path)
