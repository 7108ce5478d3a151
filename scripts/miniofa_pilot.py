"""Mini-OFA reliability pilot: train a supernet design, then measure label reliability.

Usage: python scripts/miniofa_pilot.py NAME TIME_BUDGET_S 'CONFIG_JSON' [OUT_ROOT]
Runs on one torch thread; resumable (rerun the same command). Writes OUT_ROOT/NAME/{ckpt.pt,
trainlog.json, rows.jsonl, reliability.json}; the table in data/mini-ofa/PILOT.md is made from these.
"""
import dataclasses
import json
import os
import platform
import sys
import time

import torch

torch.set_num_threads(1)
from autobuild_lib.benchmarks.miniofa import SupernetConfig, Trainer, build_data, measure_reliability  # noqa: E402

name, budget, cfg_json = sys.argv[1], float(sys.argv[2]), sys.argv[3]
root = sys.argv[4] if len(sys.argv) > 4 else ".cache/miniofa"
cfg = SupernetConfig(**json.loads(cfg_json))
out = os.path.join(root, name)
os.makedirs(out, exist_ok=True)
t = time.time()
data = build_data(cfg)
print("data", round(time.time() - t, 1), tuple(data.train_x.shape), tuple(data.eval_x.shape), flush=True)
tr = Trainer(cfg, data, f"{out}/ckpt.pt")
res = tr.train(time_budget_s=budget, save_every=25)
print("train", res, flush=True)
with open(f"{out}/trainlog.json", "w") as f:
    json.dump(tr.log, f)
if not res["done"]:
    sys.exit(0)
with open(f"{out}/rows.jsonl", "w") as rows_f:
    rel = measure_reliability(tr.net, tr.space, data, n_archs=40, seed=0,
                              on_row=lambda r: (rows_f.write(json.dumps(r) + "\n"), rows_f.flush()))
import numpy as np  # noqa: E402

np.savez_compressed(f"{out}/per_image.npz", correct=rel.pop("correct"), nll=rel.pop("nll"),
                    half_a=rel["halves"][0], half_b=rel.pop("halves")[1])
rel.update(config=dataclasses.asdict(cfg), steps=tr.step, train_wall_s=tr.wall_s,
           s_per_step=tr.wall_s / max(tr.step, 1), processor=platform.processor(), nproc=os.cpu_count(),
           threads=torch.get_num_threads(), done=res["done"])
with open(f"{out}/reliability.json", "w") as f:
    json.dump(rel, f, indent=1)
print({k: v for k, v in rel.items() if k != "rows"}, flush=True)
