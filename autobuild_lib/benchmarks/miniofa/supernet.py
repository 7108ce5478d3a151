"""Mini-OFA supernets: OFA's own elastic networks trained on cluttered Fashion-MNIST.

The task ("cluttered Fashion-MNIST", all real data)
---------------------------------------------------
Each real 28x28 Fashion-MNIST item is pasted at a random position on a
``canvas`` x ``canvas`` black canvas (default 56), and ``n_clutter``
fragments (random square crops, ``frag_min``..``frag_max`` px) of *other*
real items from the same pool are pasted at random positions, combined by
pixel-wise max.  The label is the whole item's class.  The net must find the
whole item among look-alike fragments, which rewards receptive field (kernel
size, depth) and capacity.  Everything is drawn from one
``numpy.random.Generator`` seeded with ``(seed, pool tag)``; a canvas only
ever uses items of the pool it is built from (train canvases: train split
items only; test canvases: test split only).  Images are replicated to 3
channels and scaled to [0, 1] then normalised by ``(x - 0.2) / 0.3``.

Resolution mapping (paper -> mini, same ratios 192/224 = 48/56, 208/224 = 52/56)::

    192 -> 48,  208 -> 52,  224 -> 56

Canvases are rendered at 56 px; the 52 and 48 px inputs are the same canvas
resized with bilinear interpolation (antialias), as OFA resizes ImageNet.

Data splits (fixed by ``seed``): a fixed permutation of the 60k train items
gives ``n_train`` training items, ``n_calib`` BN-calibration items and
``n_heldout`` held-out evaluation items, disjoint.  Evaluation = the held-out
train canvases + the first ``n_test`` test canvases (default all 10k).

Networks: ``ofa``'s ``OFAMobileNetV3`` / ``OFAProxylessNASNets`` with
``ks_list=[3,5,7]``, ``expand_ratio_list=[3,4,6]``, ``depth_list=[2,3,4]``,
10 classes, width ``width_mult``; optionally the stem conv's stride is set to
1 (``stem_stride=1``) so that the late stages keep spatial maps big enough
for the kernel size to matter (56 px input: 56, 28, 14, 7, 7, 4).

Training: sandwich rule -- per step the largest subnet (at 56 px, CE loss on
labels), the smallest (at 48 px) and ``n_random`` random subnets (sampled with
:meth:`OFASpace.sample`, i.e. OFA's order, random resolution), the latter all
distilled in place from the largest's (detached) soft predictions (with
``distill=False`` every subnet learns from the labels instead); gradients
are accumulated and one AdamW step with linear warm-up and cosine decay to 0
is taken.  Every random choice derives from ``(seed, step)``, so a run killed
and resumed from its checkpoint continues exactly.

Evaluation: a subnet is extracted as OFA's static network with inherited
weights, its BatchNorm statistics are recomputed (cumulative average) on the
fixed calibration canvases, and top-1 accuracy and cross-entropy are measured
per image on the evaluation canvases.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autobuild_lib.core.spaces.ofa import EXPANSIONS, KERNELS, OFAArch, OFASpace, mbv3, pn

__all__ = [
    "MINI_RESOLUTIONS",
    "RES_MAP",
    "SupernetConfig",
    "MiniData",
    "make_canvases",
    "build_data",
    "build_supernet",
    "space_of",
    "set_arch",
    "to_input",
    "Trainer",
    "extract_subnet",
    "recalibrate_bn",
    "evaluate_subnet",
    "fold_batchnorm",
]

#: paper resolution -> mini resolution (same ratios to the largest).
RES_MAP: dict[int, int] = {192: 48, 208: 52, 224: 56}
MINI_RESOLUTIONS = tuple(RES_MAP.values())
MEAN, STD = 0.2, 0.3


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that defines a supernet run (stored in the checkpoint)."""

    space: str = "mbv3"
    width_mult: float = 0.25
    stem_stride: int = 2
    canvas: int = 56
    n_clutter: int = 3
    frag_min: int = 8
    frag_max: int = 14
    n_train: int = 50000
    n_calib: int = 2000
    n_heldout: int = 8000
    n_test: int = 10000
    batch_size: int = 128
    n_random: int = 1
    distill: bool = True
    total_steps: int = 1000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.03
    label_smoothing: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.space not in ("mbv3", "pn"):
            raise ValueError(f"unknown space {self.space!r}; choose 'mbv3' or 'pn'")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.canvas < 28:
            raise ValueError(f"canvas must be >= 28 px, got {self.canvas}")
        if not 1 <= self.frag_min <= self.frag_max <= 28:
            raise ValueError(f"need 1 <= frag_min <= frag_max <= 28, got {self.frag_min}, {self.frag_max}")
        if self.n_train + self.n_calib + self.n_heldout > 60000:
            raise ValueError("n_train + n_calib + n_heldout exceeds the 60,000 train items")
        if not 0 <= self.n_test <= 10000:
            raise ValueError(f"n_test must be in [0, 10000] (Fashion-MNIST test split), got {self.n_test}")
        if min(self.n_train, self.n_calib, self.batch_size, self.total_steps) < 1 or self.n_heldout < 0:
            raise ValueError("sizes, batch_size and total_steps must be positive")


