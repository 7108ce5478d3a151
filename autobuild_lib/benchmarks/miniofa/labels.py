"""Label functions of the Mini-OFA benchmark: one call = one architecture = one work unit.

* :func:`static_unit`: ``flops`` and ``n_params`` of the ImageNet-scale static subnet (1000
  classes, OFA's release widths MBv3 w1.2 / PN w1.3, input 192/208/224), counted by OFA's own
  ``count_net_flops`` / ``count_parameters``.  ``flops`` is OFA's convention: multiply-accumulates
  of every conv and linear layer, in millions (MFLOPs); ``n_params`` in millions.
* :func:`latency_unit`: ``latency_cpu`` (ms), wall-clock of one batch-1 forward pass of that
  ImageNet-scale subnet on this machine: 1 torch thread, NCHW, ``torch.inference_mode``,
  ``warmup`` untimed passes, then the median of ``repeats`` timed passes.
* :func:`acc_unit`: ``acc`` (top-1 %), ``acc_a`` / ``acc_b`` (top-1 % on each of the two fixed
  stratified halves of the evaluation canvases, :func:`~.reliability.split_halves`; ``acc`` is
  their mean over all images), ``ce`` (mean cross-entropy) of the mini subnet with
  inherited supernet weights after BN recalibration, on all evaluation canvases
  (:func:`~autobuild_lib.benchmarks.miniofa.supernet.evaluate_subnet`), and ``flops_mini`` (MFLOPs of that
  mini subnet at its mini input size, same counting).  Runs on 1 thread, so the result is
  bit-identical in any process.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import platform
import time
from pathlib import Path

import numpy as np
import torch

from autobuild_lib.benchmarks.miniofa.reliability import split_halves
from autobuild_lib.benchmarks.miniofa.supernet import (
    MiniData,
    SupernetConfig,
    build_data,
    build_supernet,
    evaluate_subnet,
    extract_subnet,
    space_of,
)
from autobuild_lib.core.spaces.ofa import OFASpace

__all__ = ["static_unit", "latency_unit", "acc_unit", "measure_latency_ms", "save_supernet", "load_supernet",
           "machine_info", "count_flops"]


def machine_info() -> dict:
    """Where labels were measured: CPU model, cores, OS, library versions."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    import ofa  # noqa: F401  (version of the installed package)

    return {"cpu": model or "unknown", "n_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "ofa": version("ofa"),
            "torch_threads": 1}


def count_flops(model: torch.nn.Module, resolution: int) -> float:
    """OFA's FLOPs count (MACs of conv + linear layers) of ``model`` at ``resolution``, in millions."""
    from ofa.utils.pytorch_utils import count_net_flops

    return float(count_net_flops(model, (1, 3, resolution, resolution))) / 1e6


def _arch(space_name: str, arch: str):
    space = space_of(space_name)
    return space, space.from_string(arch)


def static_unit(space_name: str, arch: str) -> dict:
    """``{"arch", "flops", "n_params"}`` of the ImageNet-scale subnet (see module docstring)."""
    from ofa.utils.pytorch_utils import count_parameters

    from autobuild_lib.core.ir import ofa_subnet

    torch.set_num_threads(1)
    space, a = _arch(space_name, arch)
    net = ofa_subnet(space, a)
    return {"arch": arch, "flops": count_flops(net, a.resolution), "n_params": count_parameters(net) / 1e6}


@torch.inference_mode()
def measure_latency_ms(model: torch.nn.Module, resolution: int, warmup: int = 3, repeats: int = 11) -> float:
    """Median wall-clock ms of a batch-1 forward pass (after ``warmup`` untimed passes)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    model.eval()
    x = torch.zeros(1, 3, resolution, resolution)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def latency_unit(space_name: str, arch: str, warmup: int = 3, repeats: int = 11) -> dict:
    """``{"arch", "latency_cpu"}``: measured latency (ms) of the ImageNet-scale subnet, 1 thread."""
    from autobuild_lib.core.ir import ofa_subnet

    torch.set_num_threads(1)
    space, a = _arch(space_name, arch)
    return {"arch": arch, "latency_cpu": measure_latency_ms(ofa_subnet(space, a), a.resolution, warmup, repeats)}


# ------------------------------------------------------------------ supernet weights
def save_supernet(net: torch.nn.Module, cfg: SupernetConfig, path: str | Path) -> Path:
    """Weights + config only (what the evaluator needs), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{path.name}.{os.getpid()}")
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save({"config": dataclasses.asdict(cfg), "model": state}, tmp)
    os.replace(tmp, path)
    return path


def load_supernet(path: str | Path) -> tuple[SupernetConfig, torch.nn.Module]:
    """Read :func:`save_supernet` output (or a training checkpoint); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"supernet weights {path} not found; restore them with `git checkout -- {path}` "
                                "or retrain with `python -m autobuild_lib generate mini-ofa --stages supernet`")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        cfg = SupernetConfig(**st["config"])
        net = build_supernet(cfg)
        net.load_state_dict(st["model"])
    except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path} is not a readable Mini-OFA supernet file ({type(exc).__name__}: {exc})") from None
    return cfg, net.eval()


@functools.lru_cache(maxsize=2)
def _loaded(path: str, mtime: float) -> tuple[SupernetConfig, torch.nn.Module, MiniData, OFASpace]:
    cfg, net = load_supernet(path)
    return cfg, net, build_data(cfg), space_of(cfg.space)


def acc_unit(supernet_path: str, arch: str) -> dict:
    """``{"arch", "acc", "acc_a", "acc_b", "ce", "flops_mini"}`` of ``arch`` under the supernet at ``supernet_path``."""
    torch.set_num_threads(1)
    p = Path(supernet_path)
    cfg, net, data, space = _loaded(str(p), p.stat().st_mtime if p.exists() else 0.0)
    a = space.from_string(arch)
    r = evaluate_subnet(net, space, a, data)
    ia, ib = split_halves(data)  # fixed seed: the same halves for every label
    sub, res = extract_subnet(net, space, a)
    return {"arch": arch, "acc": r["acc"], "acc_a": 100.0 * float(r["correct"][ia].mean()),
            "acc_b": 100.0 * float(r["correct"][ib].mean()), "ce": r["ce"], "flops_mini": count_flops(sub, res)}

