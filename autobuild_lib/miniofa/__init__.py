"""Mini-OFA benchmark: OFA supernets trained on cluttered Fashion-MNIST (see supernet.py)."""
from .supernet import *  # noqa: F401,F403
from .supernet import __all__ as _s
from .reliability import measure_reliability, sample_archs, split_halves

__all__ = list(_s) + ["measure_reliability", "sample_archs", "split_halves"]
