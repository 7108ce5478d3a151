import numpy as np
import pytest

from autobuild_lib.core.spaces import OFAArch, get_space, mbv3, mbv3_insight, pn


def test_module_counts_and_sizes():
    m, p = mbv3(), pn()
    assert [m.n_modules(u) for u in range(5)] == [7371] * 5
    assert [p.n_modules(u) for u in range(5)] == [7371] * 4 + [66339]
    assert sum(m.n_modules(u) for u in range(5)) == 36855
    assert sum(p.n_modules(u) for u in range(5)) == 95823
    assert f"{float(m.size()):.3g}" == "2.18e+19"
    assert f"{float(p.size()):.3g}" == "1.96e+20"
    assert sum(1 for _ in m.modules(0)) == 7371


def test_insight_space_sizes():
    assert f"{float(mbv3_insight('gpu').size()):.2g}" == "4.7e+14"
    assert f"{float(mbv3_insight('cpu').size()):.2g}" == "2.9e+16"
    assert f"{float(mbv3_insight('npu').size()):.2g}" == "8.9e+15"
    with pytest.raises(ValueError, match="gpu, cpu or npu"):
        mbv3_insight("tpu")


@pytest.mark.parametrize("name", ["mbv3", "pn"])
def test_round_trips_1000(name):
    sp = get_space(name)
    rng = np.random.default_rng(1)
    for _ in range(1000):
        a = sp.sample(rng)
        s = sp.to_string(a)
        assert sp.from_string(s) == a
        assert sp.from_released(sp.to_released(a)) == a
        assert sp.assemble(sp.split(a), resolution=a.resolution) == a


def test_released_form_and_pn_layout():
    p = pn()
    a = p.sample(np.random.default_rng(0))
    res, stages = p.to_released(a)
    assert len(stages) == 6 and len(stages[-1]) == 1
    assert all(b.startswith("mbconv2_e") for st in stages for b in st)
    last = p.split(a)[-1]
    assert 3 <= len(last) <= 5
    assert mbv3().to_released(mbv3().sample(np.random.default_rng(0)))[1][0][0].startswith("mbconv3_")


def test_sampler_is_seeded_and_covers_choices():
    sp = mbv3()
    a = [sp.to_string(sp.sample(np.random.default_rng(5))) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    archs = [sp.sample(rng) for _ in range(600)]
    assert {x.resolution for x in archs} == {192, 208, 224}
    assert {len(s) for x in archs for s in x.stages} == {2, 3, 4}


@pytest.mark.parametrize("bad, match", [
    ("224|k3e4", "expected 5"),
    ("224|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k9e4", r"stage 5 layer 2 .*allowed"),
    ("224|k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4", "stage 1 has 1 layers; allowed"),
    ("200|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4", "resolution 200"),
    ("abc|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4", "not a plain integer"),
    ("224|k3e4,x|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4|k3e4,k3e4", r"stage 1 layer 2 is 'x'"),
])
def test_bad_strings(bad, match):
    with pytest.raises(ValueError, match=match):
        mbv3().from_string(bad)


def test_bad_released_and_objects():
    sp = mbv3()
    with pytest.raises(ValueError, match="mbconv3"):
        sp.from_released((224, [["mbconv2_e3_k3"] * 2] * 5))
    with pytest.raises(ValueError, match="resolution, stages"):
        sp.from_released("224")
    with pytest.raises(ValueError, match="expected an OFAArch"):
        sp.validate("224|...")
    with pytest.raises(ValueError, match="need 5 modules"):
        sp.assemble([((3, 3), (3, 3))])
    with pytest.raises(ValueError, match="unit 7 out of range"):
        sp.n_modules(7)
    with pytest.raises(ValueError, match="unknown space"):
        get_space("resnet")
    assert isinstance(sp.validate(OFAArch(224, (((3, 3), (3, 3)),) * 5)), OFAArch)
