"""Mini-SD benchmark pieces: U-Net topology and inheritance, masks, diffusion, labelling, generation."""
import numpy as np
import pytest
import torch

from autobuild_lib.benchmarks.minisd import (
    FeatureNet,
    MiniSDConfig,
    MiniUNet,
    Schedule,
    count_cost,
    ddim_inpaint,
    eval_masks,
    fid_metric,
    inherit,
    label_variant,
    random_masks,
    train_unet,
)
from autobuild_lib.benchmarks.minisd.generate import benchmark_archs, generate
from autobuild_lib.benchmarks.minisd.masks import PAD
from autobuild_lib.core.spaces import get_space

SD = get_space("sd")


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1


def test_base_and_random_variants_predict_noise_of_input_shape():
    rng = np.random.default_rng(0)
    x = _images(2)
    for arch in [SD.base_arch()] + [SD.sample(rng) for _ in range(3)]:
        m = MiniUNet(arch, divisor=16)
        out = m(x, torch.tensor([0, 999]), torch.zeros_like(x), x)
        assert out.shape == x.shape


def test_dropped_blocks_are_absent_and_attention_follows_the_arch():
    arch = SD.from_string("128|1,1,2,2|R,R,R,RA|RR,RR,RAR,RRA")
    m = MiniUNet(arch, divisor=16)
    assert len(m.inputs[0].res) == 1 and len(m.outputs[0].res) == 2
    assert set(m.inputs[3].attn) == {"0"} and set(m.inputs[2].attn) == set()
    assert set(m.outputs[2].attn) == {"0"} and set(m.outputs[3].attn) == {"1"}
    assert m.inputs[0].res[0].conv1.out_channels == 8


def test_channels_not_divisible_raise():
    with pytest.raises(ValueError, match="divisible"):
        MiniUNet(SD.base_arch(), divisor=3)


def test_inherit_copies_leading_slices_and_keeps_extra_channels_fresh():
    torch.manual_seed(0)
    base = MiniUNet(SD.base_arch(), divisor=16)
    # stage 2 has 3x C_m here but 2x C_m in the base: 8 of 24 output channels of its convs stay fresh
    arch = SD.from_string("256|1,3,4,2|RR,R,RA,R|RR,RR,RRR,RR")
    torch.manual_seed(1)
    var = MiniUNet(arch, divisor=16)
    before = var.inputs[1].res[0].conv2.weight.detach().clone()
    counts = inherit(var, base)
    w, bw = var.inputs[1].res[0].conv2.weight, base.inputs[1].res[0].conv2.weight
    assert torch.equal(w[:32, :32], bw[:32, :32])
    assert torch.equal(w[32:], before[32:])
    assert counts["copied"] > 0 and counts["fresh"] > 0
    full = MiniUNet(SD.base_arch(), divisor=16)
    assert inherit(full, base)["fresh"] == 0
    x = _images(2)
    args = (x, torch.tensor([3, 500]), torch.zeros_like(x), x)
    assert torch.equal(full(*args), base(*args))


def test_masks_are_fixed_inside_the_image_and_random_masks_are_seeded():
    m = eval_masks(8)
    assert m.shape == (8, 1, 32, 32) and torch.equal(m[0], m[4]) and not torch.equal(m[0], m[1])
    border = torch.ones(32, 32, dtype=torch.bool)
    border[PAD:32 - PAD, PAD:32 - PAD] = False
    r = random_masks(200, torch.Generator().manual_seed(0))
    assert m[:, :, border].sum() == 0 and r[:, :, border].sum() == 0
    assert torch.equal(r, random_masks(200, torch.Generator().manual_seed(0)))
    assert 0.05 < r.mean() < 0.6 and (r.sum((1, 2, 3)) >= 36).all()


