"""The Mini-SD benchmark's constants, shared by its generator, data card and loader."""
from __future__ import annotations

from autobuild_lib.benchmarks.minisd.task import MiniSDConfig
from autobuild_lib.paths import DATA_DIR, REPO_ROOT

MINI_SD_DIR = DATA_DIR / "mini-sd"
WORK_CACHE = REPO_ROOT / ".cache" / "minisd"
CONFIG = MiniSDConfig()
STAGES = ("classifier", "base", "reliability", "labels", "constructions", "hw_labels", "hw_latency",
          "hw_constructions")
#: Sec. 7.10 fine-tunes 30k steps against Sec. 7.9's 20k: the hardware space gets 1.5x the budget.
HW_FT_FACTOR = 1.5
HW_METRICS = ("latency_cpu", "flops", "n_params")
HW_METHODS = ("autobuild", "unconstrained", "es")
LATENCY_ROUNDS, LATENCY_REPEATS = 7, 15
ARCH_SEED = 7
N_LABELS = {"sd": 68, "sd-hw": 90}
N_RELIABILITY = 10
LABEL_SEED = 0
SECOND_SEED = 1
CKPT_EVERY = 100
