"""A small stand-in for the Mini-Panoptic benchmark folder, for tests and notebook smoke runs.

``write_fixture_mini_panoptic(root)`` runs the real generation
(:func:`autobuild_lib.panoptic.generate.generate`, every stage) with a tiny
:class:`~autobuild_lib.panoptic.train.PanopticConfig` and tiny module sizes (:data:`SIZES`: 30
pseudo-labelled architectures, the first 10 fully fine-tuned, 6 in the reliability set with a
40-mosaic reliability curve; the constructions keep the real K = 2, i.e. 32 architectures per
equation, and 300 predictor epochs: seconds at this size) on the real Fashion-MNIST, so the folder
holds every file ``data/mini-panoptic`` holds, in the same format, checked by the same manifest.
The supernet is fine-tuned for 2 steps only: the labels are near-random (generated with
``allow_unreliable``).  Test scaffolding, never study data.  Point a notebook at it with
``AUTOBUILD_MINI_PANOPTIC_DIR=<root>``.

:func:`mini_panoptic_fixture` builds it once per test session (under a minute on one free core).
"""
from __future__ import annotations

from pathlib import Path

from autobuild_lib.manifest import write_manifest
from autobuild_lib.panoptic import generate as gen
from autobuild_lib.panoptic.train import PanopticConfig

TINY = PanopticConfig(n_train=32, n_calib=16, n_val=16, n_test=8, n_val_pool=200, batch_size=8,
                      supernet_steps=2, ft_steps=2)
#: module constants of :mod:`autobuild_lib.panoptic.generate` replaced while the fixture is generated
SIZES = {"N_PSEUDO": 30, "N_FULL": 10, "N_RELIABILITY": 6, "N_NOISE": 40, "NOISE_SIZES": (10, 20, 40)}

_SESSION: dict[str, Path] = {}


def write_fixture_mini_panoptic(root: str | Path, cfg: PanopticConfig = TINY, sizes: dict | None = None) -> Path:
    """Generate every stage into ``root`` with ``cfg`` and ``sizes`` (defaults: :data:`TINY`, :data:`SIZES`)."""
    from autobuild_lib.panoptic.card import write_card

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = {**SIZES, **(sizes or {})}
    unknown = [k for k in sizes if not hasattr(gen, k)]
    if unknown:
        raise ValueError(f"unknown generation constants {unknown}")
    saved = {k: getattr(gen, k) for k in sizes}
    try:
        for k, v in sizes.items():
            setattr(gen, k, v)
        gen._worker_state.cache_clear()
        # the supernet checkpoint goes next to the fixture, never into the repository's .cache/panoptic
        gen.generate(root=root, cfg=cfg, progress=False, work_dir=root.parent / f"{root.name}-work-cache",
                     allow_unreliable=True)
    finally:
        for k, v in saved.items():
            setattr(gen, k, v)
        gen._worker_state.cache_clear()
        if hasattr(gen, "_noise_set"):
            gen._noise_set.cache_clear()
    write_card(root)
    write_manifest(root)
    return root


def mini_panoptic_fixture(tmp_path_factory) -> Path:
    """The fixture folder, generated on the first call of a test session and reused afterwards
    (``tmp_path_factory`` is pytest's session-scoped factory)."""
    root = _SESSION.get("root")
    if root is None or not (root / "MANIFEST.json").is_file():
        root = write_fixture_mini_panoptic(tmp_path_factory.mktemp("mini-panoptic") / "mini-panoptic")
        _SESSION["root"] = root
    return root
