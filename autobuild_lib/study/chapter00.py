"""Chapter 00_overview: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from autobuild_lib.core.spaces import get_space


def random_architecture(n_samples, seed):
    """What does a random architecture look like?."""
    rng = np.random.default_rng(seed)
    records = []
    for name in ("mbv3", "pn"):
        sp = get_space(name)
        for _ in range(n_samples):
            a = sp.sample(rng)
            layers = [l for st in a.stages for l in st]
            records.append(
                {
                    "space": name,
                    "total depth": len(layers),
                    "mean kernel": np.mean([k for k, _ in layers]),
                    "resolution": a.resolution,
                }
            )
    df = pd.DataFrame(records)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.histplot(df, x="total depth", hue="space", discrete=True, multiple="dodge", ax=axes[0])
    sns.kdeplot(df, x="mean kernel", hue="space", fill=True, ax=axes[1])
    axes[0].set_title("Layers per architecture")
    axes[1].set_title("Mean kernel size per architecture")
    plt.tight_layout()
    plt.show()
    shown = df.groupby("space")[["total depth", "mean kernel"]].describe().round(2)
    return shown
