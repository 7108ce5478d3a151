"""Once-for-All macro spaces: MobileNetV3 (MBv3) and ProxylessNAS (PN).

Paper Sec. 3.1 / 5.1: stages of 2-4 MBConv layers, kernel k in {3,5,7},
expansion e in {3,4,6} (9 layer types), input resolution r in {192,208,224}.
MBv3 has 5 stages; PN has 6, the last always one layer.  For module
enumeration and NAS, PN's stages 5 and 6 form one unit of 3-5 layers.
Per stage 9^2 + 9^3 + 9^4 = 7,371 modules; MBv3 7,371^5 ~ 2.18e19 archs,
PN 7,371^5 * 9 ~ 1.96e20 (resolution is not counted, as in the paper).

The canonical string of an architecture is ``"224|k3e6,k5e4|k7e3,k3e3|..."``:
resolution, then one ``|``-separated field per stage with ``k{k}e{e}`` layers.
The released-data form of the authors' caches is
``(224, [["mbconv3_e6_k3", "mbconv3_e4_k5"], ...])`` (``mbconv2`` for PN).
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from autobuild_lib.core.spaces.base import MAX_ARCH_CHARS, SearchSpace, echo

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
RESOLUTIONS = (192, 208, 224)
LAYER_TYPES: tuple[tuple[int, int], ...] = tuple(itertools.product(KERNELS, EXPANSIONS))

Layer = tuple[int, int]  # (kernel, expansion)
OFAModule = tuple[Layer, ...]

_BLOCK_RE = re.compile(r"^mbconv(\d)_e(\d+)_k(\d+)$")
_LAYER_RE = re.compile(r"k([0-9]+)e([0-9]+)", re.ASCII)  # canonical: ASCII digits only
_INT_RE = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True, order=True)
class OFAArch:
    """One OFA architecture: input resolution and (k, e) layers per stage."""

    resolution: int
    stages: tuple[OFAModule, ...]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    @property
    def n_layers(self) -> int:
        return sum(self.depths)


class OFASpace(SearchSpace):
    """An OFA MBConv space; restricted variants give the Layer-Insight spaces.

    Parameters
    ----------
    name: identifier (``"mbv3"``, ``"pn"`` or a restricted variant's name).
    family: ``"mbv3"`` or ``"pn"`` -- block family, stage layout, block string.
    depths: allowed layer counts per stage.
    layer_types: allowed (k, e) pairs.
    """

    def __init__(
        self,
        name: str,
        family: str,
        depths: Sequence[Sequence[int]],
        layer_types: Sequence[Layer] = LAYER_TYPES,
        resolutions: Sequence[int] = RESOLUTIONS,
    ) -> None:
        if family not in ("mbv3", "pn"):
            raise ValueError(f"family must be 'mbv3' or 'pn', got {family!r}")
        self.name = name
        self.family = family
        self.depths = tuple(tuple(sorted(d)) for d in depths)
        self.layer_types = tuple(layer_types)
        self.resolutions = tuple(resolutions)
        self.block_prefix = "mbconv3" if family == "mbv3" else "mbconv2"
        # PN: the last stage (fixed at one layer) joins the previous one.
        self.merge_last = family == "pn"

    # ------------------------------------------------------------------ units
    @property
    def n_stages(self) -> int:
        return len(self.depths)

    @property
    def n_units(self) -> int:
        return self.n_stages - 1 if self.merge_last else self.n_stages

    def unit_depths(self, unit: int) -> tuple[int, ...]:
        """Allowed module lengths of ``unit``."""
        self._check_unit(unit)
        if self.merge_last and unit == self.n_units - 1:
            last = self.depths[-1]
            return tuple(sorted({a + b for a in self.depths[-2] for b in last}))
        return self.depths[unit]

    def n_modules(self, unit: int) -> int:
        self._check_unit(unit)
        t = len(self.layer_types)
        if self.merge_last and unit == self.n_units - 1:
            return sum(t**a for a in self.depths[-2]) * sum(t**b for b in self.depths[-1])
        return sum(t**d for d in self.depths[unit])

    def modules(self, unit: int) -> Iterator[OFAModule]:
        for d in self.unit_depths(unit):
            yield from itertools.product(self.layer_types, repeat=d)

    def module_stage_of_layer(self, unit: int, module: OFAModule) -> list[int]:
        """0-based stage index of each layer of ``module`` placed in ``unit``."""
        if self.merge_last and unit == self.n_units - 1:
            return [unit] * (len(module) - 1) + [unit + 1]
        return [unit] * len(module)

    def module_layer_index(self, unit: int, module: OFAModule) -> list[int]:
        """0-based layer index inside its stage of each layer of ``module``."""
        if self.merge_last and unit == self.n_units - 1:
            return list(range(len(module) - 1)) + [0]
        return list(range(len(module)))

    def split(self, arch: OFAArch) -> list[OFAModule]:
        arch = self.validate(arch)
        if self.merge_last:
            return list(arch.stages[:-2]) + [arch.stages[-2] + arch.stages[-1]]
        return list(arch.stages)

    def assemble(self, modules: Sequence[OFAModule], resolution: int = 224) -> OFAArch:
        if len(modules) != self.n_units:
            raise ValueError(f"{self.name}: need {self.n_units} modules, got {len(modules)}")
        stages = [tuple(tuple(layer) for layer in m) for m in modules]
        if self.merge_last:
            last = stages.pop()
            if len(last) < 2:
                raise ValueError(f"{self.name}: merged unit needs >= 2 layers, got {len(last)}")
            stages += [last[:-1], last[-1:]]
        return self.validate(OFAArch(int(resolution), tuple(stages)))

    # -------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator) -> OFAArch:
        """OFA's order: depth per stage, then (k, e) per layer, then resolution."""
        depths = [int(rng.choice(d)) for d in self.depths]
        stages = tuple(
            tuple(self.layer_types[int(rng.integers(len(self.layer_types)))] for _ in range(d))
            for d in depths
        )
        res = int(rng.choice(self.resolutions))
        return OFAArch(res, stages)

    def sample_module(self, unit: int, rng: np.random.Generator) -> OFAModule:
        if self.merge_last and unit == self.n_units - 1:
            ds = [int(rng.choice(self.depths[-2])), int(rng.choice(self.depths[-1]))]
            d = sum(ds)
        else:
            d = int(rng.choice(self.unit_depths(unit)))
        t = self.layer_types
        return tuple(t[int(rng.integers(len(t)))] for _ in range(d))

    # ------------------------------------------------------------ validation
    def validate(self, arch: object) -> OFAArch:
        if not isinstance(arch, OFAArch):
            raise ValueError(f"{self.name}: expected an OFAArch, got {type(arch).__name__}")
        if arch.resolution not in self.resolutions:
            raise ValueError(
                f"{self.name}: resolution {arch.resolution} not allowed; allowed: {self.resolutions}"
            )
        if len(arch.stages) != self.n_stages:
            raise ValueError(f"{self.name}: expected {self.n_stages} stages, got {len(arch.stages)}")
        for s, (stage, allowed) in enumerate(zip(arch.stages, self.depths)):
            if len(stage) not in allowed:
                raise ValueError(
                    f"{self.name}: stage {s + 1} has {len(stage)} layers; allowed: {allowed}"
                )
            for i, layer in enumerate(stage):
                if tuple(layer) not in self.layer_types:
                    raise ValueError(
                        f"{self.name}: stage {s + 1} layer {i + 1} is {layer!r}; allowed (k, e): "
                        f"{self.layer_types}"
                    )
        return arch

    # ------------------------------------------------------------- encodings
    def to_string(self, arch: OFAArch) -> str:
        arch = self.validate(arch)
        stages = "|".join(",".join(f"k{k}e{e}" for k, e in st) for st in arch.stages)
        return f"{arch.resolution}|{stages}"

    def from_string(self, text: str) -> OFAArch:
        if not isinstance(text, str):
            raise ValueError(f"{self.name}: architecture string must be str, got {type(text).__name__}")
        if len(text) > MAX_ARCH_CHARS:
            raise ValueError(f"{self.name}: {echo(text)} is longer than any architecture string "
                             f"({MAX_ARCH_CHARS} characters at most)")
        fields = text.strip().split("|")
        if len(fields) != self.n_stages + 1:
            raise ValueError(
                f"{self.name}: {echo(text)} has {len(fields) - 1} stages; expected {self.n_stages} "
                "('RES|k3e4,k5e6|...')"
            )
        if not _INT_RE.fullmatch(fields[0]):
            raise ValueError(f"{self.name}: resolution {echo(fields[0])} in {echo(text)} is not a plain "
                             "integer (ASCII digits only)")
        res = int(fields[0])
        stages = []
        for s, field in enumerate(fields[1:]):
            layers = []
            for i, tok in enumerate(field.split(",") if field else []):
                m = _LAYER_RE.fullmatch(tok)
                if not m:
                    raise ValueError(
                        f"{self.name}: stage {s + 1} layer {i + 1} is {echo(tok)}; expected 'k<kernel>e<expansion>'"
                    )
                layers.append((int(m.group(1)), int(m.group(2))))
            stages.append(tuple(layers))
        return self.validate(OFAArch(res, tuple(stages)))

    def to_released(self, arch: OFAArch) -> tuple[int, list[list[str]]]:
        """The authors' ``original config`` form."""
        arch = self.validate(arch)
        return arch.resolution, [
            [f"{self.block_prefix}_e{e}_k{k}" for k, e in st] for st in arch.stages
        ]

    def from_released(self, config: object) -> OFAArch:
        """Parse ``(resolution, [[block strings per stage], ...])``."""
        if not (isinstance(config, (tuple, list)) and len(config) == 2):
            raise ValueError(f"{self.name}: 'original config' must be (resolution, stages), got {config!r}")
        res, stages = config
        if not isinstance(stages, (list, tuple)):
            raise ValueError(f"{self.name}: stages must be a list of lists, got {type(stages).__name__}")
        out = []
        for s, stage in enumerate(stages):
            if not isinstance(stage, (list, tuple)):
                raise ValueError(f"{self.name}: stage {s + 1} must be a list of block strings")
            layers = []
            for i, block in enumerate(stage):
                m = _BLOCK_RE.match(block) if isinstance(block, str) else None
                if not m or f"mbconv{m.group(1)}" != self.block_prefix:
                    raise ValueError(
                        f"{self.name}: stage {s + 1} layer {i + 1} block {block!r} is not a "
                        f"'{self.block_prefix}_e<e>_k<k>' string"
                    )
                layers.append((int(m.group(3)), int(m.group(2))))
            out.append(tuple(layers))
        if not isinstance(res, int) or isinstance(res, bool):
            raise ValueError(f"{self.name}: resolution must be an int, got {res!r}")
        return self.validate(OFAArch(res, tuple(out)))

    # ----------------------------------------------------------------- misc
    def _check_unit(self, unit: int) -> None:
        if not 0 <= unit < self.n_units:
            raise ValueError(f"{self.name}: unit {unit} out of range 0..{self.n_units - 1}")

    def __repr__(self) -> str:
        return f"OFASpace({self.name!r}, size={float(self.size()):.3g})"


def mbv3() -> OFASpace:
    """OFA MobileNetV3: 5 stages of 2-4 layers."""
    return OFASpace("mbv3", "mbv3", [(2, 3, 4)] * 5)


def pn() -> OFASpace:
    """OFA ProxylessNAS: stages 1-5 of 2-4 layers, stage 6 always one layer."""
    return OFASpace("pn", "pn", [(2, 3, 4)] * 5 + [(1,)])


# The paper's Layer-Insight hand-reduced MBv3 spaces (Sec. 7.5).  The notes do
# not say which two MBConv types the GPU space drops; the study drops the two
# costliest (k7 e6 and k7 e4) and says so in the book.
INSIGHT_GPU_DROPPED: tuple[Layer, ...] = ((7, 6), (7, 4))


def mbv3_insight(device: str) -> OFASpace:
    """Layer-Insight MBv3 spaces: ``gpu`` (~4.6e14), ``cpu`` (~2.9e16), ``npu`` (~9e15)."""
    full = [(2, 3, 4)] * 5
    if device == "gpu":
        depths = [(2, 3, 4), (2, 3), (2, 3, 4), (2, 3), (2, 3)]
        types = [t for t in LAYER_TYPES if t not in INSIGHT_GPU_DROPPED]
    elif device == "cpu":
        depths = [(2, 3)] * 3 + [(2, 3, 4)] * 2
        types = list(LAYER_TYPES)
    elif device == "npu":
        depths = full
        types = [t for t in LAYER_TYPES if t[0] != 7]
    else:
        raise ValueError(f"unknown Layer-Insight device {device!r}; choose gpu, cpu or npu")
    return OFASpace(f"mbv3-insight-{device}", "mbv3", depths, types)

