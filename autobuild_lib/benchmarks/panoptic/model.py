"""Panoptic network: a Mini-OFA MBv3 backbone (elastic or static) + a light FPN semantic head.

The head is the study's stand-in for the paper's panoptic head (Sec. 5.2 uses an MBv3 backbone
with a full panoptic segmentation model on MS-COCO).  It takes the backbone's outputs after
MBv3 stages 1, 2 and 4 (strides 4, 8 and 16) and after the final 1x1 expansion (stride 32),
projects each to ``channels`` with a 1x1 conv, merges them top-down (nearest upsampling + sum,
as in a feature pyramid), applies one 3x3 conv + BN + ReLU at stride 4 and predicts the 12
semantic classes, upsampled bilinearly to the mosaic size.

Instances are separated without learning: every 4-connected component of a predicted thing
class is one instance (:func:`panoptic_maps`); components smaller than ``min_area`` pixels are
given to the more likely stuff class.  Garments of the same class that touch therefore merge,
for every architecture alike.

The stage outputs have fixed widths in the OFA space (only kernel, expansion and depth are
elastic), so one head serves every subnet; the supernet and its static subnets share
:class:`PanopticNet`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from autobuild_lib.benchmarks.panoptic.mosaics import N_CLASSES, STUFF

__all__ = ["MEAN", "STD", "TAPS", "PanopticHead", "PanopticNet", "to_input", "panoptic_maps"]

MEAN, STD = 0.2, 0.3      # the Mini-OFA supernet's input normalisation
TAPS = (1, 2, 4)          # MBv3 stages (1-based) whose outputs feed the head, plus the final expansion


def to_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Mosaics ``[B, 1, S, S]`` in [0, 1] -> normalised ``[B, 3, r, r]`` channels-last input."""
    t = (images - MEAN) / STD
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return t.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


class PanopticHead(nn.Module):
    """FPN-style merge of the tapped features -> 12-class logits at stride 4."""

    def __init__(self, in_channels: Sequence[int], channels: int = 32, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.classify = nn.Conv2d(channels, n_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``feats`` from fine to coarse; returns logits at the resolution of ``feats[0]``."""
        p = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            p = F.interpolate(p, size=f.shape[-2:], mode="nearest") + lat(f)
        return self.classify(self.fuse(p))


class PanopticNet(nn.Module):
    """Backbone + head; ``forward(images [B, 1, S, S]) -> logits [B, 12, S, S]``.

    ``backbone`` is OFA's elastic ``OFAMobileNetV3`` (its active subnet runs) or a static
    ``MobileNetV3`` from ``get_active_subnet``; for the static one pass its stage ``depths``.
    """

    def __init__(self, backbone: nn.Module, resolution: int = 64, channels: int = 32,
                 depths: Sequence[int] | None = None, head: PanopticHead | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.resolution = resolution
        self.depths = tuple(depths) if depths is not None else None
        if head is None:
            with torch.no_grad():
                was = backbone.training
                backbone.eval()
                widths = [f.shape[1] for f in self.features(torch.zeros(1, 3, resolution, resolution))]
                backbone.train(was)
            head = PanopticHead(widths, channels)
        self.head = head

    def _stage_blocks(self) -> list[list[nn.Module]]:
        bb = self.backbone
        if self.depths is None:   # elastic supernet: its active depth per stage
            return [[bb.blocks[i] for i in idx[:d]] for idx, d in zip(bb.block_group_info, bb.runtime_depth)]
        out, i = [], 1
        for d in self.depths:
            out.append(list(bb.blocks[i:i + d]))
            i += d
        if i != len(bb.blocks):
            raise ValueError(f"depths {self.depths} do not match a static backbone of {len(bb.blocks)} blocks")
        return out

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the tapped stages and of the final expansion layer, fine to coarse."""
        bb = self.backbone
        x = bb.blocks[0](bb.first_conv(x))
        feats = []
        for s, blocks in enumerate(self._stage_blocks(), start=1):
            for b in blocks:
                x = b(x)
            if s in TAPS:
                feats.append(x)
        feats.append(bb.final_expand_layer(x))
        return feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-2:]
        logits = self.head(self.features(to_input(images, self.resolution)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]   # 4-connectivity within an image, none across the batch


def panoptic_maps(logits: torch.Tensor, min_area: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic map (argmax) and instance map (4-connected components of each thing class).

    Components under ``min_area`` pixels are reassigned to the likelier stuff class.
    Returns ``semantic``, ``instance`` ``[B, H, W]`` int64; instance 0 on stuff, thing instance
    ids unique within each image (not consecutive).
    """
    # max(1).indices: the same first-maximum index as argmax(1), about 4x faster on NCHW logits on a CPU
    sem = logits.max(1).indices.numpy().copy()
    stuff = np.asarray(STUFF)[logits[:, list(STUFF)].max(1).indices.numpy()].reshape(-1)
    inst = np.zeros_like(sem)
    sem_flat, inst_flat = sem.reshape(-1), inst.reshape(-1)   # views
    offset = 0
    for c in range(STUFF[0]):
        comp, n = ndimage.label(sem == c, structure=_IN_PLANE)
        if n == 0:
            continue
        where = np.flatnonzero(comp)
        lab = comp.reshape(-1)[where]
        small = np.bincount(lab, minlength=n + 1)[lab] < min_area
        sem_flat[where[small]] = stuff[where[small]]
        inst_flat[where[~small]] = lab[~small] + offset
        offset += n
    return torch.from_numpy(sem), torch.from_numpy(inst)
