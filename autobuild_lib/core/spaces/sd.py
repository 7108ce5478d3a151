"""Stable Diffusion v1.4 inpainting U-Net spaces (paper Sec. 5.3, 7.8-7.10).

Topology (notes Sec. 7).  Four input stages, a middle stage, four output
stages.  An input stage holds 2 ResConv blocks (1 after removal), an output
stage 3 (2 after removal); an Attention block may follow a ResConv.  A
Downsample closes input stages 1-3 and an Upsample closes output stages 2-4.
The middle stage is fixed: ResConv, Attention, ResConv at stage-4 channels.

Stage numbering is by resolution level: stage 1 is the highest resolution and
has C_m channels, stage s has ``C_m * multiplier[s]``.  Output stage s pairs
with input stage s (same channels, one long skip).  The forward pass visits
input 1-4, middle, output 4, 3, 2, 1, so the first output stage processes the
deepest features and the Upsamples close output stages 4, 3, 2 (as in SD's up
blocks).  Middle-stage nodes carry stage index 0 (``MIDDLE_STAGE``).

Choices of the full space ``sd_unet`` (Sec. 7.9):

* C_m in {128, 192, 256} (3 choices);
* one of the 8 multiplier combinations in ``MULTIPLIER_COMBOS`` (8); an
  output stage uses its input stage's multiplier;
* per stage, optionally remove 1 residual block (input {1, 2}, output {2, 3});
* attention: none in stage 1, always removed in stage 2; in stages 3 and 4
  the input stage's attention is on (after every ResConv) or off, and each
  ResConv of the output stage independently keeps or drops its attention.

Per (C_m, combination) the 8 units have 2, 2, 4, 4 (input stages 1-4) and
2, 2, 12, 12 (output stages 1-4) structural options (12 = 2^3 + 2^2 attention
patterns over 3 or 2 ResConvs), i.e. 16 * 16 * 144 = 36,864.  Exact sizes:

* ``sd_unet``:    3 * 8 * 36,864 = 884,736   (paper: "about 800k");
* ``sd_unet_hw``: 1 * 3 * 36,864 = 110,592   (paper: "about 100k"; C_m = 256,
  the 3 combinations elementwise <= [1, 2, 3, 4]).

Why this rule (the notes do not give every counting detail): the choices the
notes name explicitly (residual removal in 8 stages, stage-level attention in
input/output stages 3-4) give only 16 * 16 * 16 = 4,096 per (C_m, combination)
and 98,304 in all.  The notes' module hop sizes ("output stages 2-4, 2-6 hops:
best module of each size", K = 5) need output modules of every size from 3 to
7 nodes, hence 3 ResConvs + 2 Attentions + Upsample, i.e. per-block output
attention; with it the count lands at 884,736.  Per-block input attention as
well would give ~2.0M, so the input side keeps one flag per stage.  An exact
3 * 8 * 2^15 = 786,432 cannot come from rules applied alike to stages 3 and 4
and to both branches (the per-combination count is then 16 * (a*b)^2, never
2^15) without a knob on the middle stage, which the notes fix.

The canonical string is ``"C_m|m1,m2,m3,m4|in1,in2,in3,in4|out1,out2,out3,out4"``
with one op sequence per stage in stage order, ``R`` a ResConv and ``A`` an
Attention after it (samplers implied), e.g. the base model
``"256|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA"``.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from math import prod

import numpy as np

from autobuild_lib.core.spaces.base import MAX_ARCH_CHARS, SearchSpace, echo

N_STAGES = 4
C_M_CHOICES = (128, 192, 256)
BASE_C_M = 256
BASE_MULTIPLIERS = (1, 2, 3, 4)
# The 8 stage-multiplier combinations.  Base, [1,1,2,4] and [1,3,4,2] are the
# paper's; the other five are the study's choice: [1,1,2,2] (a third combination
# elementwise <= base, for the hardware space), [1,2,4,4] (SD v1.4's own
# multipliers) and three non-monotone or flat patterns.
MULTIPLIER_COMBOS: tuple[tuple[int, int, int, int], ...] = (
    (1, 2, 3, 4),
    (1, 1, 2, 4),
    (1, 1, 2, 2),
    (1, 2, 4, 4),
    (1, 3, 4, 2),
    (1, 2, 4, 2),
    (1, 3, 3, 3),
    (1, 4, 3, 2),
)
INPUT_RES = (1, 2)
OUTPUT_RES = (2, 3)
ATTENTION_STAGES = (3, 4)
OPS = ("ResConv", "Attention", "Downsample", "Upsample")
SECTIONS = ("input", "middle", "output")
MIDDLE_STAGE = 0

Blocks = tuple[bool, ...]  # one flag per ResConv of a stage: followed by an Attention?
Node = dict[str, object]
Edge = tuple[int, int]

_INT_RE = re.compile(r"[0-9]+", re.ASCII)  # canonical: ASCII digits only
_STAGE_RE = re.compile(r"(?:RA?)+")


@dataclass(frozen=True, order=True)
class SDModule:
    """The value of one unit: stage channels and the attention flag per ResConv."""

    channels: int
    blocks: Blocks

    @property
    def n_res(self) -> int:
        return len(self.blocks)

    @property
    def n_attention(self) -> int:
        return sum(self.blocks)


@dataclass(frozen=True, order=True)
class SDArch:
    """One U-Net: C_m, stage multipliers, and per-stage ResConv/attention blocks.

    ``inputs[s]`` / ``outputs[s]`` hold the blocks of input / output stage s+1
    (stage order; the forward pass runs the output stages 4 -> 1).
    """

    c_m: int
    multipliers: tuple[int, int, int, int]
    inputs: tuple[Blocks, ...]
    outputs: tuple[Blocks, ...]

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of stages 1-4 (input and output alike)."""
        return tuple(self.c_m * m for m in self.multipliers)

    @property
    def middle_channels(self) -> int:
        return self.c_m * self.multipliers[-1]


