"""Load the Mini-Panoptic benchmark for the panoptic chapter (checked against its manifest).

``AUTOBUILD_MINI_PANOPTIC_DIR`` points elsewhere (the tests use this for a small fixture).
Besides the tables, :func:`load_panoptic_model` gives the fine-tuned panoptic supernet of
``supernet.pt`` and :func:`sample_mosaics` the first mosaics of the sets it was labelled on, for
showing predictions.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from autobuild_lib.benchmarks.panoptic.card import REGENERATE
from autobuild_lib.benchmarks.panoptic.constants import MINI_PANOPTIC_DIR
from autobuild_lib.benchmarks.pipeline.manifest import verify_file
from autobuild_lib.benchmarks.pipeline.missing import DataMissing

__all__ = ["MiniPanoptic", "FILES", "LABEL_FILES", "OPTIONAL_FILES", "STAGE_OF", "mini_panoptic_dir", "load_mini_panoptic",
           "load_panoptic_model", "sample_mosaics"]

#: every file the chapter reads, with the generation stage that writes it
STAGE_OF = {
    "supernet.pt": "supernet",
    "supernet-trainlog.json": "supernet",
    "reliability.json": "reliability",
    "pseudo.csv": "pseudo",
    "full.csv": "full",
    "constructed.csv": "constructions",
    "construction.json": "constructions",
    "module-scores.csv": "constructions",
}
FILES = tuple(STAGE_OF)
#: written only once the reliability check meets its bar (the ``pseudo`` stage refuses otherwise)
LABEL_FILES = ("pseudo.csv", "full.csv", "constructed.csv", "construction.json", "module-scores.csv")
#: read when present (stage ``noise``): split-half SRCC per evaluation-set size
OPTIONAL_FILES = ("reliability-curve.json",)


def mini_panoptic_dir() -> Path:
    env = os.environ.get("AUTOBUILD_MINI_PANOPTIC_DIR")
    return Path(env) if env else MINI_PANOPTIC_DIR


@dataclass
class MiniPanoptic:
    """The Sec. 5.2 / 7.7 tables: labels, reliability, constructions."""

    root: Path
    pseudo: pd.DataFrame | None    # pseudo.csv: arch, pq, pq_a, pq_b, pq_things, miou, ce, flops, eval_s
    full: pd.DataFrame | None      # full.csv: arch, pq_full, pq_a, pq_b, pq_things, miou, ce, flops, ft_loss_last10, ...
    constructed: pd.DataFrame | None  # constructed.csv: equation + the full.csv columns
    reliability: dict              # reliability.json: n, srcc_halves, pq_a, pq_b, bar, work (shard folder), ...
    construction: dict | None      # construction.json: equations, k, epochs, per equation metrics / top
    module_scores: pd.DataFrame | None  # module-scores.csv: unit, module, layers, hop, raw, score, equation
    trainlog: list[dict]           # supernet-trainlog.json: one row per sandwich step
    reliability_curve: dict | None = None   # reliability-curve.json (stage noise), when generated

    @property
    def labelled(self) -> bool:
        """Whether the label tables are there (None fields otherwise, see ``require_labels``)."""
        return self.pseudo is not None

    @property
    def supernet_path(self) -> Path:
        return self.root / "supernet.pt"


def _root(root: str | Path | None) -> Path:
    return Path(root) if root is not None else mini_panoptic_dir()


def _require(root: Path, names: tuple[str, ...]) -> None:

    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        stages = list(dict.fromkeys(STAGE_OF[n] for n in missing))
        raise DataMissing(f"the Mini-Panoptic benchmark is incomplete in {root}: missing {', '.join(missing)} "
                          f"(stage{'s' if len(stages) > 1 else ''} {', '.join(stages)}). Restore the committed "
                          f"files with `git checkout -- {root}` or generate them with `{REGENERATE}` (about 8 "
                          "CPU-hours, i.e. 4 hours on a 2-core CPU, resumable; see data/mini-panoptic/DATA_CARD.md).")


def load_mini_panoptic(root: str | Path | None = None, verify: bool = True,
                       require_labels: bool = True) -> MiniPanoptic:
    """Every table of the Sec. 5.2 experiment; raises :class:`~autobuild_lib.benchmarks.pipeline.missing.DataMissing`
    naming the missing files and how to get them, and ``ValueError`` when a file does not match
    the manifest.  With ``require_labels=False`` the label tables (:data:`LABEL_FILES`) may be
    absent -- as long as the reliability check has not met its bar -- and are then ``None``."""
    root = _root(root)
    have_labels = all((root / n).is_file() for n in LABEL_FILES)
    needed = FILES if require_labels or have_labels else tuple(n for n in FILES if n not in LABEL_FILES)
    _require(root, needed)
    optional = [n for n in OPTIONAL_FILES if (root / n).is_file()]
    if verify:
        for n in needed + tuple(optional):
            verify_file(root / n, root, REGENERATE)
    curve = json.loads((root / "reliability-curve.json").read_text()) if optional else None
    labels = ((pd.read_csv(root / "pseudo.csv"), pd.read_csv(root / "full.csv"), pd.read_csv(root / "constructed.csv"))
              if have_labels else (None, None, None))
    return MiniPanoptic(root, *labels, json.loads((root / "reliability.json").read_text()),
                        json.loads((root / "construction.json").read_text()) if have_labels else None,
                        pd.read_csv(root / "module-scores.csv") if have_labels else None,
                        json.loads((root / "supernet-trainlog.json").read_text()), curve)


def load_panoptic_model(root: str | Path | None = None, verify: bool = True):
    """The fine-tuned panoptic supernet of ``root/supernet.pt`` (eval mode) and its
    :class:`~.train.PanopticConfig`: ``build_model(cfg, generate.BACKBONE)`` + the stored weights."""
    import torch

    from autobuild_lib.benchmarks.panoptic import generate
    from autobuild_lib.benchmarks.panoptic.train import PanopticConfig, build_model

    root = _root(root)
    _require(root, ("supernet.pt",))
    path = root / "supernet.pt"
    if verify:
        verify_file(path, root, REGENERATE)
    how = f"restore it with `git checkout -- {path}` or regenerate it with `{REGENERATE}`"
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        cfg, state = PanopticConfig(**st["config"]), st["model"]
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{path} is not a readable panoptic supernet file ({type(exc).__name__}: {first}); {how}") from None
    model = build_model(cfg, generate.BACKBONE)   # the Mini-OFA backbone; its own errors say how to restore it
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit the backbone {generate.BACKBONE} ({exc}); {how}") from None
    return cfg, model.eval()


def sample_mosaics(cfg, n: int, fmnist: dict | None = None):
    """The first ``n`` test mosaics of ``cfg`` (identical to the first ``n`` the full labels were
    measured on: mosaic ``i`` depends only on its seed and ``i``) and its calibration mosaics.

    Returns ``(test, calib)`` :class:`~.mosaics.Mosaics`."""
    from autobuild_lib.benchmarks.panoptic.train import build_data

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    data = build_data(replace(cfg, n_train=1, n_val=2, n_test=n), fmnist)
    return data.test, data.calib
