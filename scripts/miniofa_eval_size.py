"""How many evaluation images the accuracy labels need: split-half SRCC by evaluation-set size.

Usage: python scripts/miniofa_eval_size.py PILOT_DIR [SIZES...]
Reads PILOT_DIR/per_image.npz (written by scripts/miniofa_pilot.py) and prints a markdown table
of autobuild_lib.benchmarks.miniofa.reliability.split_half_by_size (20 random draws per size).
"""
import sys

import numpy as np

from autobuild_lib.benchmarks.miniofa.reliability import split_half_by_size

d = np.load(f"{sys.argv[1]}/per_image.npz")
n_max = 2 * min(len(d["half_a"]), len(d["half_b"]))
sizes = [int(s) for s in sys.argv[2:]] or [s for s in (1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000) if s < n_max] + [n_max]
t = split_half_by_size(d["correct"], (d["half_a"], d["half_b"]), sizes)
print(f"{sys.argv[1]}: {d['correct'].shape[0]} subnets x {d['correct'].shape[1]} images")
print(t.to_markdown(index=False, floatfmt=".3f"))
