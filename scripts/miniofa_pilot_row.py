"""Copy a finished pilot into data/mini-ofa/pilots/ and print its PILOT.md table row.

Usage: python scripts/miniofa_pilot_row.py NAME DATE 'DESCRIPTION' [SRC_ROOT]
NAME is the pilot folder (e.g. C-pn) under SRC_ROOT (default .cache/miniofa), written by scripts/miniofa_pilot.py.
"""
import json
import shutil
import sys
from pathlib import Path

name, date, desc = sys.argv[1:4]
src = Path(sys.argv[4] if len(sys.argv) > 4 else ".cache/miniofa") / name
dst = Path("data/mini-ofa/pilots") / name
dst.mkdir(parents=True, exist_ok=True)
for f in ("reliability.json", "per_image.npz", "trainlog.json"):
    shutil.copy(src / f, dst / f)
c = json.loads((src / "reliability.json").read_text())
design, space = name.rsplit("-", 1)
steps = c["steps"]
print(f"| {design} ({date}) | {space} | {desc} | {steps} ({steps * c['config']['batch_size'] / c['config']['n_train']:.2f} ep) | "
      f"{c['train_wall_s'] / 60:.1f} min | {c['s_per_step']:.2f} | {c['n_eval']} ({c['n_half'][0]}+{c['n_half'][1]}), "
      f"calib {c['config']['n_calib']} | {c['acc_mean']:.2f} +/- {c['acc_std']:.2f} [{c['acc_min']:.2f}, {c['acc_max']:.2f}], "
      f"range {c['acc_range']:.2f} | **{c['srcc_split_acc']:.3f}** | {c['srcc_split_ce']:.3f} | **{c['srcc_acc_depth']:.3f}** | "
      f"{c['srcc_ce_depth']:.3f} | {c['srcc_acc_resolution']:.3f} | {c['eval_wall_s'] / 60:.1f} min | "
      f"nproc {c['nproc']}, torch threads {c['threads']} |")