def test_ddim_inpaint_keeps_known_pixels_and_validates_steps():
    torch.manual_seed(0)
    model = MiniUNet(SD.base_arch(), divisor=16).eval()
    x, mask = _images(3), eval_masks(3)
    out = ddim_inpaint(model, Schedule(), x, mask, torch.randn(x.shape), n_steps=2)
    assert torch.equal(out[mask == 0], x[mask == 0]) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="n_steps"):
        ddim_inpaint(model, Schedule(), x, mask, torch.randn(x.shape), n_steps=0)
    with pytest.raises(ValueError, match="schedule"):
        Schedule(beta_start=0.1, beta_end=0.01)


def test_train_unet_resumes_exactly_and_learns():
    imgs = _images(64)
    torch.manual_seed(0)
    a = MiniUNet(SD.base_arch(), divisor=16)
    b = MiniUNet(SD.base_arch(), divisor=16)
    b.load_state_dict(a.state_dict())
    train_unet(a, imgs, 4, 1e-3, 4, seed=3)
    state = train_unet(b, imgs, 2, 1e-3, 4, seed=3)
    train_unet(b, imgs, 4, 1e-3, 4, seed=3, start=2, opt_state=state)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_label_variant_is_deterministic_and_reports_cost():
    cfg = MiniSDConfig(ft_steps=2, batch=4, n_eval=12, ddim_steps=2)
    torch.manual_seed(0)
    base = MiniUNet(SD.base_arch(), divisor=16).eval()
    clf = FeatureNet().eval()
    imgs, ev = _images(32), _images(12, seed=1)
    arch = SD.from_string("128|1,1,2,2|R,R,R,RA|RR,RR,RAR,RRA")
    r1 = label_variant(arch, base, imgs, ev, clf, cfg, seed=0)
    r2 = label_variant(arch, base, imgs, ev, clf, cfg, seed=0, metric=fid_metric(clf, ev))
    assert r1["fid"] == pytest.approx(r2["fid"], rel=1e-6) and r1["hole_mse"] == r2["hole_mse"]
    assert set(r1) >= {"fid", "hole_mse", "flops", "n_params", "finetune_s", "eval_s"}
    assert count_cost(MiniUNet(SD.base_arch(), 16))["flops"] > r1["flops"] > 0


def test_fid_of_a_set_against_itself_is_near_zero():
    clf = FeatureNet().eval()
    ev = _images(300)
    m = fid_metric(clf, ev)
    m.update(ev, real=False)
    assert abs(float(m.compute())) < 1e-2


def test_config_and_generation_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown MiniSDConfig fields"):
        MiniSDConfig().replace(bogus=1)
    with pytest.raises(ValueError, match="unknown stages"):
        generate(["train"], root=tmp_path)
    with pytest.raises(FileNotFoundError, match="run the 'classifier' and 'base' stages"):
        generate(["labels"], root=tmp_path, progress=False)
    archs = benchmark_archs("sd", 68)
    assert archs[0] == SD.base_arch() and len({SD.to_string(a) for a in archs}) == 68
    assert benchmark_archs("sd", 10) == archs[:10]


