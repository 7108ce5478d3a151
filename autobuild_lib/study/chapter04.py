"""Chapter 04_module_scores: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from autobuild_lib.core import build, interpret
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.core.training import TrainConfig
from autobuild_lib.study import claims as C
from autobuild_lib.study import construction, paper
from autobuild_lib.study.depth import depth_srcc, show_depth
from autobuild_lib.study.params import ChapterParams, check_int

#: The OFA node features of Figs. 9-10.
FEATURES = ("stage", "layer", "expansion", "kernel", "resolution")


@dataclass(frozen=True, kw_only=True)
class Params(ChapterParams):
    """The notebook's parameters, checked once; the profile resolved (smoke: 120 architectures, at most
    3 epochs; full: the paper's recipe on every labelled architecture)."""

    seed: int
    seeds: list[int]
    data_dir: str
    space: str
    equations: dict[str, str]
    table2_equation: str
    epochs: int
    resolution: int
    k: int
    predictor_cache: str
    eqs: dict[str, str] = field(init=False, default_factory=dict)  # parsed equation text -> 'max' | 'min'
    n_archs: int | None = field(init=False, default=None)  # None: every labelled architecture
    config: TrainConfig | None = field(init=False, default=None)
    pcache: Path | None = field(init=False, default=None)

    def resolve(self) -> None:
        equations = self.equations
        if not isinstance(equations, dict) or not equations:
            raise ValueError("equations must be a non-empty mapping {label equation: 'max' | 'min'}")
        bad = {e: d for e, d in equations.items() if d not in ("max", "min")}
        if bad:
            raise ValueError(f"every equation needs direction 'max' or 'min'; got {bad}")
        eqs = {LabelEquation.parse(e).text: d for e, d in equations.items()}  # raises naming what is not allowed
        table2_equation = LabelEquation.parse(self.table2_equation).text
        if table2_equation not in eqs:
            raise ValueError(f"table2_equation {table2_equation!r} must be one of the equations {list(eqs)}")
        check_int("epochs", self.epochs, 1)
        check_int("k", self.k, 1)
        check_int("resolution", self.resolution, 1)
        if not isinstance(self.predictor_cache, str):
            raise ValueError(f"predictor_cache must be a folder path string ('' for none), got {self.predictor_cache!r}")
        epochs = min(self.epochs, 3) if self.smoke else self.epochs
        self._set(eqs=eqs, table2_equation=table2_equation, epochs=epochs, n_archs=120 if self.smoke else None,
                  config=TrainConfig(epochs=epochs, seed=self.seed),
                  pcache=construction.resolve_predictor_cache(self.predictor_cache, self.profile, self.dataset))

    def summary(self) -> str:
        """One line with the resolved settings."""
        return (f"profile={self.profile}  dataset={self.dataset}  space={self.space}  epochs={self.epochs}  "
                f"seed={self.seed}  equations={self.eqs}")


def train_predictors(p: Params, ls):
    """One AutoBuild predictor per label equation."""
    builds, rows = {}, []
    trained = build.build_equations(ls, list(p.eqs), p.config, resolution=p.resolution, cache_dir=p.pcache)
    for (e, direction), b in zip(p.eqs.items(), trained):
        builds[e] = b
        m = b.run.result.metrics
        print(
            f"{e}: {'loaded from the cache, trained' if b.info['cached'] else 'trained'} in {b.info['train_s']:.0f} s "
            f"({b.info['train_s'] / p.epochs:.2f} s per epoch on {len(b.run.result.train_idx)} graphs); "
            f"{len(b.run.scores):,} modules scored in {b.info['score_s']:.1f} s"
        )
        rows.append(
            {
                "equation": e,
                "best is": direction,
                **{f"SRCC hop {h}": v for h, v in enumerate(m.get("srcc_hop", []))},
                "SRCC prediction": m.get("srcc_pred", np.nan),
                "MAE": m.get("mae", np.nan),
            }
        )
    metrics = pd.DataFrame(rows).set_index("equation")
    shown = metrics
    return builds, shown


