"""Inpainting masks on the 32x32 canvas (a 28x28 Fashion-MNIST image padded by 2 px).

Mask value 1 marks a hole to inpaint.  Training masks are random rectangles inside
the image area; the evaluation masks are a fixed, predefined set of four shapes
assigned to the evaluation images in turn (image i gets shape i mod 4).
"""
from __future__ import annotations

import torch

__all__ = ["CANVAS", "PAD", "EVAL_SHAPES", "eval_masks", "random_masks"]

CANVAS = 32
PAD = 2
SIDE = 28
#: (top, left, height, width) in image coordinates (0..27) of the four evaluation holes.
EVAL_SHAPES = (
    (7, 7, 14, 14),    # centre square, 25 % of the image
    (0, 0, 28, 14),    # left half
    (0, 0, 14, 28),    # top half
    (12, 12, 16, 16),  # bottom-right block
)


def _box(top: int, left: int, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(1, CANVAS, CANVAS)
    m[:, PAD + top:PAD + top + h, PAD + left:PAD + left + w] = 1
    return m


def eval_masks(n: int) -> torch.Tensor:
    """The fixed evaluation masks of ``n`` images, shape [n, 1, 32, 32]."""
    boxes = [_box(*s) for s in EVAL_SHAPES]
    return torch.stack([boxes[i % len(boxes)] for i in range(n)])


def random_masks(n: int, generator: torch.Generator, min_side: int = 6) -> torch.Tensor:
    """``n`` random rectangles with sides in [min_side, 28] inside the image area."""
    h = torch.randint(min_side, SIDE + 1, (n,), generator=generator)
    w = torch.randint(min_side, SIDE + 1, (n,), generator=generator)
    top = (torch.rand(n, generator=generator) * (SIDE - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (SIDE - w + 1)).long()
    rows = torch.arange(CANVAS)[None, :] - PAD
    rm = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    cm = (rows >= left[:, None]) & (rows < (left + w)[:, None])
    return (rm[:, :, None] & cm[:, None, :]).float()[:, None]
