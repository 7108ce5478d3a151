"""Fashion-MNIST, the study's real image data.

Searched in this order:

1. ``data/raw/fashion-mnist/`` in the repository,
2. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``),
3. a torchvision download into ``data/raw/fashion-mnist/``.

The IDX files may be gzipped or plain.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from autobuild_lib.paths import REPO_ROOT

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EXPECTED = {"train": 60000, "test": 10000}
SEARCH_DIRS = (REPO_ROOT / "data" / "raw" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
HOW_TO = (
    "Provide Fashion-MNIST in one of three ways: (1) put the four IDX files "
    "(train-images-idx3-ubyte[.gz], ...) in data/raw/fashion-mnist/; (2) on Debian/Ubuntu "
    "`apt-get install dataset-fashion-mnist` (files under /usr/share/datasets/fashion-mnist); "
    "(3) let torchvision download it (needs network access)."
)


class DatasetError(RuntimeError):
    """Missing or corrupt data file."""


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}. {HOW_TO}") from exc
    magic = 0x800 + ndim
    if len(raw) < 4 + 4 * ndim or int.from_bytes(raw[:4], "big") != magic:
        raise DatasetError(f"{path} is not an IDX file with {ndim} dimensions (bad header). {HOW_TO}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, found {body.size} values. {HOW_TO}")
    return body.reshape(dims)


def _download(target: Path) -> Path:
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(target.parent / "_torchvision"), download=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        raise DatasetError(f"Fashion-MNIST not found in {[str(d) for d in SEARCH_DIRS]} and the "
                           f"torchvision download failed ({exc}). {HOW_TO}") from exc
    return target.parent / "_torchvision" / "FashionMNIST" / "raw"


def locate(search_dirs: tuple[Path, ...] = SEARCH_DIRS, download: bool = True) -> Path:
    """The first directory holding all four IDX files."""
    for d in search_dirs:
        if all(_find(d, stem) for stem in FILES.values()):
            return d
    partial = [(d, [s for s in FILES.values() if not _find(d, s)]) for d in search_dirs
               if any(_find(d, s) for s in FILES.values())]
    if partial:
        d, missing = partial[0]
        raise DatasetError(f"{d} holds only part of Fashion-MNIST; missing: {missing}. {HOW_TO}")
    if not download:
        raise DatasetError(f"Fashion-MNIST not found in {[str(d) for d in search_dirs]}. {HOW_TO}")
    return _download(search_dirs[0])


def load_fashion_mnist(directory: Path | None = None) -> dict[str, torch.Tensor]:
    """The four splits as tensors: uint8 images ``[N, 28, 28]`` and int64 labels."""
    d = Path(directory) if directory is not None else locate()
    out: dict[str, torch.Tensor] = {}
    for key, stem in FILES.items():
        path = _find(d, stem)
        if path is None:
            raise DatasetError(f"missing {d / (stem + '.gz')}. {HOW_TO}")
        arr = _read_idx(path, 3 if key.endswith("images") else 1)
        split = key.split("_")[0]
        if arr.shape[0] != EXPECTED[split]:
            raise DatasetError(f"{path} holds {arr.shape[0]} items; Fashion-MNIST's {split} split has "
                               f"{EXPECTED[split]}. {HOW_TO}")
        if key.endswith("labels") and arr.max() > 9:
            raise DatasetError(f"{path} has label {int(arr.max())} > 9: corrupt. {HOW_TO}")
        out[key] = torch.from_numpy(arr.astype(np.int64) if key.endswith("labels") else arr.copy())
    return out