# ------------------------------------------------------------------- data
def make_canvases(images: torch.Tensor, labels: torch.Tensor, seed: int, tag: str, canvas: int = 56,
                  n_clutter: int = 3, frag_min: int = 8, frag_max: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluttered canvases ``[N, canvas, canvas]`` uint8 and their labels, from this pool only.

    Deterministic in ``(images, seed, tag, ...)``; clutter comes from other items of ``images``.
    """
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [N, 28, 28], got {images.dtype} {tuple(images.shape)}")
    n = images.shape[0]
    if n < 2 and n_clutter > 0:
        raise ValueError("need at least 2 items to draw clutter from other items")
    tag_int = int.from_bytes(tag.encode()[:8].ljust(8, b"\0"), "little")
    rng = np.random.default_rng([seed, tag_int])
    src = images.numpy()
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    pos = rng.integers(0, canvas - 28 + 1, size=(n, 2))
    sizes = rng.integers(frag_min, frag_max + 1, size=(n, n_clutter))
    others = (np.arange(n)[:, None] + rng.integers(1, max(n, 2), size=(n, n_clutter))) % n
    u = rng.random((n, n_clutter, 4))
    for i in range(n):
        for j in range(n_clutter):
            s = int(sizes[i, j])
            cy, cx = int(u[i, j, 0] * (28 - s + 1)), int(u[i, j, 1] * (28 - s + 1))
            py, px = int(u[i, j, 2] * (canvas - s + 1)), int(u[i, j, 3] * (canvas - s + 1))
            frag = src[others[i, j], cy:cy + s, cx:cx + s]
            view = out[i, py:py + s, px:px + s]
            np.maximum(view, frag, out=view)
        y, x = int(pos[i, 0]), int(pos[i, 1])
        view = out[i, y:y + 28, x:x + 28]
        np.maximum(view, src[i], out=view)
    return torch.from_numpy(out), labels.clone()


@dataclass
class MiniData:
    """Canvases (uint8) and labels of the four fixed pools."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    eval_x: torch.Tensor  # held-out train canvases, then the test canvases
    eval_y: torch.Tensor
    eval_source: torch.Tensor  # 0 = held-out train, 1 = test
    _inputs: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def eval_inputs(self, resolution: int) -> torch.Tensor:
        """All evaluation canvases as network input at ``resolution`` (:func:`to_input`), computed
        once per resolution and reused by every label: bit-identical to converting batch by batch,
        since both the normalisation and the resize act on each image alone."""
        if resolution not in self._inputs:
            self._inputs[resolution] = to_input(self.eval_x, resolution)
        return self._inputs[resolution]


def build_data(cfg: SupernetConfig, fmnist: dict[str, torch.Tensor] | None = None) -> MiniData:
    """The fixed pools of ``cfg`` from Fashion-MNIST (``load_fashion_mnist()`` when not given)."""
    if fmnist is None:
        from autobuild_lib.benchmarks.fashion_mnist import load_fashion_mnist

        fmnist = load_fashion_mnist()
    kw = dict(canvas=cfg.canvas, n_clutter=cfg.n_clutter, frag_min=cfg.frag_min, frag_max=cfg.frag_max)
    n_all = fmnist["train_images"].shape[0]
    perm = torch.from_numpy(np.random.default_rng([cfg.seed, 1]).permutation(n_all))
    a, b = cfg.n_train, cfg.n_train + cfg.n_calib
    pools = {"train": perm[:a], "calib": perm[a:b], "heldout": perm[b:b + cfg.n_heldout]}
    out = {}
    for name, idx in pools.items():
        out[name] = make_canvases(fmnist["train_images"][idx], fmnist["train_labels"][idx], cfg.seed, name, **kw) \
            if len(idx) else (torch.zeros(0, cfg.canvas, cfg.canvas, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    nt = min(cfg.n_test, fmnist["test_images"].shape[0])
    test = make_canvases(fmnist["test_images"][:nt], fmnist["test_labels"][:nt], cfg.seed, "test", **kw)
    ex = torch.cat([out["heldout"][0], test[0]])
    ey = torch.cat([out["heldout"][1], test[1]])
    src = torch.cat([torch.zeros(len(out["heldout"][1]), dtype=torch.int64), torch.ones(len(test[1]), dtype=torch.int64)])
    return MiniData(out["train"][0], out["train"][1], out["calib"][0], out["calib"][1], ex, ey, src)


def to_input(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 ``[B, H, W]`` canvases -> normalised float ``[B, 3, r, r]`` (channels-last memory).

    Channels-last halves the CPU time of OFA's depthwise-heavy nets (measured: 2.7 -> 1.3 s per
    sandwich step of 128 canvases on one core).
    """
    t = (x.float().div_(255.0).sub_(MEAN).div_(STD)).unsqueeze(1)
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return t.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- networks
def space_of(name: str) -> OFASpace:
    """The :class:`OFASpace` of ``"mbv3"`` or ``"pn"`` with mini resolutions."""
    if name == "mbv3":
        return mbv3()
    if name == "pn":
        return pn()
    raise ValueError(f"unknown space {name!r}; choose 'mbv3' or 'pn'")


def build_supernet(cfg: SupernetConfig) -> nn.Module:
    """The elastic OFA supernet of ``cfg`` (10 classes, no dropout), seeded by ``cfg.seed``."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3, OFAProxylessNASNets

    cls = {"mbv3": OFAMobileNetV3, "pn": OFAProxylessNASNets}.get(cfg.space)
    if cls is None:
        raise ValueError(f"unknown space {cfg.space!r}; choose 'mbv3' or 'pn'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = cls(n_classes=10, dropout_rate=0.0, width_mult=cfg.width_mult, ks_list=list(KERNELS),
                  expand_ratio_list=list(EXPANSIONS), depth_list=[2, 3, 4])
    net.first_conv.conv.stride = (cfg.stem_stride, cfg.stem_stride)
    return net.to(memory_format=torch.channels_last)


def set_arch(net: nn.Module, space: OFASpace, arch: OFAArch) -> int:
    """Activate ``arch`` (paper resolutions) in ``net``; returns the mini input size."""
    from autobuild_lib.core.ir import ofa_settings

    arch = space.validate(arch)
    net.set_active_subnet(**ofa_settings(space, arch))
    return RES_MAP[arch.resolution]


def _largest(space: OFASpace) -> OFAArch:
    return OFAArch(224, tuple(((7, 6),) * max(d) for d in space.depths))


def _smallest(space: OFASpace) -> OFAArch:
    return OFAArch(192, tuple(((3, 3),) * min(d) for d in space.depths))


# ---------------------------------------------------------------- training
def _lr_at(cfg: SupernetConfig, step: int) -> float:
    warm = max(1, int(cfg.warmup_frac * cfg.total_steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = (step - warm) / max(1, cfg.total_steps - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


class Trainer:
    """Sandwich-rule trainer with atomic, resumable checkpoints.

    ``Trainer(cfg, data, ckpt_path)`` loads ``ckpt_path`` when it exists (its stored config must
    equal ``cfg``); :meth:`train` runs up to ``cfg.total_steps`` (or ``max_steps`` more steps,
    or until ``time_budget_s`` wall seconds), saving every ``save_every`` steps and at the end.
    """

    def __init__(self, cfg: SupernetConfig, data: MiniData, ckpt_path: str | Path | None = None) -> None:
        self.cfg, self.data = cfg, data
        self.space = space_of(cfg.space)
        self.net = build_supernet(cfg)
        decay, no_decay = [], []
        for name, p in self.net.named_parameters():
            (no_decay if p.ndim <= 1 else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.step = 0
        self.wall_s = 0.0
        self.log: list[dict] = []
        self.ckpt_path = Path(ckpt_path) if ckpt_path is not None else None
        if self.ckpt_path is not None and self.ckpt_path.exists():
            self.load(self.ckpt_path)

    # -------------------------------------------------------------- io
    def state(self) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(), "step": self.step, "wall_s": self.wall_s, "log": self.log}

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self.ckpt_path
        if path is None:
            raise ValueError("no checkpoint path given")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> None:
        st = torch.load(path, map_location="cpu", weights_only=True)
        if SupernetConfig(**st["config"]) != self.cfg:
            raise ValueError(f"checkpoint {path} was trained with a different config: {st['config']}")
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.wall_s, self.log = int(st["step"]), float(st["wall_s"]), list(st["log"])

    # ------------------------------------------------------------ step
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, bs = self.data.train_x.shape[0], self.cfg.batch_size
        per_epoch = max(1, n // bs)
        epoch, i = divmod(step, per_epoch)
        perm = torch.from_numpy(np.random.default_rng([self.cfg.seed, 2, epoch]).permutation(n))
        idx = perm[i * bs:(i + 1) * bs]
        return self.data.train_x[idx], self.data.train_y[idx]

    def train_step(self) -> dict:
        cfg, net = self.cfg, self.net
        rng = np.random.default_rng([cfg.seed, 3, self.step])
        torch.manual_seed(int(rng.integers(2**31)))
        x, y = self._batch(self.step)
        lr = _lr_at(cfg, self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        net.train()
        self.opt.zero_grad(set_to_none=True)
        archs = [_largest(self.space), _smallest(self.space)] + [self.space.sample(rng) for _ in range(cfg.n_random)]
        losses = []
        soft = None
        for j, arch in enumerate(archs):
            r = set_arch(net, self.space, arch)
            logits = net(to_input(x, r))
            if j == 0 or not cfg.distill:
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                soft = F.softmax(logits.detach(), dim=1)
            else:
                loss = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
            loss.backward()
            losses.append(float(loss.detach()))
        self.opt.step()
        self.step += 1
        return {"step": self.step, "lr": lr, "loss_max": losses[0], "loss_min": losses[1],
                "loss_rand": float(np.mean(losses[2:])) if len(losses) > 2 else float("nan")}

    def train(self, max_steps: int | None = None, time_budget_s: float | None = None, save_every: int = 25,
              progress: bool = True, log_every: int = 25) -> dict:
        from tqdm.auto import tqdm

        target = self.cfg.total_steps if max_steps is None else min(self.cfg.total_steps, self.step + max_steps)
        t_start = time.perf_counter()
        bar = tqdm(total=target, initial=self.step, disable=not progress, desc=f"supernet {self.cfg.space}")
        last = None
        while self.step < target:
            if time_budget_s is not None and time.perf_counter() - t_start >= time_budget_s:
                break
            t0 = time.perf_counter()
            last = self.train_step()
            self.wall_s += time.perf_counter() - t0
            last["wall_s"] = self.wall_s
            if self.step % log_every == 0 or self.step == target:
                self.log.append(last)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss_max']:.3f}/{last['loss_min']:.3f}")
            if self.ckpt_path is not None and (self.step % save_every == 0 or self.step == target):
                self.save()
        bar.close()
        if self.ckpt_path is not None:
            self.save()
        return {"step": self.step, "wall_s": self.wall_s, "done": self.step >= self.cfg.total_steps, "last": last}


# -------------------------------------------------------------- evaluation
def extract_subnet(net: nn.Module, space: OFASpace, arch: OFAArch) -> tuple[nn.Module, int]:
    """OFA's static subnet of ``arch`` with inherited weights, and its mini input size."""
    r = set_arch(net, space, arch)
    return net.get_active_subnet(preserve_weight=True).to(memory_format=torch.channels_last), r


@torch.no_grad()
def recalibrate_bn(model: nn.Module, calib_x: torch.Tensor, resolution: int, batch_size: int = 250) -> nn.Module:
    """Recompute every BatchNorm's statistics (cumulative average) on the fixed calibration canvases."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, calib_x.shape[0], batch_size):
        model(to_input(calib_x[i:i + batch_size], resolution))
    return model.eval()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into the conv before it
    (``torch.fx.experimental.optimization.fuse``): one pass less over every feature map.  On the
    40 reliability subnets of design C it leaves every accuracy and cross-entropy label unchanged
    (``tests/test_miniofa.py`` checks a stored one)."""
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval())


@torch.inference_mode()
def evaluate_subnet(net: nn.Module, space: OFASpace, arch: OFAArch, data: MiniData,
                    batch_size: int = 250, eval_idx: torch.Tensor | None = None) -> dict:
    """Top-1 accuracy (%) and mean cross-entropy of ``arch`` after BN recalibration.

    Returns ``acc``, ``ce`` and the per-image ``correct`` (bool) and ``nll`` arrays over the
    evaluation canvases (or ``eval_idx`` of them), so callers can split them.  The inputs come
    from :meth:`MiniData.eval_inputs` (prepared once per resolution) and the recalibrated BNs
    are folded into the convs (:func:`fold_batchnorm`).
    """
    arch = space.validate(arch)
    sub, r = extract_subnet(net, space, arch)
    recalibrate_bn(sub, data.calib_x, r)
    sub = fold_batchnorm(sub)
    xs = data.eval_inputs(r) if eval_idx is None else data.eval_inputs(r)[eval_idx]
    ys = data.eval_y if eval_idx is None else data.eval_y[eval_idx]
    correct, nll = [], []
    for i in range(0, xs.shape[0], batch_size):
        logits = sub(xs[i:i + batch_size])
        yb = ys[i:i + batch_size]
        correct.append(logits.argmax(1) == yb)
        nll.append(F.cross_entropy(logits, yb, reduction="none"))
    c, l = torch.cat(correct).numpy(), torch.cat(nll).numpy()
    return {"acc": 100.0 * float(c.mean()), "ce": float(l.mean()), "correct": c, "nll": l, "resolution": r}
