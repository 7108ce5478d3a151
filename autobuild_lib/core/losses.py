"""The AutoBuild training loss (paper Eq. 4).

    L = MSE(y, y') + 1/(M+1) * sum_{m=0..M} (1 - SRCC(y, ||h_G^m||_1))

SRCC is taken over the whole batch and made differentiable with the soft
ranking of Blondel et al. (2020) as implemented by ``torchsort.soft_rank``
(l2 regularisation).  ``hop_srcc=False`` gives the MSE-only ablation.
"""
from __future__ import annotations

import torch
import torchsort


def soft_spearman(pred: torch.Tensor, target: torch.Tensor,
                  regularization_strength: float = 1.0) -> torch.Tensor:
    """Differentiable Spearman correlation of two 1-D tensors."""
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"soft_spearman needs two equal 1-D tensors, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    kw = {"regularization": "l2", "regularization_strength": regularization_strength}
    rp = torchsort.soft_rank(pred.unsqueeze(0), **kw).squeeze(0)
    rt = torchsort.soft_rank(target.unsqueeze(0), **kw).squeeze(0)
    rp = rp - rp.mean()
    rt = rt - rt.mean()
    return (rp * rt).sum() / (rp.norm() * rt.norm() + 1e-12)


class AutoBuildLoss(torch.nn.Module):
    """Eq. 4; ``hop_srcc=False`` drops the ranking term (MSE-only ablation)."""

    def __init__(self, hop_srcc: bool = True, regularization_strength: float = 1.0) -> None:
        super().__init__()
        self.hop_srcc = hop_srcc
        self.regularization_strength = regularization_strength

    def forward(self, y: torch.Tensor, pred: torch.Tensor,
                graph_embeddings: list[torch.Tensor]) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(pred, y)
        if self.hop_srcc and len(y) > 1:
            rank = sum(1 - soft_spearman(h.abs().sum(dim=1), y, self.regularization_strength)
                       for h in graph_embeddings)
            loss = loss + rank / len(graph_embeddings)
        return loss