def _stage_nodes(section: str, stage: int, channels: int, blocks: Blocks) -> list[Node]:
    """Nodes of one input/output stage in forward order, sampler included."""
    nodes: list[Node] = []
    for attn in blocks:
        nodes.append({"op": "ResConv", "channels": channels, "section": section, "stage": stage})
        if attn:
            nodes.append({"op": "Attention", "channels": channels, "section": section, "stage": stage})
    if section == "input" and stage < N_STAGES:
        nodes.append({"op": "Downsample", "channels": channels, "section": section, "stage": stage})
    if section == "output" and stage > 1:
        nodes.append({"op": "Upsample", "channels": channels, "section": section, "stage": stage})
    return nodes


def _chain_edges(n: int) -> list[Edge]:
    return [(i, i + 1) for i in range(n - 1)]


def _unit_stage(unit: int) -> tuple[str, int]:
    return ("input", unit + 1) if unit < N_STAGES else ("output", unit - N_STAGES + 1)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_bool(x: object) -> bool:
    return isinstance(x, (bool, np.bool_))


class SDSpace(SearchSpace):
    """An SD v1.4 inpainting U-Net space (see the module docstring for the rules).

    Parameters
    ----------
    name: identifier (``"sd"`` or ``"sd-hw"``).
    c_ms: allowed global channel counts C_m.
    combos: allowed stage-multiplier combinations (4 ints, the first 1).
    """

    def __init__(
        self,
        name: str,
        c_ms: Sequence[int] = C_M_CHOICES,
        combos: Sequence[Sequence[int]] = MULTIPLIER_COMBOS,
    ) -> None:
        self.name = name
        self.c_ms = tuple(int(c) for c in c_ms)
        self.combos = tuple(tuple(int(m) for m in c) for c in combos)
        if not self.c_ms or any(c <= 0 for c in self.c_ms) or len(set(self.c_ms)) != len(self.c_ms):
            raise ValueError(f"{name}: c_ms must be distinct positive ints, got {self.c_ms}")
        for combo in self.combos:
            if len(combo) != N_STAGES or combo[0] != 1 or min(combo) <= 0:
                raise ValueError(
                    f"{name}: multiplier combination {combo} must be 4 positive ints starting with 1"
                )
        if not self.combos or len(set(self.combos)) != len(self.combos):
            raise ValueError(f"{name}: combos must be distinct and non-empty, got {self.combos}")
        self._patterns = tuple(self._unit_patterns(u) for u in range(self.n_units))
        self._pattern_sets = tuple(frozenset(p) for p in self._patterns)
        self._channels = tuple(
            tuple(sorted({c * combo[_unit_stage(u)[1] - 1] for c in self.c_ms for combo in self.combos}))
            for u in range(self.n_units)
        )

    # ------------------------------------------------------------------ units
    @property
    def n_units(self) -> int:
        return 2 * N_STAGES

    def unit_stage(self, unit: int) -> tuple[str, int]:
        """(section, stage) of ``unit``: units 0-3 are input stages 1-4, 4-7 output stages 1-4."""
        self._check_unit(unit)
        return _unit_stage(unit)

    @staticmethod
    def _unit_patterns(unit: int) -> tuple[Blocks, ...]:
        section, stage = _unit_stage(unit)
        attn = stage in ATTENTION_STAGES
        if section == "input":
            flags = (False, True) if attn else (False,)
            return tuple((a,) * n for n in INPUT_RES for a in flags)
        return tuple(
            p for n in OUTPUT_RES
            for p in (itertools.product((False, True), repeat=n) if attn else [(False,) * n])
        )

    def block_patterns(self, unit: int) -> tuple[Blocks, ...]:
        """Allowed per-ResConv attention patterns of ``unit`` (their length = ResConv count)."""
        self._check_unit(unit)
        return self._patterns[unit]

    def unit_channels(self, unit: int) -> tuple[int, ...]:
        """Channel counts ``unit`` takes in some architecture of the space."""
        self._check_unit(unit)
        return self._channels[unit]

    def modules(self, unit: int) -> Iterator[SDModule]:
        self._check_unit(unit)
        for ch in self._channels[unit]:
            for blocks in self._patterns[unit]:
                yield SDModule(ch, blocks)

    def n_modules(self, unit: int) -> int:
        self._check_unit(unit)
        return len(self._channels[unit]) * len(self._patterns[unit])

    def size(self) -> int:
        """Exact number of architectures (channels couple the units)."""
        return len(self.c_ms) * len(self.combos) * prod(len(p) for p in self._patterns)

    def enumerate_archs(self) -> Iterator[SDArch]:
        """Every architecture once: C_m, combination, then blocks of units 0-7."""
        for c_m in self.c_ms:
            for combo in self.combos:
                for pats in itertools.product(*self._patterns):
                    yield SDArch(c_m, combo, pats[:N_STAGES], pats[N_STAGES:])

    def n_module_nodes(self, unit: int, module: SDModule) -> int:
        """Graph nodes ``module`` contributes in ``unit``; its hop level is this minus 1."""
        self._check_module(unit, module)
        section, stage = self.unit_stage(unit)
        sampler = (section == "input" and stage < N_STAGES) or (section == "output" and stage > 1)
        return module.n_res + module.n_attention + int(sampler)

    def hop_sizes(self, unit: int) -> tuple[int, ...]:
        """Distinct hop levels (nodes - 1) of the modules of ``unit``, ascending."""
        ch = self.unit_channels(unit)[0]
        return tuple(sorted({self.n_module_nodes(unit, SDModule(ch, p)) - 1 for p in self._patterns[unit]}))

    # ------------------------------------------------------- split / assemble
    def split(self, arch: SDArch) -> list[SDModule]:
        arch = self.validate(arch)
        ch = arch.channels
        return [SDModule(ch[s], b) for s, b in enumerate(arch.inputs)] + [
            SDModule(ch[s], b) for s, b in enumerate(arch.outputs)
        ]

    def _channel_error(self, modules: Sequence[SDModule]) -> str | None:
        """Why the modules' channels break the constraints, or None."""
        ins = [m.channels for m in modules[:N_STAGES]]
        outs = [m.channels for m in modules[N_STAGES:]]
        c_m = ins[0]
        if c_m not in self.c_ms:
            return f"input stage 1 has {c_m} channels; it must equal C_m, one of {self.c_ms}"
        for s, (ci, co) in enumerate(zip(ins, outs)):
            if ci != co:
                return (
                    f"output stage {s + 1} has {co} channels but input stage {s + 1} has {ci}; "
                    "an output stage must match its input stage"
                )
        if any(c % c_m for c in ins) or tuple(c // c_m for c in ins) not in self.combos:
            return (
                f"input channels {tuple(ins)} are not C_m={c_m} times an allowed multiplier "
                f"combination; allowed: {self.combos}"
            )
        return None

    def constraint_ok(self, modules: Sequence[SDModule]) -> bool:
        """Do 8 modules (units 0-7) satisfy the channel constraints?"""
        if len(modules) != self.n_units or not all(isinstance(m, SDModule) for m in modules):
            return False
        return self._channel_error(modules) is None

    def assemble(self, modules: Sequence[SDModule], **globals_: object) -> SDArch:
        """Build the architecture; C_m is stage 1's channels, so no globals are taken."""
        if globals_:
            raise ValueError(
                f"{self.name}: modules carry their channels; unexpected globals {sorted(globals_)}"
            )
        if len(modules) != self.n_units:
            raise ValueError(f"{self.name}: need {self.n_units} modules, got {len(modules)}")
        for u, m in enumerate(modules):
            if not isinstance(m, SDModule):
                raise ValueError(f"{self.name}: unit {u} module must be an SDModule, got {type(m).__name__}")
            if not _is_int(m.channels):
                raise ValueError(f"{self.name}: unit {u} channels must be an int, got {m.channels!r}")
        err = self._channel_error(modules)
        if err:
            raise ValueError(f"{self.name}: {err}")
        c_m = int(modules[0].channels)
        combo = tuple(int(m.channels) // c_m for m in modules[:N_STAGES])
        return self.validate(
            SDArch(
                c_m,
                combo,
                tuple(m.blocks for m in modules[:N_STAGES]),
                tuple(m.blocks for m in modules[N_STAGES:]),
            )
        )

    # -------------------------------------------------------------- sampling
    def sample(self, rng: np.random.Generator) -> SDArch:
        """Uniform over the space: C_m, combination, then one pattern per unit."""
        c_m = self.c_ms[int(rng.integers(len(self.c_ms)))]
        combo = self.combos[int(rng.integers(len(self.combos)))]
        pats = tuple(p[int(rng.integers(len(p)))] for p in self._patterns)
        return SDArch(c_m, combo, pats[:N_STAGES], pats[N_STAGES:])

    def sample_module(self, unit: int, rng: np.random.Generator) -> SDModule:
        self._check_unit(unit)
        c_m = self.c_ms[int(rng.integers(len(self.c_ms)))]
        combo = self.combos[int(rng.integers(len(self.combos)))]
        pats = self._patterns[unit]
        return SDModule(c_m * combo[self.unit_stage(unit)[1] - 1], pats[int(rng.integers(len(pats)))])

    def base_arch(self) -> SDArch:
        """The base model: C_m 256, [1,2,3,4], no removal, every allowed attention kept."""
        full = tuple(max(p, key=lambda b: (len(b), sum(b))) for p in self._patterns)
        return self.validate(SDArch(BASE_C_M, BASE_MULTIPLIERS, full[:N_STAGES], full[N_STAGES:]))

    # ------------------------------------------------------------ validation
    def _blocks(self, arch_part: object, section: str) -> tuple[Blocks, ...]:
        if not isinstance(arch_part, (tuple, list)) or len(arch_part) != N_STAGES:
            raise ValueError(
                f"{self.name}: {section}s must be {N_STAGES} stages of attention flags, got {arch_part!r}"
            )
        out = []
        for s, blocks in enumerate(arch_part):
            where = f"{section} stage {s + 1}"
            if not isinstance(blocks, (tuple, list)) or not all(_is_bool(a) for a in blocks):
                raise ValueError(
                    f"{self.name}: {where} must be a tuple of bools (one per ResConv), got {blocks!r}"
                )
            blocks = tuple(bool(a) for a in blocks)
            allowed_res = INPUT_RES if section == "input" else OUTPUT_RES
            if len(blocks) not in allowed_res:
                raise ValueError(
                    f"{self.name}: {where} has {len(blocks)} residual blocks; allowed: {allowed_res}"
                )
            if any(blocks) and s + 1 not in ATTENTION_STAGES:
                raise ValueError(
                    f"{self.name}: {where} has attention; attention is only allowed in stages "
                    f"{ATTENTION_STAGES} (stage 1 has none, stage 2's is always removed)"
                )
            if section == "input" and any(blocks) and not all(blocks):
                raise ValueError(
                    f"{self.name}: {where} attention {blocks} must follow every ResConv or none"
                )
            out.append(blocks)
        return tuple(out)

    def validate(self, arch: object) -> SDArch:
        if not isinstance(arch, SDArch):
            raise ValueError(f"{self.name}: expected an SDArch, got {type(arch).__name__}")
        if not _is_int(arch.c_m):
            raise ValueError(f"{self.name}: C_m must be an int, got {arch.c_m!r}")
        if arch.c_m not in self.c_ms:
            raise ValueError(f"{self.name}: C_m {arch.c_m} not allowed; allowed: {self.c_ms}")
        mults = arch.multipliers
        if not isinstance(mults, (tuple, list)) or not all(_is_int(m) for m in mults):
            raise ValueError(f"{self.name}: multipliers must be a tuple of ints, got {mults!r}")
        mults = tuple(int(m) for m in mults)
        if mults not in self.combos:
            raise ValueError(
                f"{self.name}: multipliers {mults} are not an allowed combination; allowed: {self.combos}"
            )
        inputs = self._blocks(arch.inputs, "input")
        return SDArch(int(arch.c_m), mults, inputs, self._blocks(arch.outputs, "output"))

    def _check_module(self, unit: int, module: object) -> None:
        self._check_unit(unit)
        if not isinstance(module, SDModule):
            raise ValueError(f"{self.name}: expected an SDModule, got {type(module).__name__}")
        if module.channels not in self._channels[unit]:
            raise ValueError(
                f"{self.name}: unit {unit} {self.unit_stage(unit)} never has {module.channels} channels; "
                f"allowed: {self._channels[unit]}"
            )
        if module.blocks not in self._pattern_sets[unit]:
            raise ValueError(
                f"{self.name}: unit {unit} {self.unit_stage(unit)} blocks {module.blocks!r} not allowed; "
                f"allowed: {self._patterns[unit]}"
            )

    # ------------------------------------------------------------- encodings
    def to_string(self, arch: SDArch) -> str:
        arch = self.validate(arch)

        def field(stages: tuple[Blocks, ...]) -> str:
            return ",".join("".join("RA" if a else "R" for a in b) for b in stages)

        mults = ",".join(str(m) for m in arch.multipliers)
        return f"{arch.c_m}|{mults}|{field(arch.inputs)}|{field(arch.outputs)}"

    def from_string(self, text: str) -> SDArch:
        if not isinstance(text, str):
            raise ValueError(f"{self.name}: architecture string must be str, got {type(text).__name__}")
        if len(text) > MAX_ARCH_CHARS:
            raise ValueError(f"{self.name}: {echo(text)} is longer than any architecture string "
                             f"({MAX_ARCH_CHARS} characters at most)")
        form = "'C_m|m1,m2,m3,m4|in1,..,in4|out1,..,out4' with stages like 'RARA'"
        fields = text.strip().split("|")
        if len(fields) != 4:
            raise ValueError(f"{self.name}: {echo(text)} has {len(fields)} '|'-fields; expected 4: {form}")
        if not _INT_RE.fullmatch(fields[0]):
            raise ValueError(f"{self.name}: C_m {echo(fields[0])} in {echo(text)} is not an integer")
        mults = fields[1].split(",")
        if len(mults) != N_STAGES or not all(_INT_RE.fullmatch(m) for m in mults):
            raise ValueError(f"{self.name}: multipliers {echo(fields[1])} in {echo(text)} must be 4 integers")
        parts = []
        for section, fld in (("input", fields[2]), ("output", fields[3])):
            toks = fld.split(",")
            if len(toks) != N_STAGES:
                raise ValueError(
                    f"{self.name}: {section} field {echo(fld)} has {len(toks)} stages; expected {N_STAGES}"
                )
            stages = []
            for s, tok in enumerate(toks):
                if not _STAGE_RE.fullmatch(tok):
                    raise ValueError(
                        f"{self.name}: {section} stage {s + 1} is {echo(tok)}; expected ResConvs 'R' each "
                        "optionally followed by an attention 'A', e.g. 'RARA'"
                    )
                stages.append(tuple(a == "RA" for a in re.findall(r"RA?", tok)))
            parts.append(tuple(stages))
        return self.validate(SDArch(int(fields[0]), tuple(int(m) for m in mults), parts[0], parts[1]))

    # ----------------------------------------------------------------- graphs
    def graph(self, arch: SDArch) -> tuple[list[Node], list[Edge]]:
        """Nodes in forward order and edges: the chain plus one long skip per stage.

        A long skip runs from input stage s's last node before its Downsample to
        the first node of output stage s.
        """
        arch = self.validate(arch)
        ch = arch.channels
        nodes: list[Node] = []
        skip_src: dict[int, int] = {}
        for s in range(1, N_STAGES + 1):
            nodes += _stage_nodes("input", s, ch[s - 1], arch.inputs[s - 1])
            skip_src[s] = len(nodes) - 1 - int(s < N_STAGES)
        mid = arch.middle_channels
        for op in ("ResConv", "Attention", "ResConv"):
            nodes.append({"op": op, "channels": mid, "section": "middle", "stage": MIDDLE_STAGE})
        skips = {}
        for s in range(N_STAGES, 0, -1):
            skips[s] = (skip_src[s], len(nodes))
            nodes += _stage_nodes("output", s, ch[s - 1], arch.outputs[s - 1])
        edges = _chain_edges(len(nodes)) + [skips[s] for s in range(1, N_STAGES + 1)]
        return nodes, edges

    def module_graph(self, unit: int, module: SDModule) -> tuple[list[Node], list[Edge]]:
        """The standalone chain of nodes ``module`` contributes in ``unit``."""
        self._check_module(unit, module)
        section, stage = self.unit_stage(unit)
        nodes = _stage_nodes(section, stage, module.channels, module.blocks)
        return nodes, _chain_edges(len(nodes))

    # ----------------------------------------------------------------- misc
    def _check_unit(self, unit: int) -> None:
        if not _is_int(unit) or not 0 <= unit < 2 * N_STAGES:
            raise ValueError(f"{self.name}: unit {unit!r} out of range 0..{2 * N_STAGES - 1}")

    def __repr__(self) -> str:
        return f"SDSpace({self.name!r}, size={self.size():,})"


def sd_unet() -> SDSpace:
    """Sec. 7.9 space: C_m in {128, 192, 256}, all 8 combinations (884,736 archs)."""
    return SDSpace("sd", C_M_CHOICES, MULTIPLIER_COMBOS)


def sd_unet_hw() -> SDSpace:
    """Sec. 7.10 space: C_m = 256, combinations elementwise <= [1,2,3,4] (110,592 archs)."""
    small = [c for c in MULTIPLIER_COMBOS if all(m <= b for m, b in zip(c, BASE_MULTIPLIERS))]
    return SDSpace("sd-hw", (BASE_C_M,), small)
