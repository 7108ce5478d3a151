"""Pseudo and fully fine-tuned panoptic labels for MBv3 architectures (paper Sec. 5.2 / 7.7, mini scale).

The paper labels ~1.3k MBv3 architectures cheaply ("pseudo labels": a panoptic supernet fine-tuned
once with weight sharing, each architecture evaluated with its inherited weights) and 118
architectures expensively (each fine-tuned on its own).  Here:

* :func:`train_supernet` fine-tunes the Mini-OFA MBv3 supernet (design C weights) together with a
  fresh :class:`~.model.PanopticHead` on the training mosaics with the sandwich rule (largest,
  smallest and one random subnet per step, every subnet on the true labels, pixel-wise
  cross-entropy; AdamW with warm-up and cosine decay).  Every random choice derives from
  ``(seed, step)``, so a killed run resumes exactly from its checkpoint.
* :func:`pseudo_label`: the static subnet with inherited weights, BatchNorm statistics recomputed
  on the calibration mosaics, PQ on the validation mosaics (and on its two halves, for the
  reliability check).
* :func:`full_label`: the same static subnet fine-tuned alone for ``ft_steps`` steps (seeded
  batches), then PQ on the held-out test mosaics (garments of the Fashion-MNIST test split).

Architectures are evaluated at one input resolution, the whole 64 px mosaic (paper resolution
224), as the paper's panoptic experiment has no resolution choice.  FLOPs are OFA's count of
conv + linear multiply-accumulates of backbone + head on one 64x64 mosaic, in millions.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autobuild_lib.benchmarks.miniofa.supernet import space_of
from autobuild_lib.benchmarks.panoptic.model import PanopticNet, panoptic_maps
from autobuild_lib.benchmarks.panoptic.mosaics import (
    N_CLASSES,
    THINGS,
    Mosaics,
    make_mosaics,
    pq_counts,
    pq_from_counts,
)
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace

__all__ = ["PanopticConfig", "SUPERNET_FIELDS", "LABEL_FIELDS", "PanopticData", "build_data", "build_model", "fixed_resolution", "sample_archs", "noise_mosaics",
           "train_supernet", "static_model", "recalibrate_bn", "pq_stats", "pseudo_label", "finetune_subnet", "full_label",
           "count_flops"]

RESOLUTION = 224   # paper resolution of every panoptic architecture (the 64 px mosaic)


@dataclass(frozen=True)
class PanopticConfig:
    """Everything that defines the panoptic labels (stored with the data)."""

    size: int = 64
    n_train: int = 8000
    n_calib: int = 250
    n_val: int = 8000         # issue 15: split-half SRCC of pseudo PQ >= 0.85 over all labelled architectures
    n_test: int = 10000       # issue 15: the same for the fully fine-tuned labels
    n_val_pool: int = 10000   # train-split garments held out for the validation mosaics
    head_channels: int = 32
    batch_size: int = 64
    supernet_steps: int = 600
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    ft_steps: int = 60
    ft_lr: float = 5e-4
    min_area: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_train, self.n_calib, self.n_val, self.n_test, self.batch_size, self.supernet_steps) < 1:
            raise ValueError("sizes, batch_size and supernet_steps must be positive")
        if self.n_val % 2:
            raise ValueError(f"n_val must be even (two halves for the reliability check), got {self.n_val}")
        if not 0 < self.n_val_pool < 60000:
            raise ValueError(f"n_val_pool must be in (0, 60000), got {self.n_val_pool}")

    def fields(self, names: tuple[str, ...]) -> dict:
        """The values of the fields ``names`` (e.g. :data:`SUPERNET_FIELDS`)."""
        return {k: getattr(self, k) for k in names}


#: the fields of :class:`PanopticConfig` that decide the fine-tuned panoptic supernet (training
#: mosaics, head, sandwich schedule); the other fields change only the labels measured with it
SUPERNET_FIELDS = ("size", "n_train", "n_val_pool", "head_channels", "batch_size", "supernet_steps", "lr",
                   "weight_decay", "warmup_frac", "seed")
#: per label kind, the fields beyond :data:`SUPERNET_FIELDS` that change its labels
LABEL_FIELDS = {"pseudo": ("n_calib", "n_val", "min_area"),
                "full": ("n_calib", "n_test", "ft_steps", "ft_lr", "min_area")}


@dataclass
class PanopticData:
    """The four fixed sets of mosaics (semantic / instance maps stored as uint8)."""

    train: Mosaics
    calib: Mosaics
    val: Mosaics
    test: Mosaics


def _compact(m: Mosaics) -> Mosaics:
    return Mosaics(m.images, m.semantic.to(torch.uint8), m.instance.to(torch.uint8))


def build_data(cfg: PanopticConfig, fmnist: dict[str, torch.Tensor] | None = None) -> PanopticData:
    """Train / calibration mosaics from one pool of train-split garments, validation mosaics from a
    disjoint pool of train-split garments, test mosaics from the test split."""
    if fmnist is None:
        from autobuild_lib.benchmarks.fashion_mnist import load_fashion_mnist

        fmnist = load_fashion_mnist()
    n_all = fmnist["train_images"].shape[0]
    perm = torch.from_numpy(np.random.default_rng([cfg.seed, 2]).permutation(n_all))
    tr, va = perm[:n_all - cfg.n_val_pool], perm[n_all - cfg.n_val_pool:]
    ti, tl = fmnist["train_images"], fmnist["train_labels"]
    return PanopticData(
        train=_compact(make_mosaics(ti[tr], tl[tr], cfg.n_train, seed=cfg.seed * 10 + 1, size=cfg.size)),
        calib=_compact(make_mosaics(ti[tr], tl[tr], cfg.n_calib, seed=cfg.seed * 10 + 2, size=cfg.size)),
        val=_compact(make_mosaics(ti[va], tl[va], cfg.n_val, seed=cfg.seed * 10 + 3, size=cfg.size)),
        test=_compact(make_mosaics(fmnist["test_images"], fmnist["test_labels"], cfg.n_test,
                                   seed=cfg.seed * 10 + 4, size=cfg.size)),
    )


def noise_mosaics(cfg: PanopticConfig, n: int, fmnist: dict[str, torch.Tensor] | None = None) -> Mosaics:
    """``n`` further mosaics from the validation garment pool (own seed), for the reliability curve."""
    if fmnist is None:
        from autobuild_lib.benchmarks.fashion_mnist import load_fashion_mnist

        fmnist = load_fashion_mnist()
    n_all = fmnist["train_images"].shape[0]
    va = torch.from_numpy(np.random.default_rng([cfg.seed, 2]).permutation(n_all))[n_all - cfg.n_val_pool:]
    return _compact(make_mosaics(fmnist["train_images"][va], fmnist["train_labels"][va], n,
                                 seed=cfg.seed * 10 + 5, size=cfg.size))


def fixed_resolution(arch: OFAArch) -> OFAArch:
    """``arch`` at the panoptic resolution (224, i.e. the full 64 px mosaic)."""
    return dataclasses.replace(arch, resolution=RESOLUTION)


def sample_archs(space: OFASpace, n: int, seed: int) -> list[OFAArch]:
    """``n`` distinct random architectures (``space.sample`` with ``default_rng([seed, i])``) at 224."""
    out: list[OFAArch] = []
    seen: set[OFAArch] = set()
    i = 0
    while len(out) < n:
        a = fixed_resolution(space.sample(np.random.default_rng([seed, i])))
        i += 1
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def build_model(cfg: PanopticConfig, supernet_path: str | Path) -> PanopticNet:
    """The Mini-OFA MBv3 supernet at ``supernet_path`` with a fresh head (seeded)."""
    from autobuild_lib.benchmarks.miniofa.labels import load_supernet

    sn_cfg, net = load_supernet(supernet_path)
    if sn_cfg.space != "mbv3":
        raise ValueError(f"{supernet_path} holds a {sn_cfg.space} supernet; the panoptic backbone is MBv3")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return PanopticNet(net, cfg.size, cfg.head_channels)


def _set(model: PanopticNet, space: OFASpace, arch: OFAArch) -> None:
    from autobuild_lib.core.ir import ofa_settings

    model.backbone.set_active_subnet(**ofa_settings(space, space.validate(arch)))


def _lr_at(base: float, warmup_frac: float, total: int, step: int) -> float:
    warm = max(1, int(warmup_frac * total))
    if step < warm:
        return base * (step + 1) / warm
    return 0.5 * base * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _batch(m: Mosaics, batch_size: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.from_numpy(np.random.default_rng([seed, step]).integers(0, len(m), batch_size))
    return m.images[idx], m.semantic[idx].long()


def train_supernet(model: PanopticNet, data: PanopticData, cfg: PanopticConfig, ckpt: str | Path | None = None,
                   progress: bool = True, save_every: int = 25) -> list[dict]:
    """Sandwich-rule fine-tuning of backbone supernet + head; resumes from ``ckpt`` if present.

    Returns the training log (one row per step: step, lr, loss of largest / smallest / random, wall_s).
    """
    from tqdm.auto import tqdm

    space = space_of("mbv3")
    largest = OFAArch(RESOLUTION, tuple(((7, 6),) * max(d) for d in space.depths))
    smallest = OFAArch(RESOLUTION, tuple(((3, 3),) * min(d) for d in space.depths))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log: list[dict] = []
    ckpt = Path(ckpt) if ckpt is not None else None
    if ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        log = st["log"]
    model.train()
    bar = tqdm(total=cfg.supernet_steps, initial=len(log), desc="panoptic supernet", disable=not progress)
    wall0 = log[-1]["wall_s"] if log else 0.0
    t0 = time.perf_counter()
    for step in range(len(log), cfg.supernet_steps):
        lr = _lr_at(cfg.lr, cfg.warmup_frac, cfg.supernet_steps, step)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = _batch(data.train, cfg.batch_size, cfg.seed, step)
        rand = fixed_resolution(space.sample(np.random.default_rng([cfg.seed, 10**6 + step])))
        opt.zero_grad(set_to_none=True)
        losses = []
        for arch in (largest, smallest, rand):
            _set(model, space, arch)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
        opt.step()
        log.append({"step": step + 1, "lr": lr, "loss_largest": losses[0], "loss_smallest": losses[1],
                    "loss_random": losses[2], "wall_s": round(wall0 + time.perf_counter() - t0, 2)})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[0]:.3f}")
        if ckpt is not None and ((step + 1) % save_every == 0 or step + 1 == cfg.supernet_steps):
            tmp = ckpt.with_name(f".partial-{ckpt.name}")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "log": log}, tmp)
            tmp.replace(ckpt)
    bar.close()
    return log


def static_model(model: PanopticNet, arch: OFAArch) -> PanopticNet:
    """The static subnet of ``arch`` with inherited backbone weights and a copy of the head."""
    space = space_of("mbv3")
    arch = space.validate(arch)
    _set(model, space, arch)
    bb = model.backbone.get_active_subnet(preserve_weight=True)
    bb.classifier = nn.Identity()          # unused by the panoptic net: not part of its FLOPs
    bb.feature_mix_layer = nn.Identity()
    return PanopticNet(bb.to(memory_format=torch.channels_last), model.resolution, depths=arch.depths,
                       head=copy.deepcopy(model.head))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> nn.Module:
    """Recompute every BatchNorm's statistics (cumulative average) on ``images``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(0, len(images), batch_size):
        model(images[i:i + batch_size])
    return model.eval()


