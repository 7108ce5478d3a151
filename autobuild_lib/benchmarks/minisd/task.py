"""The mini inpainting task: padded Fashion-MNIST canvases, the fixed evaluation set, the config.

Images are Fashion-MNIST scaled to [-1, 1] and padded by 2 px of background (-1) to
32x32, so that the U-Net's three downsamplings divide evenly.  Training (base model
and fine-tuning) draws from the train split only; the evaluation images are the
first ``n_eval`` of a fixed permutation of the test split.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autobuild_lib.benchmarks.fashion_mnist import load_fashion_mnist
from autobuild_lib.benchmarks.minisd.masks import PAD

__all__ = ["MiniSDConfig", "Task", "load_task", "EVAL_PERM_SEED"]

EVAL_PERM_SEED = 0


@dataclass(frozen=True)
class MiniSDConfig:
    """Every knob of the mini SD benchmark (recorded in its data card).

    divisor: paper channels / divisor = mini channels (16: C_m 128/192/256 -> 8/12/16).
    base_steps, base_lr: training of the base model (the SD v1.4 analogue), AdamW.
    ft_steps, ft_lr: the fixed fine-tuning budget of every variant (paper: 20k steps; Sec. 7.10: 30k).
    batch: images per step.  n_eval, ddim_steps: evaluation images and DDIM steps.
    """

    divisor: int = 16
    batch: int = 32
    base_steps: int = 6000
    base_lr: float = 3e-4
    ft_steps: int = 150
    ft_lr: float = 1e-4
    n_eval: int = 500
    ddim_steps: int = 10
    eval_seed: int = 0
    classifier_epochs: int = 3

    def replace(self, **kw: object) -> "MiniSDConfig":
        unknown = set(kw) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown MiniSDConfig fields {sorted(unknown)}; "
                             f"known: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **kw)


@dataclass
class Task:
    train: torch.Tensor        # [60000, 1, 32, 32] in [-1, 1]
    train_labels: torch.Tensor
    test: torch.Tensor         # [10000, 1, 32, 32]
    test_labels: torch.Tensor

    def eval_images(self, n: int) -> torch.Tensor:
        """The first ``n`` images of the fixed permutation of the test split."""
        if not 1 <= n <= len(self.test):
            raise ValueError(f"n_eval must be in [1, {len(self.test)}], got {n}")
        perm = torch.randperm(len(self.test), generator=torch.Generator().manual_seed(EVAL_PERM_SEED))
        return self.test[perm[:n]]


def _canvas(images: torch.Tensor) -> torch.Tensor:
    x = images.float().div(127.5).sub(1)[:, None]
    return F.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)


def load_task() -> Task:
    """Fashion-MNIST as 32x32 canvases in [-1, 1] (raises DatasetError with a fix if missing)."""
    d = load_fashion_mnist()
    return Task(_canvas(d["train_images"]), d["train_labels"], _canvas(d["test_images"]), d["test_labels"])
