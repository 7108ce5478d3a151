"""The search-space interface every space of the study implements.

A *unit* is the part of an architecture that AutoBuild scores and builds as
one module (a stage of MobileNetV3, the merged stages 5+6 of ProxylessNAS, a
U-Net stage of the SD space). A *module* is the hashable value one unit takes
in one architecture; a space enumerates all modules of each unit, splits an
architecture into its modules and assembles an architecture from modules.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from math import prod

import numpy as np

Arch = Hashable
Module = Hashable


class SearchSpace(ABC):
    """Abstract macro search space (NASLib-style: sample / mutate / encode)."""

    name: str

    # ------------------------------------------------------------------ units
    @property
    @abstractmethod
    def n_units(self) -> int:
        """Number of units (stages) that modules are scored and built for."""

    @abstractmethod
    def modules(self, unit: int) -> Iterator[Module]:
        """Enumerate every module of ``unit`` in a fixed, deterministic order."""

    def n_modules(self, unit: int) -> int:
        """Number of modules of ``unit`` (override with a closed form)."""
        return sum(1 for _ in self.modules(unit))

    def size(self) -> int:
        """Number of architectures: the product of the units' module counts."""
        return prod(self.n_modules(u) for u in range(self.n_units))

    @abstractmethod
    def split(self, arch: Arch) -> list[Module]:
        """The module each unit takes in ``arch``."""

    @abstractmethod
    def assemble(self, modules: Sequence[Module], **globals_: object) -> Arch:
        """Build an architecture from one module per unit (and global choices)."""

    # ----------------------------------------------------------- arch values
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """Draw one architecture uniformly as the space's own sampler does."""

    @abstractmethod
    def validate(self, arch: object) -> Arch:
        """Return ``arch`` in canonical form or raise ``ValueError`` saying why."""

    @abstractmethod
    def to_string(self, arch: Arch) -> str:
        """The one canonical, hashable string of ``arch``."""

    @abstractmethod
    def from_string(self, text: str) -> Arch:
        """Inverse of :meth:`to_string`; raises ``ValueError`` on malformed text."""

    @abstractmethod
    def sample_module(self, unit: int, rng: np.random.Generator) -> Module:
        """Draw one module of ``unit`` as :meth:`sample` would."""


#: Longer text is refused before parsing; every canonical string is far shorter.
MAX_ARCH_CHARS = 1000


def echo(text: str, limit: int = 80) -> str:
    """``repr(text)`` for an error message, cut to ``limit`` characters (inputs may be megabytes)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"
