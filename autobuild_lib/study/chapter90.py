"""Chapter 90_verdicts: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from autobuild_lib.paths import BOOK_DIR
from autobuild_lib.study.claims import CLAIMS_ENV, load_claims
from autobuild_lib.study.params import ChapterParams


@dataclass(frozen=True, kw_only=True)
class Params(ChapterParams):
    """The notebook's parameters (only shown: this page runs no experiment), checked once."""

    seed: int


def load(p: Params):
    """AutoBuild, reproduced: every chapter's recorded claims and this study's verdicts."""
    claims_dir = os.environ.get(CLAIMS_ENV) or str(BOOK_DIR / "chapters" / "claims")
    claims = load_claims(claims_dir)
    chapters = sorted(claims["chapter"].unique())
    display(
        Markdown(
            f"{len(claims)} claims from {len(chapters)} chapters ({', '.join(chapters) or 'none'}); "
            f"profile of this build: `{p.profile}`, dataset: `{p.dataset}`."
        )
    )
    return claims


def verdicts_per_chapter(claims):
    """Verdicts per chapter."""
    if claims.empty:
        display(Markdown("**No chapter has recorded its claims yet**: run `./study build`."))
    else:
        counts = (
            claims.groupby(["chapter", "category"])
            .size()
            .unstack(fill_value=0)
            .reindex(columns=["agrees", "disagrees", "open"], fill_value=0)
        )
        fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(counts)))
        counts.iloc[::-1].plot.barh(stacked=True, ax=ax, color=["#4c9a6a", "#c8553d", "#b0b0b0"])
        ax.set_xlabel("claims")
        ax.set_ylabel("")
        ax.set_title("The paper's claims, as this study's chapters judged them")
        plt.tight_layout()
        plt.show()
        display(counts)
