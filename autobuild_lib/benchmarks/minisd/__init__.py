"""Mini-SD benchmark: a CPU-sized inpainting diffusion U-Net with SD v1.4's topology (Sec. 5.3, 7.9-7.10)."""
from autobuild_lib.benchmarks.minisd.diffusion import Schedule, ddim_inpaint, diffusion_loss
from autobuild_lib.benchmarks.minisd.fid import FeatureNet, fid_metric, train_classifier
from autobuild_lib.benchmarks.minisd.masks import eval_masks, random_masks
from autobuild_lib.benchmarks.minisd.task import MiniSDConfig, load_task
from autobuild_lib.benchmarks.minisd.train import count_cost, evaluate, label_variant, train_unet
from autobuild_lib.benchmarks.minisd.unet import MiniUNet, inherit

__all__ = ["Schedule", "ddim_inpaint", "diffusion_loss", "FeatureNet", "fid_metric", "train_classifier",
           "eval_masks", "random_masks", "MiniSDConfig", "load_task", "count_cost", "evaluate", "label_variant",
           "train_unet", "MiniUNet", "inherit"]