def table2(p: Params, PAPER_HOPS, builds):
    """Table 2: hop moments and label moments."""
    t2 = builds[p.table2_equation].run
    display(
        Markdown(
            f"**Label moments** of `{p.table2_equation}` over the {len(t2.result.train_idx)} training architectures, "
            "N(mu, sigma) per unit u (rows) and module length l (columns):"
        )
    )
    display(interpret.table2_labels(t2.label_moments))
    display(Markdown("Number of training architectures behind each cell:"))
    display(t2.label_moments["n"].unstack("layers").fillna(0).astype(int))

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, (e, b) in enumerate(builds.items()):
        hm = b.run.hop_moments
        axes[0].errorbar(hm.index + 0.06 * i, hm["mu"], yerr=hm["sigma"], marker="o", capsize=3, label=e)
    ph = pd.DataFrame(PAPER_HOPS, index=["mu", "sigma"]).T
    axes[0].errorbar(
        ph.index - 0.06,
        ph["mu"],
        yerr=ph["sigma"],
        fmt="s--",
        color="grey",
        capsize=3,
        label="paper, MBv3 acc (Table 2)",
    )
    axes[0].set(xlabel="hop m", ylabel="||h_v^m||_1 over training nodes", title="Hop moments: mean +/- std")
    axes[0].legend(fontsize=8)
    lm = t2.label_moments.reset_index()
    for ln, g in lm.groupby("layers"):
        axes[1].errorbar(g["unit"] + 0.1 * (ln - 3), g["mu"], yerr=g["sigma"], fmt="o", capsize=3, label=f"l = {ln}")
    axes[1].set(
        xlabel="unit u",
        ylabel=p.table2_equation,
        xticks=sorted(lm["unit"].unique()),
        title=f"Label moments of {p.table2_equation}: mean +/- std",
    )
    axes[1].legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    return t2


def depth_against_table2(p: Params, t2, ls):
    """Table 2's growth of accuracy with module length, beside this study's (accuracy predictors only)."""
    if p.table2_equation != "acc":
        display(Markdown(f"Table 2's label moments are accuracies; `{p.table2_equation}` is not compared."))
        return None
    return show_depth({p.space: depth_srcc(ls.archs, ls.labels("acc"))}, t2.label_moments, p.space, p.dataset,
                      f"Mean `acc` of the training architectures with 2 and 4 layers per unit ({p.space})")


def eq5_scores(p: Params, t2):
    """Eq. 5: the distribution shift, before and after."""
    sc = t2.scores
    ex = sc[sc["unit"] == 1].sort_values("raw", ascending=False, kind="stable").iloc[0]
    hm_ex, lm_ex = t2.hop_moments.loc[ex["hop"]], t2.label_moments.loc[(1, ex["layers"])]
    display(
        pd.DataFrame(
            [
                {
                    "module": ex["module"],
                    "l": ex["layers"],
                    "m": ex["hop"],
                    "||h_v^m||_1": ex["raw"],
                    "mu_m^h": hm_ex["mu"],
                    "sigma_m^h": hm_ex["sigma"],
                    "mu_(u,l)^y": lm_ex["mu"],
                    "sigma_(u,l)^y": lm_ex["sigma"],
                    "score* (Eq. 5)": ex["score"],
                }
            ]
        ).set_index("module")
    )

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, col, title in (
        (axes[0], "raw", "before Eq. 5: raw ||h_v^m||_1"),
        (axes[1], "score", "after Eq. 5: score*"),
    ):
        sns.boxplot(sc, x="unit", y=col, hue="layers", fliersize=0.5, ax=ax, palette="crest")
        ax.set(title=f"{p.table2_equation}: {title}", ylabel=col if col == "raw" else f"score* ({p.table2_equation} scale)")
    plt.tight_layout()
    plt.show()


