"""Mini-OFA benchmark: OFA supernets trained on cluttered Fashion-MNIST (see supernet.py)."""
from autobuild_lib.benchmarks.miniofa.reliability import measure_reliability, sample_archs, split_halves
from autobuild_lib.benchmarks.miniofa.supernet import *  # noqa: F401,F403
from autobuild_lib.benchmarks.miniofa.supernet import __all__ as _s

__all__ = list(_s) + ["measure_reliability", "sample_archs", "split_halves"]
