"""Fixtures shared by several test files."""
import pytest

from autobuild_lib.core.spaces.sd import SDSpace, sd_unet, sd_unet_hw


@pytest.fixture(scope="module")
def sd() -> SDSpace:
    return sd_unet()


@pytest.fixture(scope="module")
def hw() -> SDSpace:
    return sd_unet_hw()
