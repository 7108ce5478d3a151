import gzip
import shutil

import numpy as np
import pytest

from autobuild_lib.benchmarks.fashion_mnist import FILES, DatasetError, load_fashion_mnist, locate


def _write_idx(path, arr):
    header = (0x800 + arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_real_dataset_loads():
    data = load_fashion_mnist()
    assert data["train_images"].shape == (60000, 28, 28)
    assert data["test_images"].shape == (10000, 28, 28)
    assert int(data["train_labels"].max()) == 9 and data["test_labels"].shape == (10000,)


def test_missing_file_names_it_and_the_three_ways(tmp_path):
    src = locate()
    for stem in list(FILES.values())[:3]:
        for p in src.glob(stem + "*"):
            shutil.copy(p, tmp_path / p.name)
    with pytest.raises(DatasetError, match=r"missing: \['t10k-labels-idx1-ubyte'\].*apt-get install"):
        locate((tmp_path,), download=False)
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz.*data/raw/fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_corrupt_files(tmp_path):
    src = locate()
    for stem in FILES.values():
        for p in src.glob(stem + "*"):
            shutil.copy(p, tmp_path / p.name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot read|bad header"):
        load_fashion_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5))
    with pytest.raises(DatasetError, match="holds 5 items"):
        load_fashion_mnist(tmp_path)
    raw = gzip.open(src / "t10k-images-idx3-ubyte.gz").read()[:1000]
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw)
    with pytest.raises(DatasetError, match="truncated"):
        load_fashion_mnist(tmp_path)
