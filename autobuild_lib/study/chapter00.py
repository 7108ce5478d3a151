"""Chapter 00_overview: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from autobuild_lib.core.spaces import get_space
from autobuild_lib.study.params import ChapterParams


@dataclass(frozen=True, kw_only=True)
class Params(ChapterParams):
    """The notebook's parameters, checked once; the profile resolved (smoke: 200 samples, full: 3,000)."""

    seed: int
    n_samples: int = field(init=False, default=3000)  # random architectures drawn per space

    def resolve(self) -> None:
        self._set(n_samples=200 if self.smoke else 3000)


def random_architecture(p: Params):
    """What does a random architecture look like?."""
    rng = np.random.default_rng(p.seed)
    records = []
    for name in ("mbv3", "pn"):
        sp = get_space(name)
        for _ in range(p.n_samples):
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
