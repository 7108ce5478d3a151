"""study.depth: this benchmark's depth effect beside Table 2, and a note that follows the numbers."""
import numpy as np

from autobuild_lib.core.scoring import label_moments
from autobuild_lib.core.spaces import mbv3
from autobuild_lib.study.depth import LITTLE, depth_note, depth_srcc, table2_side_by_side


def _archs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    sp = mbv3()
    return sp, [sp.sample(rng) for _ in range(n)]


def test_side_by_side_puts_table_2_beside_the_measured_means():
    sp, archs = _archs()
    y = np.array([70.0 + 0.5 * a.n_layers for a in archs])  # deeper is better
    side = table2_side_by_side(label_moments(sp, archs, y), "mbv3")
    assert list(side.index) == [1, 2, 3, 4, 5]
    assert np.allclose(side["paper l=2"], 77.0) and np.isclose(side.loc[4, "paper l=4"], 77.41)
    assert (side["this study gain"] > 0).all()
    assert side.loc[1, "this study gain"] == side.loc[1, "this study l=4"] - side.loc[1, "this study l=2"]
    assert table2_side_by_side(label_moments(sp, archs, y), "pn")["paper l=4"].isna().all()


def test_note_says_depth_matters_little_only_when_the_srcc_is_small():
    sp, archs = _archs()
    rng = np.random.default_rng(1)
    deep = np.array([a.n_layers for a in archs], float)
    noise = rng.normal(size=len(archs))
    for y, little in ((deep + 0.1 * noise, False), (noise, True)):
        r = depth_srcc(archs, y)
        assert (r < LITTLE) == little
        side = table2_side_by_side(label_moments(sp, archs, y), "mbv3")
        note = depth_note({"mbv3": r}, side, "mini-ofa")
        assert f"{r:.2f} (mbv3)" in note and "+0.08 to +0.41" in note
        assert ("Depth matters little" in note) == little and ("56 px" in note) == little
        assert ("as in the paper" in note) == (not little)
    assert "56 px" not in depth_note({"mbv3": 0.01}, side, "autobuild-release")


def test_depth_srcc_is_nan_for_a_constant_label():
    _, archs = _archs(50)
    assert np.isnan(depth_srcc(archs, np.ones(50)))
