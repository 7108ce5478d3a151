"""Mini panoptic task for Sec. 5.2 / 7.7: Fashion-MNIST mosaics with things and textured stuff."""
from autobuild_lib.benchmarks.panoptic.mosaics import (
    N_CLASSES,
    STUFF,
    THINGS,
    Mosaics,
    make_mosaics,
    panoptic_quality,
    to_panoptic,
)

__all__ = ["N_CLASSES", "STUFF", "THINGS", "Mosaics", "make_mosaics", "panoptic_quality", "to_panoptic"]
