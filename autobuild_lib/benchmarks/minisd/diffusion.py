"""DDPM training and deterministic DDIM inpainting for :class:`~.unet.MiniUNet` (paper Sec. 5.3).

The noise schedule is DDPM's linear one (Ho et al. 2020: beta from 1e-4 to 0.02 over
T = 1000 steps).  Training minimises the epsilon-prediction loss
``|| eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t, mask, masked) ||^2`` with
``a_t = prod_{s<=t} (1 - beta_s)``.  Inpainting samples with DDIM (Song et al. 2021,
eta = 0, so the only randomness is the starting noise) and pastes the known pixels
back at the end, as SD's inpainting pipeline does.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Schedule", "diffusion_loss", "ddim_inpaint"]


class Schedule:
    """Linear beta schedule; ``alpha_bar[t]`` is the cumulative product of ``1 - beta``."""

    def __init__(self, n_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if n_steps < 2 or not 0 < beta_start < beta_end < 1:
            raise ValueError(f"bad schedule: n_steps={n_steps}, betas {beta_start}..{beta_end}")
        self.n_steps = n_steps
        betas = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1 - betas, 0).float()

    def noisy(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar[t][:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


def diffusion_loss(model: nn.Module, schedule: Schedule, x0: torch.Tensor, mask: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """Epsilon-prediction MSE on a batch ``x0`` [B, 1, H, W] with inpainting ``mask`` (1 = hole)."""
    b = x0.shape[0]
    t = torch.randint(0, schedule.n_steps, (b,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    pred = model(schedule.noisy(x0, t, eps), t, mask, x0 * (1 - mask))
    return (pred - eps).pow(2).mean()


@torch.no_grad()
def ddim_inpaint(model: nn.Module, schedule: Schedule, x0: torch.Tensor, mask: torch.Tensor,
                 noise: torch.Tensor, n_steps: int = 10) -> torch.Tensor:
    """Fill the holes (``mask`` = 1) of ``x0`` by ``n_steps`` DDIM steps (eta = 0) from ``noise``.

    Returns the composite ``mask * sample + (1 - mask) * x0``, clamped to [-1, 1].
    """
    if not 1 <= n_steps <= schedule.n_steps:
        raise ValueError(f"n_steps must be in [1, {schedule.n_steps}], got {n_steps}")
    masked = x0 * (1 - mask)
    ts = torch.linspace(schedule.n_steps - 1, 0, n_steps).round().long().tolist()
    x = noise
    for i, t in enumerate(ts):
        a = schedule.alpha_bar[t]
        a_prev = schedule.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long), mask, masked)
        pred_x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * eps
    return (mask * x + (1 - mask) * x0).clamp(-1, 1)
