"""The Mini-Panoptic benchmark's constants, shared by its generator, data card and loader."""
from __future__ import annotations

from autobuild_lib.benchmarks.panoptic.train import PanopticConfig
from autobuild_lib.paths import DATA_DIR, REPO_ROOT

MINI_PANOPTIC_DIR = DATA_DIR / "mini-panoptic"
BACKBONE = DATA_DIR / "mini-ofa" / "pilots" / "C-mbv3" / "supernet.pt"
WORK_CACHE = REPO_ROOT / ".cache" / "panoptic"
CONFIG = PanopticConfig()
#: the reliability bar (issue 15): split-half SRCC of pseudo PQ (validation halves) on the
#: reliability architectures; also applied to the fully fine-tuned labels (test halves)
RELIABILITY_BAR = 0.85
STAGES = ("supernet", "reliability", "noise", "pseudo", "full", "constructions")
N_NOISE = 4000
NOISE_SIZES = (500, 1000, 2000, 4000)
#: the paper's MBv3 panoptic label equations (PQ in %, FLOPs in MFLOPs of the mini model)
EQUATIONS = ("PQ/log10(flops)", "sqrt(PQ) - sqrt(flops)")
N_PSEUDO = 1300
N_FULL = 100
N_RELIABILITY = 40
K = 2
ARCH_SEED = 11
RELIABILITY_SEED = 12
PREDICTOR_EPOCHS = 300
