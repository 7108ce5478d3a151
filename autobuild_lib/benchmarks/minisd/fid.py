"""FID-FMNIST: Frechet distance between Fashion-MNIST-classifier features of two image sets.

Inception features mean nothing on 28x28 grey garments, so the study trains its own
small Fashion-MNIST CNN (:class:`FeatureNet`) and hands its penultimate layer to
torchmetrics' :class:`~torchmetrics.image.fid.FrechetInceptionDistance` as the
feature extractor (``feature=`` a module with ``num_features``).  Lower is better.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from autobuild_lib.benchmarks.minisd.masks import PAD, SIDE

__all__ = ["FeatureNet", "train_classifier", "classifier_accuracy", "fid_metric"]


class FeatureNet(nn.Module):
    """A small CNN on 28x28 Fashion-MNIST in [-1, 1]; ``forward`` returns the 128-d features.

    32x32 canvases are cropped to the image area first.  ``logits`` adds the class layer.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.num_features), nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != SIDE:
            x = x[..., PAD:PAD + SIDE, PAD:PAD + SIDE]
        return self.body(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> FeatureNet:
    """Train :class:`FeatureNet` on ``images`` [N, 1, 28, 28] in [-1, 1] with Adam; returns it in eval mode."""
    torch.manual_seed(seed)
    net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(batch):
            loss = F.cross_entropy(net.logits(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def classifier_accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` on ``images`` / ``labels``."""
    pred = torch.cat([net.logits(x).argmax(1) for x in images.split(1000)])
    return float((pred == labels).float().mean())


def fid_metric(net: FeatureNet, real: torch.Tensor) -> FrechetInceptionDistance:
    """A torchmetrics FID over ``net``'s features whose real statistics come from ``real`` once.

    Call ``reset()`` then ``update(fake, real=False)`` and ``compute()`` per image set; the
    real statistics are kept (``reset_real_features=False``).
    """
    metric = FrechetInceptionDistance(feature=net.eval(), reset_real_features=False)
    for x in real.split(500):
        metric.update(x, real=True)
    return metric
