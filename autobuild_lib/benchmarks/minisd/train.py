"""Train the base U-Net, fine-tune a variant from it, and label the variant with FID-FMNIST.

The paper fine-tunes each SD v1.4 variant for a fixed number of steps from the
pretrained weights and scores it by FID on masked images (Sec. 5.3, 7.9).  Here:
:func:`train_unet` runs AdamW on the epsilon loss with random rectangle masks;
:func:`label_variant` builds the variant, inherits the base weights
(:func:`~.unet.inherit`), fine-tunes ``ft_steps`` steps, inpaints the fixed
evaluation set with DDIM and returns FID-FMNIST and the mean squared error in the
holes, plus exact FLOPs and parameter counts.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from autobuild_lib.benchmarks.minisd.diffusion import Schedule, ddim_inpaint, diffusion_loss
from autobuild_lib.benchmarks.minisd.fid import FeatureNet, fid_metric
from autobuild_lib.benchmarks.minisd.masks import CANVAS, eval_masks, random_masks
from autobuild_lib.benchmarks.minisd.task import MiniSDConfig
from autobuild_lib.benchmarks.minisd.unet import MiniUNet, inherit
from autobuild_lib.core.spaces.sd import SDArch

__all__ = ["train_unet", "inpaint_eval_set", "evaluate", "count_cost", "finetune_variant", "label_variant"]


def train_unet(model: MiniUNet, images: torch.Tensor, steps: int, lr: float, batch: int, seed: int,
               start: int = 0, opt_state: dict | None = None,
               on_step: Callable[[int, float, dict], None] | None = None) -> dict:
    """AdamW (wd 0) on the epsilon loss; step ``s`` uses generator seed ``[seed, s]`` for its batch,
    masks, timesteps and noise, so a resumed run (``start``, ``opt_state``) repeats the same steps.
    ``on_step(step, loss, optimizer_state)`` is called after every step.  Returns the optimizer state."""
    schedule = Schedule()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    model.train()
    for s in range(start, steps):
        g = torch.Generator().manual_seed(seed * 1_000_003 + s)
        idx = torch.randint(0, len(images), (batch,), generator=g)
        loss = diffusion_loss(model, schedule, images[idx], random_masks(batch, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(s, loss.item(), opt.state_dict())
    model.eval()
    return opt.state_dict()


def inpaint_eval_set(model: MiniUNet, images: torch.Tensor, cfg: MiniSDConfig, batch: int = 250) -> torch.Tensor:
    """Inpaint ``images`` with the fixed masks and fixed starting noise (seed ``cfg.eval_seed``)."""
    masks = eval_masks(len(images))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(cfg.eval_seed))
    model.eval()
    out = [ddim_inpaint(model, Schedule(), x, m, z, cfg.ddim_steps)
           for x, m, z in zip(images.split(batch), masks.split(batch), noise.split(batch))]
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: MiniUNet, images: torch.Tensor, classifier: FeatureNet, cfg: MiniSDConfig,
             metric=None) -> dict:
    """FID-FMNIST of the inpainted evaluation set against the real images, and the hole MSE."""
    fake = inpaint_eval_set(model, images, cfg)
    metric = metric or fid_metric(classifier, images)
    metric.reset()
    for x in fake.split(500):
        metric.update(x, real=False)
    masks = eval_masks(len(images))
    hole_mse = float(((fake - images) ** 2 * masks).sum() / masks.sum())
    return {"fid": float(metric.compute()), "hole_mse": hole_mse}


def count_cost(model: MiniUNet) -> dict:
    """Exact FLOPs (torch's FlopCounterMode, one 32x32 image, MFLOPs) and parameters (M)."""
    x = torch.zeros(1, 1, CANVAS, CANVAS)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x, torch.zeros(1, dtype=torch.long), x, x)
    return {"flops": fc.get_total_flops() / 1e6, "n_params": sum(p.numel() for p in model.parameters()) / 1e6}


def finetune_variant(arch: SDArch, base: MiniUNet, train_images: torch.Tensor, cfg: MiniSDConfig, seed: int,
                     ft_steps: int | None = None) -> MiniUNet:
    """Build ``arch`` (seeded init), inherit ``base``'s weights, fine-tune ``ft_steps`` (or ``cfg.ft_steps``)."""
    torch.manual_seed(seed)
    model = MiniUNet(arch, cfg.divisor)
    inherit(model, base)
    steps = cfg.ft_steps if ft_steps is None else ft_steps
    train_unet(model, train_images, steps, cfg.ft_lr, cfg.batch, seed=seed)
    return model


def label_variant(arch: SDArch, base: MiniUNet, train_images: torch.Tensor, eval_images: torch.Tensor,
                  classifier: FeatureNet, cfg: MiniSDConfig, seed: int, ft_steps: int | None = None,
                  metric=None) -> dict:
    """Inherit, fine-tune (``ft_steps`` or ``cfg.ft_steps``, seed ``seed``) and evaluate one variant."""
    t0 = time.perf_counter()
    model = finetune_variant(arch, base, train_images, cfg, seed, ft_steps)
    t1 = time.perf_counter()
    row = evaluate(model, eval_images, classifier, cfg, metric)
    row.update(count_cost(model))
    row.update(finetune_s=round(t1 - t0, 2), eval_s=round(time.perf_counter() - t1, 2))
    return row
