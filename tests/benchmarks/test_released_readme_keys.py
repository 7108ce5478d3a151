"""Released mode on caches with only the labels the authors' README names (acc, latency_gpu/cpu/npu),
and chapters 05 / 06 scoring constructed architectures with the authors' L1 predictors (issue 18).

Every chapter's released-mode path runs on such caches in ``test_notebooks.py`` (its fixture writes
:data:`README_KEYS` caches, without ``l1_models/``: the fallback to the study's own predictors); here
chapters 05 and 06 run with a synthetic ``l1_models/`` folder as well.
"""
from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import nbformat
import pytest
from fixtures_l1 import write_l1_models
from fixtures_released import README_KEYS, write_fixture_caches, write_fixture_ir_cache

from autobuild_lib.benchmarks.released import load_ofa_cache
from autobuild_lib.benchmarks.released_flops import fill_static
from autobuild_lib.benchmarks.released_l1 import L1_SOURCE
from autobuild_lib.paths import NOTEBOOK_DIR
from autobuild_lib.study.data import load_set

CLASSIFICATION = ("ofa_mbv3_custom_cache.pkl", "ofa_pn_custom_cache.pkl")


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("released-readme")
    write_fixture_caches(root, n=200, keys=README_KEYS)
    write_fixture_ir_cache(root, n=30)
    write_l1_models(root / "l1_models")
    return root


def test_fixture_caches_have_exactly_the_readme_keys(readme_dir: Path) -> None:
    for name in CLASSIFICATION:
        with (readme_dir / name).open("rb") as f:
            entries = pickle.load(f)   # our own fixture: trusted
        assert all(set(e) == {"original config", *README_KEYS} for e in entries)
        df = load_ofa_cache(readme_dir / name, "mbv3" if "mbv3" in name else "pn")
        assert list(df.columns) == ["arch", *README_KEYS]


def test_flops_computed_from_the_architecture_and_cached(readme_dir: Path, tmp_path: Path) -> None:
    from autobuild_lib.benchmarks.miniofa.labels import static_unit

    ls = load_set("autobuild-release", "pn", readme_dir, n=4, seed=0)
    assert "flops" not in ls.frame.columns
    cache = tmp_path / "static.sqlite"
    note = fill_static(ls.frame, "pn", cache)
    assert note and "flops and n_params" in note and "not the authors'" in note
    expected = static_unit("pn", ls.frame["arch"].iloc[0])
    assert ls.frame["flops"].iloc[0] == pytest.approx(expected["flops"])
    assert ls.frame["n_params"].iloc[0] == pytest.approx(expected["n_params"])
    with sqlite3.connect(cache) as con:
        assert con.execute("SELECT COUNT(*) FROM static").fetchone()[0] == 4
    assert fill_static(ls.frame, "pn", cache) is None   # complete now: nothing to do


def _outputs(path: Path) -> list[str]:
    """Plain-text outputs (tables, printed lines, Markdown source) of every code cell."""
    run = nbformat.read(path, 4)
    out = []
    for c in run.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            data = o.get("data", {})
            out.append(o.get("text", "") + data.get("text/plain", "") + data.get("text/markdown", ""))
    return out


@pytest.mark.parametrize("stem", ["05_mbv3_pareto", "06_evolutionary_nas"])
def test_chapters_label_constructed_archs_with_the_l1_predictors(stem: str, readme_dir: Path, tmp_path: Path) -> None:
    from autobuild_lib.study.book import execute_notebook

    nb = NOTEBOOK_DIR / f"{stem}.ipynb"
    execute_notebook(nb, tmp_path / nb.name, progress=False, profile="smoke", dataset="autobuild-release",
                     data_dir=str(readme_dir), predictor_cache="")
    outputs = _outputs(tmp_path / nb.name)
    text = " ".join(outputs)
    assert "reduced, not removed" in text and "the study's own predictors are used" not in text
    if stem == "05_mbv3_pareto":   # the constructed archs' table, by (equation, source)
        tables = [t for t in outputs if "equation" in t and "source" in t and "latency_cpu" in t]
        assert tables and all(L1_SOURCE in t and "estimate" not in t for t in tables)
    else:                          # the per-scheme provenance table of the searched archs
        tables = [t for t in outputs if "acc_source" in t]
        assert tables and f"predicted ({L1_SOURCE})" in tables[0]