def fe_mlp_scores(p: Params, builds, labels, ls, sp_schema):
    """FE-MLP scores of every feature value (Figs. 9-10)."""
    fe = interpret.fe_score_table({e: b.run.result.model for e, b in builds.items()}, FEATURES)
    effects = {
        e: interpret.value_effects(ls.graphs, labels[e], FEATURES, b.run.result.train_idx) for e, b in builds.items()
    }
    present = effects[p.table2_equation]["share"] > 0
    fe = fe[present.reindex(fe.index).fillna(False).to_numpy()]
    # the untrained start of every predictor (all share `seed` and sizes, hence one start)
    init = interpret.fe_score_table({"init": interpret.initial_predictor(p.config, sp_schema)}, FEATURES)["init"].loc[
        fe.index
    ]

    fig, axes = plt.subplots(
        1,
        len(FEATURES),
        figsize=(3.1 * len(FEATURES) + 1, 3.6),
        gridspec_kw={"width_ratios": [len(fe.loc[f]) for f in FEATURES]},
    )
    for ax, feat in zip(axes, FEATURES):
        part = fe.loc[feat]
        part.index = [str(v) for v in part.index]
        part.plot.bar(ax=ax, legend=False, width=0.8, rot=0)
        ax.scatter(
            range(len(part)),
            init.loc[feat].to_numpy(),
            marker="_",
            s=400,
            color="black",
            zorder=3,
            label="before training",
        )
        ax.set(title=feat, xlabel="", ylabel="FE-MLP score" if feat == FEATURES[0] else "")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"FE-MLP scores |f_c(value)| per feature value ({p.space}, {p.dataset})")
    plt.tight_layout()
    plt.show()
    moved = fe.sub(init, axis=0).abs().groupby(level="feature", sort=False).mean()
    display(
        Markdown(
            "Mean |trained score - score before training| per feature (a value whose score barely moved "
            "carries its random start, not knowledge):"
        )
    )
    display(moved)
    shown = fe.assign(**{"before training": init})
    return effects, fe, init, shown


