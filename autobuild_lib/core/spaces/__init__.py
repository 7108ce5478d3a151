"""Search spaces of the study: OFA MobileNetV3 / ProxylessNAS and the SD U-Net spaces."""
from __future__ import annotations

from autobuild_lib.core.spaces.base import SearchSpace
from autobuild_lib.core.spaces.ofa import OFAArch, OFASpace, mbv3, mbv3_insight, pn

__all__ = ["SearchSpace", "OFAArch", "OFASpace", "mbv3", "mbv3_insight", "pn", "get_space"]


def get_space(name: str) -> SearchSpace:
    """Look a space up by name: mbv3, pn, sd, sd-hw, mbv3-insight-{gpu,cpu,npu}."""
    from autobuild_lib.core.spaces import sd

    factories = {
        "mbv3": mbv3,
        "pn": pn,
        "sd": sd.sd_unet,
        "sd-hw": sd.sd_unet_hw,
        "mbv3-insight-gpu": lambda: mbv3_insight("gpu"),
        "mbv3-insight-cpu": lambda: mbv3_insight("cpu"),
        "mbv3-insight-npu": lambda: mbv3_insight("npu"),
    }
    if name not in factories:
        raise ValueError(f"unknown space {name!r}; available: {sorted(factories)}")
    return factories[name]()