@torch.no_grad()
def pq_stats(model: nn.Module, m: Mosaics, min_area: int = 16, batch_size: int = 250,
             halves: bool = False) -> dict:
    """PQ (%) of ``model`` on mosaics ``m`` (:func:`~.mosaics.pq_counts`, torchmetrics' definition),
    PQ over the thing classes (``pq_things``), mIoU (%) of the semantic map (argmax) over the
    classes present (``miou``) and the mean pixel cross-entropy (``ce``), from the same forward passes
    (mIoU and CE add about 0.2 ms each per mosaic on one CPU core).

    With ``halves``, also the PQ of the first and the second half of ``m`` (``pq_a``, ``pq_b``).
    """
    model.eval()
    n = len(m)
    parts = [(0, n // 2), (n // 2, n)] if halves else [(0, n)]
    counts = []
    confusion = torch.zeros(N_CLASSES * N_CLASSES, dtype=torch.int64)
    ce_sum, pixels = 0.0, 0
    for lo, hi in parts:
        c = np.zeros((4, N_CLASSES))
        for i in range(lo, hi, batch_size):
            j = min(i + batch_size, hi)
            logits = model(m.images[i:j])
            sem_t = m.semantic[i:j].long()
            sem, ins = panoptic_maps(logits, min_area)
            c += pq_counts(sem, ins, sem_t, m.instance[i:j].long())
            confusion += torch.bincount((sem_t * N_CLASSES + logits.max(1).indices).ravel(), minlength=N_CLASSES ** 2)
            ce_sum += float(F.cross_entropy(logits, sem_t, reduction="sum"))
            pixels += sem_t.numel()
        counts.append(c)
    out = {}
    if halves:
        out["pq_a"], out["pq_b"] = (100.0 * pq_from_counts(c) for c in counts)
    total = sum(counts)
    out["pq"] = 100.0 * pq_from_counts(total)
    out["pq_things"] = 100.0 * pq_from_counts(total[:, list(THINGS)])
    conf = confusion.reshape(N_CLASSES, N_CLASSES).double()
    inter, union = conf.diag(), conf.sum(0) + conf.sum(1) - conf.diag()
    out["miou"] = 100.0 * float((inter[union > 0] / union[union > 0]).mean())
    out["ce"] = ce_sum / pixels
    return out


def count_flops(model: PanopticNet, size: int = 64) -> float:
    """OFA's conv + linear MAC count of backbone + head on one ``size`` x ``size`` mosaic, in millions."""
    from ofa.utils.pytorch_utils import count_net_flops

    return float(count_net_flops(model, (1, 1, size, size))) / 1e6


def pseudo_label(model: PanopticNet, arch: OFAArch, data: PanopticData, cfg: PanopticConfig) -> dict:
    """Inherited weights + BN recalibration -> on the validation mosaics PQ, its halves ``pq_a`` /
    ``pq_b``, ``pq_things``, ``miou``, pixel ``ce`` (:func:`pq_stats`); FLOPs."""
    t0 = time.perf_counter()
    sub = recalibrate_bn(static_model(model, arch), data.calib.images)
    out = pq_stats(sub, data.val, cfg.min_area, halves=True)
    return {**out, "flops": count_flops(sub, cfg.size), "eval_s": round(time.perf_counter() - t0, 2)}


def finetune_subnet(model: PanopticNet, arch: OFAArch, data: PanopticData, cfg: PanopticConfig,
                    seed: int = 0) -> tuple[PanopticNet, list[float]]:
    """The static subnet of ``arch`` fine-tuned alone (``ft_steps`` seeded batches, cosine lr),
    BatchNorm recalibrated; returns it and its training losses."""
    sub = static_model(model, arch)
    opt = torch.optim.AdamW(sub.parameters(), lr=cfg.ft_lr, weight_decay=cfg.weight_decay)
    sub.train()
    losses = []
    for step in range(cfg.ft_steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg.ft_lr, 0.0, cfg.ft_steps, step)
        x, y = _batch(data.train, cfg.batch_size, 1000 + seed, step)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(sub(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return recalibrate_bn(sub, data.calib.images), losses


def full_label(model: PanopticNet, arch: OFAArch, data: PanopticData, cfg: PanopticConfig, seed: int = 0) -> dict:
    """Fine-tune the static subnet alone (:func:`finetune_subnet`), then on the test mosaics PQ
    (``pq_full``), its halves ``pq_a`` / ``pq_b``, ``pq_things``, ``miou`` and pixel ``ce``."""
    t0 = time.perf_counter()
    sub, losses = finetune_subnet(model, arch, data, cfg, seed)
    ft_s = time.perf_counter() - t0
    out = pq_stats(sub, data.test, cfg.min_area, halves=True)
    return {"pq_full": out.pop("pq"), **out, "flops": count_flops(sub, cfg.size),
            "ft_loss_last10": float(np.mean(losses[-10:])), "finetune_s": round(ft_s, 2),
            "eval_s": round(time.perf_counter() - t0 - ft_s, 2)}