def claims(
    p: Params, PAPER_HOPS, agreement, builds, composition, ls, sp, t2, t_start,
):
    """Paper vs this study."""
    comparison = None
    hm2 = t2.hop_moments
    hop_ms = [m for m in PAPER_HOPS if m in hm2.index]
    mus, sds = hm2.loc[hop_ms, "mu"].to_numpy(), hm2.loc[hop_ms, "sigma"].to_numpy()
    ratios = mus / np.array([PAPER_HOPS[m][0] for m in hop_ms])
    lmt = t2.label_moments
    units = sorted(lmt.index.get_level_values("unit").unique())
    released = p.dataset == "autobuild-release"
    is_acc = p.table2_equation == "acc"
    comparable = released and is_acc and p.space == "mbv3"
    why_not = C.not_comparable(
        "Mini-OFA accuracy is not ImageNet accuracy"
        if not released
        else f"Table 2 is MBv3 accuracy; this run: {p.space}, {p.table2_equation}"
    )

    def cell(u, ln, col):
        return lmt[col].get((u, ln), np.nan)

    l2 = [(cell(u, 2, "mu"), cell(u, 2, "sigma")) for u in units if (u, 2) in lmt.index]
    PAPER_L4 = paper.TABLE2_L4
    l2_mu, l2_sd = paper.TABLE2_L2
    l4 = {u: (cell(u, 4, "mu"), cell(u, 4, "sigma")) for u in PAPER_L4 if (u, 4) in lmt.index}
    l2_ok = all(abs(m - l2_mu) <= 0.3 and abs(s - l2_sd) <= 0.3 for m, s in l2) if l2 else None
    best_u = max(PAPER_L4, key=lambda u: PAPER_L4[u][0])
    l4_ok = (
        all(abs(l4[u][0] - PAPER_L4[u][0]) <= 0.3 and abs(l4[u][1] - PAPER_L4[u][1]) <= 0.3 for u in l4)
        if len(l4) == len(PAPER_L4)
        else None
    )
    grow = [cell(u, max(sp.unit_depths(u - 1)), "mu") - cell(u, min(sp.unit_depths(u - 1)), "mu") for u in units]
    l4_means = pd.Series({u: v[0] for u, v in l4.items()})
    raw_grows = {
        e: all(
            np.all(np.diff(g["raw mean"].to_numpy()) > 0)
            for _, g in interpret.shift_summary(b.run.scores, p.k).groupby(level="unit")
        )
        for e, b in builds.items()
    }
    changed = {
        e: sum(
            set(g.sort_values("raw", ascending=False, kind="stable").head(p.k)["module"])
            != set(g.sort_values("score", ascending=False, kind="stable").head(p.k)["module"])
            for _, g in b.run.scores.groupby("unit")
        )
        for e, b in builds.items()
    }
    helps_n, helps_d, helps_chance = int(agreement["helps"].sum()), len(agreement), float(agreement["chance"].sum())

    min_eq = [e for e in p.eqs if p.eqs[e] == "min"]

    rows = [
        {
            "claim": "hop moments mu_m^h grow with m (Table 2)",
            "paper": " < ".join(f"{mu:.2f}" for mu, _ in paper.TABLE2_HOPS.values()),
            "this study": " < ".join(f"{v:.2f}" for v in hm2["mu"]),
            "verdict": C.verdict(bool(np.all(np.diff(hm2["mu"].to_numpy()) > 0))),
        },
        {
            "claim": "hop stds sigma_m^h grow with m (Table 2)",
            "paper": " < ".join(f"{sd:.2f}" for _, sd in paper.TABLE2_HOPS.values()),
            "this study": ", ".join(f"{v:.2f}" for v in hm2["sigma"]),
            "verdict": C.verdict(bool(np.all(np.diff(hm2["sigma"].to_numpy()) > 0))),
        },
        {
            "claim": "hop moments have the paper's magnitude (mu_m^h within x2, m = 0..3)",
            "paper": ", ".join(interpret.normal_str(*PAPER_HOPS[m]) for m in hop_ms),
            "this study": ", ".join(interpret.normal_str(a, b) for a, b in zip(mus, sds)),
            "verdict": C.verdict(bool(np.all((ratios >= 0.5) & (ratios <= 2.0))))
            if is_acc
            else C.not_comparable("Table 2 is an accuracy predictor"),
        },
        {
            "claim": f"label moments for l = 2: about N({l2_mu:.1f}, {l2_sd:.1f}) in every stage",
            "paper": f"N({l2_mu:.1f}, {l2_sd:.1f})",
            "this study": ", ".join(interpret.normal_str(m, s) for m, s in l2),
            "verdict": C.verdict(l2_ok) if comparable else why_not,
        },
        {
            "claim": "label moments for l = 4, u = 1..5",
            "paper": ", ".join(interpret.normal_str(*v) for v in PAPER_L4.values()),
            "this study": ", ".join(interpret.normal_str(*l4[u]) for u in l4) or "n/a",
            "verdict": C.verdict(l4_ok) if comparable else why_not,
        },
        {
            "claim": f"{p.table2_equation} grows with the module length l in every unit (longest vs shortest)",
            "paper": "yes, all 5 stages (l = 4 vs l = 2)" if is_acc else "accuracy: yes",
            "this study": f"{sum(g > 0 for g in grow)} of {len(grow)} units; gains "
            + ", ".join(f"{g:+.2f}" for g in grow),
            "verdict": C.verdict(None if np.isnan(grow).any() else bool(all(g > 0 for g in grow)))
            if is_acc
            else C.not_comparable("the claim is about accuracy"),
        },
        {
            "claim": f"label moments differ per stage: for l = 4, unit {best_u} has the highest mean accuracy",
            "paper": f"unit {best_u} ({PAPER_L4[best_u][0]:.2f})",
            "this study": (f"unit {int(l4_means.idxmax())} ({l4_means.max():.2f})" if len(l4_means) else "n/a"),
            "verdict": C.verdict(int(l4_means.idxmax()) == best_u if len(l4_means) else None)
            if comparable
            else why_not,
        },
        {
            "claim": "without Eq. 5 longer modules score higher (raw mean grows with l in every unit)",
            "paper": "implied: hop norms grow with m, hence Eq. 5",
            "this study": ", ".join(f"{e}: {'yes' if ok else 'no'}" for e, ok in raw_grows.items()),
            "verdict": C.verdict(all(raw_grows.values())),
        },
        {
            "claim": f"Eq. 5 changes which modules make a unit's top-{p.k}",
            "paper": "yes: the shift makes lengths comparable",
            "this study": ", ".join(f"{e}: {c}/{sp.n_units} units" for e, c in changed.items()),
            "verdict": C.verdict(any(c > 0 for c in changed.values())),
        },
        {
            "claim": "study check: best modules of an accuracy-type equation use larger e than those of a latency equation (Fig. 4)",
            "paper": "Fig. 4 (no numbers in the notes)",
            "this study": (
                f"mean e of best modules: {p.table2_equation} {composition.loc[(p.table2_equation, 'best'), 'mean e']:.2f}, "
                + ", ".join(f"{e} {composition.loc[(e, 'best'), 'mean e']:.2f}" for e in min_eq)
            )
            if min_eq
            else "no 'min' equation",
            "verdict": C.verdict(
                all(
                    composition.loc[(p.table2_equation, "best"), "mean e"] > composition.loc[(e, "best"), "mean e"]
                    for e in min_eq
                )
            )
            if min_eq and p.eqs[p.table2_equation] == "max"
            else C.undetermined(),
        },
        {
            "claim": "study check: the FE-MLP's top value of a feature goes with better labels more often than a random value (Figs. 9-10)",
            "paper": "Figs. 9-10: FE-MLP scores read as importance (no numbers in the notes)",
            "this study": f"{helps_n} of {helps_d} (equation, feature) pairs; a random pick: {helps_chance:.1f}",
            "verdict": C.verdict(helps_n > helps_chance if helps_d else None),
        },
    ]
    comparison = C.claims_table(rows, smoke=p.profile == "smoke")
    C.record_claims(comparison, "04_module_scores")  # for the verdict page (autobuild_lib.study.claims)
    print(
        f"dataset={p.dataset}, space={p.space}, profile={p.profile}, {len(ls.frame)} archs, {p.epochs} epochs, "
        f"wall time {time.perf_counter() - t_start:.0f} s"
    )
    return comparison


