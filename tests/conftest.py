"""Fixtures shared by several test files."""
import pytest

from autobuild_lib.core.spaces.sd import SDSpace, sd_unet, sd_unet_hw


@pytest.fixture(scope="module")
def sd() -> SDSpace:
    return sd_unet()


@pytest.fixture(scope="module")
def hw() -> SDSpace:
    return sd_unet_hw()


#: Tests that take more than about 5 s on the 2-core machine (measured with ``--durations``): the
#: ``slow`` marker, so that ``pytest -m "not slow"`` is the fast suite.  Node-id prefixes.
SLOW = (
    "tests/notebooks/test_notebooks.py",
    "tests/core/test_planted.py",
    "tests/core/test_latency.py",
    "tests/benchmarks/test_generate.py",
    "tests/benchmarks/test_panoptic_data.py",
    "tests/benchmarks/test_minisd.py::test_hw_stages_end_to_end",
    "tests/benchmarks/test_panoptic.py::test_generation_stages_are_resumable",
    "tests/core/test_ensemble.py::test_train_ensemble_in_parallel_matches_serial",
    "tests/core/test_ensemble.py::test_exhaustive_search_on_subsample",
    "tests/core/test_training_scoring.py::test_pn_scores_merged_unit",
    "tests/study/test_cli.py::test_help_lists_subcommands",
    "tests/study/test_hardening.py",
    "tests/benchmarks/test_released_readme_keys.py::test_chapters_label_constructed_archs_with_the_l1_predictors",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
