"""Panoptic Fashion-MNIST mosaics: determinism, label consistency, PQ through torchmetrics."""
import pytest
import torch

from autobuild_lib.benchmarks.panoptic import STUFF, make_mosaics, panoptic_quality, to_panoptic


def _garments(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 28, 28, dtype=torch.uint8)
    imgs[:, 6:22, 8:20] = torch.randint(60, 255, (n, 16, 12), generator=g, dtype=torch.uint8)
    return imgs, torch.arange(n) % 10


def test_mosaics_are_deterministic_and_consistent():
    imgs, labs = _garments()
    a = make_mosaics(imgs, labs, 20, seed=3)
    b = make_mosaics(imgs, labs, 20, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.semantic, b.semantic)
    assert not torch.equal(a.images, make_mosaics(imgs, labs, 20, seed=4).images)
    assert a.images.shape == (20, 1, 64, 64) and a.images.min() >= 0 and a.images.max() <= 1
    things = a.instance > 0
    assert (a.semantic[things] < 10).all() and (a.semantic[~things] >= 10).all()
    per = [int(a.instance[i].max()) for i in range(20)]
    assert min(per) >= 1 and max(per) <= 4
    for i in range(20):  # both stuff classes appear in most mosaics
        assert set(a.semantic[i].unique().tolist()) & set(STUFF)


def test_perfect_prediction_has_pq_one_and_errors_lower_it():
    imgs, labs = _garments()
    m = make_mosaics(imgs, labs, 8, seed=0)
    assert panoptic_quality(m.semantic, m.instance, m.semantic, m.instance) == pytest.approx(1.0)
    missed = m.instance == 1  # the first garment of every mosaic predicted as stuff
    sem = torch.where(missed, torch.full_like(m.semantic, 10), m.semantic)
    ins = torch.where(missed, torch.zeros_like(m.instance), m.instance)
    assert panoptic_quality(sem, ins, m.semantic, m.instance) < 0.95
    pan = to_panoptic(m.semantic, m.instance)
    assert pan.shape == (8, 64, 64, 2) and (pan[..., 1][m.semantic >= 10] == 0).all()


def test_bad_inputs():
    imgs, labs = _garments()
    with pytest.raises(ValueError, match="size"):
        make_mosaics(imgs, labs, 2, seed=0, size=40)
    with pytest.raises(ValueError, match="max_things"):
        make_mosaics(imgs, labs, 2, seed=0, max_things=5)
    with pytest.raises(ValueError, match="28, 28"):
        make_mosaics(imgs[:, :20], labs, 2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        to_panoptic(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long))
