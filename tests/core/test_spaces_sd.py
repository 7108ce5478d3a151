"""Tests of the SD v1.4 inpainting U-Net spaces (autobuild_lib.core.spaces.sd)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from math import prod

import numpy as np
import pytest

from autobuild_lib.core.spaces import get_space
from autobuild_lib.core.spaces.sd import (
    BASE_MULTIPLIERS,
    MIDDLE_STAGE,
    MULTIPLIER_COMBOS,
    OPS,
    SDArch,
    SDModule,
    sd_unet,
    sd_unet_hw,
)

BASE = "256|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA"
SMALLEST = "256|1,2,3,4|R,R,R,R|RR,RR,RR,RR"


# ----------------------------------------------------------------- counts
def test_multiplier_combos():
    assert len(MULTIPLIER_COMBOS) == 8 == len(set(MULTIPLIER_COMBOS))
    for c in [(1, 2, 3, 4), (1, 1, 2, 4), (1, 3, 4, 2)]:
        assert c in MULTIPLIER_COMBOS
    assert all(c[0] == 1 for c in MULTIPLIER_COMBOS)


def test_sizes_exact_and_close_to_paper(sd, hw):
    assert [len(sd.block_patterns(u)) for u in range(8)] == [2, 2, 4, 4, 2, 2, 12, 12]
    per_combo = prod(len(sd.block_patterns(u)) for u in range(8))
    assert per_combo == 36_864
    assert sd.size() == 3 * 8 * per_combo == 884_736
    assert hw.c_ms == (256,)
    assert len(hw.combos) == 3
    assert all(all(m <= b for m, b in zip(c, BASE_MULTIPLIERS)) for c in hw.combos)
    assert hw.size() == 1 * 3 * per_combo == 110_592
    # paper: "about 800k" and "about 100k"
    assert abs(sd.size() / 800_000 - 1) < 0.15
    assert abs(hw.size() / 100_000 - 1) < 0.15


def test_enumerate_hw_matches_size_and_is_unique(hw):
    archs = list(hw.enumerate_archs())
    assert len(archs) == hw.size()
    strings = [hw.to_string(a) for a in archs[::97]]
    assert all(hw.from_string(s) == a for s, a in zip(strings, archs[::97]))
    assert len({(a.c_m, a.multipliers, a.inputs, a.outputs) for a in archs}) == hw.size()
    assert archs[0] == next(iter(hw.enumerate_archs()))  # deterministic order


def test_enumerate_sd_matches_size_fast(sd):
    t0 = time.perf_counter()
    n = sum(1 for _ in sd.enumerate_archs())
    assert n == sd.size()
    assert time.perf_counter() - t0 < 30


def test_modules_enumeration(sd, hw):
    for sp in (sd, hw):
        for u in range(sp.n_units):
            mods = list(sp.modules(u))
            assert mods == list(sp.modules(u))
            assert len(mods) == len(set(mods)) == sp.n_modules(u)
    assert [sd.n_modules(u) for u in range(8)] == [6, 16, 24, 24, 6, 16, 72, 72]
    assert sd.unit_channels(0) == (128, 192, 256)
    assert hw.unit_channels(1) == (256, 512)


def test_get_space_names():
    assert get_space("sd").size() == 884_736
    assert get_space("sd-hw").size() == 110_592


# ------------------------------------------------------------ round trips
@pytest.mark.parametrize("factory", [sd_unet, sd_unet_hw])
def test_string_and_split_round_trip(factory):
    sp = factory()
    rng = np.random.default_rng(7)
    unit_modules = [set(sp.modules(u)) for u in range(sp.n_units)]
    for _ in range(1000):
        a = sp.sample(rng)
        assert sp.validate(a) == a
        s = sp.to_string(a)
        assert sp.from_string(s) == a
        assert sp.to_string(sp.from_string(s)) == s
        mods = sp.split(a)
        assert len(mods) == 8
        assert all(m in unit_modules[u] for u, m in enumerate(mods))
        assert sp.constraint_ok(mods)
        assert sp.assemble(mods) == a


def test_base_string(sd, hw):
    assert sd.to_string(sd.base_arch()) == BASE
    assert hw.base_arch() == sd.base_arch()
    assert sd.base_arch().channels == (256, 512, 768, 1024)


def test_validate_canonicalises_lists(sd):
    a = sd.from_string(BASE)
    b = SDArch(256, [1, 2, 3, 4], [list(x) for x in a.inputs], list(a.outputs))
    assert sd.validate(b) == a
    assert hash(sd.validate(b)) == hash(a)


# ---------------------------------------------------------------- sampling
def test_sample_deterministic(sd):
    a = [sd.to_string(sd.sample(np.random.default_rng(3))) for _ in range(2)]
    assert a[0] == a[1]
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [sd.sample(r1) for _ in range(20)] == [sd.sample(r2) for _ in range(20)]
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    for u in range(8):
        m = sd.sample_module(u, r1)
        assert m == sd.sample_module(u, r2)
        assert m in set(sd.modules(u))


def test_sample_covers_choices(sd):
    rng = np.random.default_rng(0)
    archs = [sd.sample(rng) for _ in range(3000)]
    assert set(a.c_m for a in archs) == {128, 192, 256}
    assert set(a.multipliers for a in archs) == set(MULTIPLIER_COMBOS)
    assert len(set(a.outputs[3] for a in archs)) == 12


# ------------------------------------------------------------------ errors
def test_validate_errors(sd, hw):
    a = sd.from_string(BASE)
    with pytest.raises(ValueError, match="not an allowed combination"):
        sd.validate(replace(a, multipliers=(1, 2, 2, 2)))
    with pytest.raises(ValueError, match="C_m 128 not allowed"):
        hw.validate(replace(a, c_m=128))
    with pytest.raises(ValueError, match=r"not an allowed combination.*\(1, 2, 3, 4\)"):
        hw.validate(replace(a, multipliers=(1, 3, 4, 2)))
    with pytest.raises(ValueError, match="input stage 2 has attention"):
        sd.validate(replace(a, inputs=(a.inputs[0], (True, True)) + a.inputs[2:]))
    with pytest.raises(ValueError, match="output stage 2 has attention"):
        sd.validate(replace(a, outputs=(a.outputs[0], (False, True, False)) + a.outputs[2:]))
    with pytest.raises(ValueError, match="output stage 1 has attention"):
        sd.validate(replace(a, outputs=((True, False),) + a.outputs[1:]))
    with pytest.raises(ValueError, match="every ResConv or none"):
        sd.validate(replace(a, inputs=a.inputs[:2] + ((True, False), a.inputs[3])))
    with pytest.raises(ValueError, match="input stage 1 has 3 residual blocks"):
        sd.validate(replace(a, inputs=((False,) * 3,) + a.inputs[1:]))
    with pytest.raises(ValueError, match="output stage 4 has 1 residual blocks"):
        sd.validate(replace(a, outputs=a.outputs[:3] + ((True,),)))
    with pytest.raises(ValueError, match="expected an SDArch"):
        sd.validate(BASE)


def test_validate_type_errors(sd):
    a = sd.from_string(BASE)
    with pytest.raises(ValueError, match="C_m must be an int"):
        sd.validate(replace(a, c_m=256.0))
    with pytest.raises(ValueError, match="C_m must be an int"):
        sd.validate(replace(a, c_m=True))
    with pytest.raises(ValueError, match="multipliers must be a tuple of ints"):
        sd.validate(replace(a, multipliers=("1", "2", "3", "4")))
    with pytest.raises(ValueError, match="tuple of bools"):
        sd.validate(replace(a, inputs=((0, 0),) + a.inputs[1:]))
    with pytest.raises(ValueError, match="outputs must be 4 stages"):
        sd.validate(replace(a, outputs=a.outputs[:3]))


@pytest.mark.parametrize(
    "text, msg",
    [
        ("256|1,2,3,4|RR,RR,RARA,RARA", "expected 4"),
        ("x256|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA", "not an integer"),
        ("256|1,2,3|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA", "must be 4 integers"),
        ("256|1,2,3,4|RR,RR,RARA|RRR,RRR,RARARA,RARARA", "has 3 stages"),
        ("256|1,2,3,4|RR,RR,ARAR,RARA|RRR,RRR,RARARA,RARARA", "input stage 3 is 'ARAR'"),
        ("256|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RAARA,RARARA", "output stage 3 is 'RAARA'"),
        ("256|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RARARA,", "output stage 4 is ''"),
        ("256|1,2,2,2|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA", "not an allowed combination"),
        ("100|1,2,3,4|RR,RR,RARA,RARA|RRR,RRR,RARARA,RARARA", "C_m 100 not allowed"),
        ("256|1,2,3,4|RR,RARA,RARA,RARA|RRR,RRR,RARARA,RARARA", "input stage 2 has attention"),
    ],
)
def test_from_string_errors(sd, text, msg):
    with pytest.raises(ValueError, match=msg):
        sd.from_string(text)


def test_from_string_type_error(sd):
    with pytest.raises(ValueError, match="must be str"):
        sd.from_string(b"256|1,2,3,4")


def test_assemble_errors(sd):
    mods = sd.split(sd.from_string(BASE))
    bad = list(mods)
    bad[6] = SDModule(512, mods[6].blocks)  # output stage 3 at 512, input stage 3 at 768
    assert not sd.constraint_ok(bad)
    with pytest.raises(ValueError, match="output stage 3 has 512 channels but input stage 3 has 768"):
        sd.assemble(bad)
    bad = list(mods)
    bad[1] = bad[5] = SDModule(256, mods[1].blocks)  # multipliers (1, 1, 3, 4)
    assert not sd.constraint_ok(bad)
    with pytest.raises(ValueError, match="not C_m=256 times an allowed multiplier combination"):
        sd.assemble(bad)
    bad = list(mods)
    bad[0] = bad[4] = SDModule(320, mods[0].blocks)
    with pytest.raises(ValueError, match="input stage 1 has 320 channels; it must equal C_m"):
        sd.assemble(bad)
    bad = list(mods)
    bad[2] = SDModule(768 + 1, mods[2].blocks)
    bad[6] = SDModule(768 + 1, mods[6].blocks)
    assert not sd.constraint_ok(bad)
    with pytest.raises(ValueError, match="need 8 modules"):
        sd.assemble(mods[:7])
    with pytest.raises(ValueError, match="unit 3 module must be an SDModule"):
        sd.assemble(mods[:3] + [(1024, (True, True))] + mods[4:])
    with pytest.raises(ValueError, match="unexpected globals"):
        sd.assemble(mods, c_m=256)
    bad = list(mods)
    bad[1] = SDModule(512, (True, True))  # channels fine, stage-2 attention is not
    assert sd.constraint_ok(bad)
    with pytest.raises(ValueError, match="input stage 2 has attention"):
        sd.assemble(bad)
    assert not sd.constraint_ok(mods[:7])


def test_unit_and_module_errors(sd):
    with pytest.raises(ValueError, match="out of range"):
        sd.n_modules(8)
    with pytest.raises(ValueError, match="never has 100 channels"):
        sd.module_graph(0, SDModule(100, (False,)))
    with pytest.raises(ValueError, match="blocks .* not allowed"):
        sd.module_graph(4, SDModule(256, (False,)))


# ------------------------------------------------------------------ graphs
def test_graph_base_topology(sd):
    nodes, edges = sd.graph(sd.from_string(BASE))
    assert len(nodes) == 39 and len(edges) == 42
    assert Counter(n["op"] for n in nodes) == {"ResConv": 22, "Attention": 11, "Downsample": 3, "Upsample": 3}
    assert Counter(n["section"] for n in nodes) == {"input": 15, "middle": 3, "output": 21}
    assert all(set(n) == {"op", "channels", "section", "stage"} and n["op"] in OPS for n in nodes)
    mid = [n for n in nodes if n["section"] == "middle"]
    assert [n["op"] for n in mid] == ["ResConv", "Attention", "ResConv"]
    assert all(n["stage"] == MIDDLE_STAGE and n["channels"] == 1024 for n in mid)
    # forward order: input 1-4, middle, output 4-1
    order = [(n["section"], n["stage"]) for n in nodes]
    assert order == sorted(order, key=lambda k: ({"input": 0, "middle": 1, "output": 2}[k[0]],
                                                 k[1] if k[0] != "output" else -k[1]))
    ups = [n["stage"] for n in nodes if n["op"] == "Upsample"]
    downs = [n["stage"] for n in nodes if n["op"] == "Downsample"]
    assert ups == [4, 3, 2] and downs == [1, 2, 3]


def test_graph_smallest_and_edges(sd):
    nodes, edges = sd.graph(sd.from_string(SMALLEST))
    assert len(nodes) == 7 + 3 + 11 and len(edges) == len(nodes) - 1 + 4


@pytest.mark.parametrize("seed", range(5))
def test_graph_edges_and_module_graphs(sd, seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        a = sd.sample(rng)
        nodes, edges = sd.graph(a)
        n = len(nodes)
        assert all(0 <= s < d < n for s, d in edges)
        assert edges[: n - 1] == [(i, i + 1) for i in range(n - 1)]
        skips = edges[n - 1:]
        assert len(skips) == 4
        for stage, (s, d) in enumerate(skips, start=1):
            assert (nodes[s]["section"], nodes[d]["section"]) == ("input", "output")
            assert nodes[s]["stage"] == nodes[d]["stage"] == stage
            assert nodes[s]["channels"] == nodes[d]["channels"] == a.channels[stage - 1]
            assert nodes[s]["op"] in ("ResConv", "Attention") and nodes[d]["op"] == "ResConv"
        mods = sd.split(a)
        chain: list[dict] = []
        for u in (0, 1, 2, 3, "mid", 7, 6, 5, 4):
            if u == "mid":
                chain += [x for x in nodes if x["section"] == "middle"]
                continue
            mn, me = sd.module_graph(u, mods[u])
            assert len(mn) == sd.n_module_nodes(u, mods[u])
            assert me == [(i, i + 1) for i in range(len(mn) - 1)]
            assert sd.n_module_nodes(u, mods[u]) - 1 in sd.hop_sizes(u)
            chain += mn
        assert chain == nodes


def test_hop_sizes(sd):
    assert [sd.hop_sizes(u) for u in range(8)] == [
        (1, 2), (1, 2), (1, 2, 4), (0, 1, 3), (1, 2), (2, 3), (2, 3, 4, 5, 6), (2, 3, 4, 5, 6)
    ]