def test_constructions_stage_builds_labels_and_keeps_samples(tmp_path):
    """The Sec. 5.3 stage end to end on a random base, random classifier and 20 fake labels."""
    from autobuild_lib.benchmarks.minisd import generate as gen
    from autobuild_lib.core.training import TrainConfig

    cfg = MiniSDConfig(ft_steps=1, batch=2, n_eval=8, ddim_steps=1)
    torch.manual_seed(0)
    torch.save(MiniUNet(SD.base_arch(), cfg.divisor).state_dict(), tmp_path / "base.pt")
    torch.save(FeatureNet().state_dict(), tmp_path / "classifier.pt")
    archs = benchmark_archs("sd", 20)
    fid = np.array([a.c_m / 64 + sum(a.multipliers) for a in archs], dtype=float)
    import pandas as pd
    pd.DataFrame({"arch": [SD.to_string(a) for a in archs], "fid": fid}).to_csv(tmp_path / "sd.csv", index=False)
    rep = gen._constructions("sd", tmp_path, cfg, 1, False, ensemble=dict(
        seeds=(0,), config=TrainConfig(epochs=2, n_layers=6), max_archs=300))
    out = pd.read_csv(tmp_path / "constructed-sd.csv")
    assert list(out["method"].unique()) == ["autobuild", "es"] and (out.groupby("method").size() == 4).all()
    assert np.isfinite(out["fid"]).all()
    fe = pd.read_csv(tmp_path / "fe-scores-sd.csv")
    assert {"op", "channels", "section", "stage"} <= set(fe["feature"]) and fe["fold"].nunique() == 5
    npz = np.load(tmp_path / "samples-sd.npz")
    assert npz["real"].shape == (8, 1, 32, 32) == npz[f"arch_{len(npz['archs']) - 1}"].shape
    import json
    k_used = json.loads((tmp_path / "construction-sd.json").read_text())["k_used"]
    assert k_used["autobuild"] in (5, 10, 20, 40, 80)  # doubled until the channels agree
    for key, check in rep["samples"].items():
        assert check["fid_again"] == pytest.approx(check["fid_label"], rel=1e-5), key
    gen._worker_state.cache_clear()


def test_hw_stages_end_to_end(tmp_path, monkeypatch):
    """Sec. 7.10 stages on a random base: labels (1.5x budget), latency rounds, three methods x 3 metrics."""
    import json

    import pandas as pd

    from autobuild_lib.benchmarks.minisd import generate as gen
    from autobuild_lib.core.training import TrainConfig

    monkeypatch.setitem(gen.N_LABELS, "sd-hw", 12)
    monkeypatch.setattr(gen, "LATENCY_ROUNDS", 2)
    monkeypatch.setattr(gen, "LATENCY_REPEATS", 2)
    cfg = MiniSDConfig(ft_steps=2, batch=2, n_eval=8, ddim_steps=1)
    assert gen.hw_config(cfg).ft_steps == 3
    torch.manual_seed(0)
    torch.save(MiniUNet(SD.base_arch(), cfg.divisor).state_dict(), tmp_path / "base.pt")
    torch.save(FeatureNet().state_dict(), tmp_path / "classifier.pt")
    gen._labels("sd-hw", tmp_path, gen.hw_config(cfg), 1, False)
    frame = pd.read_csv(tmp_path / "sd-hw.csv")
    assert len(frame) == 12 and frame["arch"].iloc[0] == get_space("sd-hw").to_string(get_space("sd-hw").base_arch())
    info = gen._hw_latency(tmp_path, cfg, False)
    lat = json.loads((tmp_path / "latency-sd-hw.json").read_text())
    assert set(lat["latency_cpu"]) == set(frame["arch"]) and info["rounds"] == 2
    gen._hw_constructions(tmp_path, cfg, 1, False, ensemble=dict(
        seeds=(0,), n_folds=3, config=TrainConfig(epochs=2, n_layers=6), max_archs=200))
    out = pd.read_csv(tmp_path / "constructed-sd-hw.csv")
    assert set(out["metric"]) == set(gen.HW_METRICS) and set(out["method"]) == set(gen.HW_METHODS)
    assert out.notna().all().all() and (out["latency_cpu"] > 0).all()
    frame["latency_cpu"] = frame["arch"].map(lat["latency_cpu"])
    y = gen.hw_label(frame, "flops")
    assert np.isclose(y.mean(), 0) and np.argmax(y) == np.argmin(
        (frame["fid"] - frame["fid"].mean()) / frame["fid"].std(ddof=0)
        + (frame["flops"] - frame["flops"].mean()) / frame["flops"].std(ddof=0))
    with pytest.raises(ValueError, match="unknown metric"):
        gen.hw_label(frame, "acc")
    gen._worker_state.cache_clear()