def disagreements(p: Params, comparison, fe, init):
    """Paper vs this study."""
    ON_MINI = p.dataset == "mini-ofa"
    # Most specific keys first: a row takes the first key its claim contains.
    REASONS = {
        "FE-MLP's top value goes": "FE-MLP outputs pass through abs(): a value can score high because it pushes the "
        "embedding norm in either direction, features that vary little in the data are learned weakly, and a score "
        "that training barely moved still shows its random start (black marks in the FE-MLP figure)",
        "larger e": "with few epochs or weak hop SRCC the module ranking is noisy; see the SRCC table",
        "unit 4": "which stage gains most from depth is a property of the labelled data"
        + (
            "; the Mini-OFA benchmark is not ImageNet"
            if ON_MINI
            else "; the means of the five units differ by a few tenths, within the noise of a 90 % training split"
        ),
        "hop moments have the paper's magnitude": "the hop norms depend on the training run (epochs, initialisation, "
        "BatchNorm, how fast the ranking loss drives the norms apart) and on the node-feature encoding; the paper's "
        "model is the authors' implementation, this one follows the notes",
        "label moments": (
            "the label moments are statistics of the labelled data, and Mini-OFA's task is not ImageNet"
            if ON_MINI
            else "the label moments are statistics of the labelled data: the 90/10 split and any "
            "subset loaded (smoke profile) move them; a large gap would mean the released file is not "
            "the paper's 2.7k training set"
        ),
        "grows with the module length": "a deeper stage is not more accurate in every unit of this data set; see the "
        "label-moment table (and the counts behind each cell)",
        "raw mean grows": "a hop whose norm does not grow with m would make Eq. 5 unnecessary; see the hop-moment table",
        "Eq. 5 changes": "when one module length dominates the labels, raw and shifted rankings agree",
    }
    off = C.disagreements(comparison, include_open=True)
    n_nc = int(off["verdict"].str.startswith(C.NOT_COMPARABLE).sum())
    off = off[~off["verdict"].str.startswith(C.NOT_COMPARABLE)]
    lines = []
    for _, r in off.iterrows():
        reason = next((v for key, v in REASONS.items() if key in r["claim"]), "see the section above")
        lines.append(
            f"* **{r['claim']}** -- {r['verdict']}: measured {r['this study']} vs paper {r['paper']}. Why it may differ: {reason}."
        )
    n_ok = len(comparison) - len(off) - n_nc
    head = (
        f"**Summary.** Of {len(comparison)} rows: consistent with the paper {n_ok}, inconsistent or undecided {len(off)}, "
        f"not comparable on this dataset {n_nc}."
    )
    rel_move = float((fe.sub(init, axis=0).abs().mean() / init.mean()).mean())
    head += (
        f" Training moved the FE-MLP scores by {100 * rel_move:.1f}% of their mean starting value on average, so "
        + (
            "most of each score is still its random start: read Figs. 9-10 here with care."
            if rel_move < 0.1
            else "the score pattern is learned, not the random start."
        )
    )
    if p.profile == "smoke":
        head += " This is a smoke run (a few epochs on a small subset): none of it is evidence."
    display(Markdown(head + ("\n\nWhere this study disagrees:\n\n" + "\n".join(lines) if lines else "")))
