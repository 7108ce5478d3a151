"""Chapter 02_hop_srcc: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from autobuild_lib.core import analysis
from autobuild_lib.core.training import TrainConfig
from autobuild_lib.study import claims as C
from autobuild_lib.study import data as study
from autobuild_lib.study import paper
from autobuild_lib.study.params import ChapterParams, check_bool, check_int, check_number

#: The profiles' training schedules; full is the paper's (200 epochs, lr 1e-4, batch 128).
SCHEDULE = {"smoke": dict(epochs=2, lr=1e-3, batch_size=128), "full": dict(epochs=200, lr=1e-4, batch_size=128)}
#: The paper's schedule, from the library's defaults.
PAPER = dict(epochs=TrainConfig.epochs, lr=TrainConfig.lr, batch_size=TrainConfig.batch_size)


@dataclass(frozen=True, kw_only=True)
class Params(ChapterParams):
    """The notebook's parameters, checked once; ``None`` schedule entries take the profile's default."""

    seed: int
    seeds: list[int]
    data_dir: str
    spaces: list[str]
    labels: list[str]
    epochs: int | None
    lr: float | None
    batch_size: int | None
    hop_bar: float = 0.5
    srcc_tol: float
    paper_check: bool
    SPACES: tuple[str, ...] = field(init=False, default=())
    n_archs: int | None = field(init=False, default=None)  # None: every labelled architecture
    schedule: dict = field(init=False, default_factory=dict)

    def resolve(self) -> None:
        labels = self.labels
        if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(x, str) for x in labels):
            raise ValueError(f"labels must be a non-empty list of column names, got {labels!r}")
        default = SCHEDULE[self.profile]
        epochs = default["epochs"] if self.epochs is None else self.epochs
        lr = default["lr"] if self.lr is None else self.lr
        batch_size = default["batch_size"] if self.batch_size is None else self.batch_size
        check_int("epochs", epochs, 1)
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < 1):
            raise ValueError(f"lr must be a number in (0, 1) or None, got {lr!r}")
        check_int("batch_size", batch_size, 2)
        check_number("srcc_tol", self.srcc_tol, 0, 1)
        check_number("hop_bar", self.hop_bar, 0, 1)
        check_bool("paper_check", self.paper_check)
        self._set(epochs=epochs, lr=float(lr), batch_size=batch_size, SPACES=tuple(self.spaces),
                  n_archs=100 if self.smoke else None,
                  schedule=dict(epochs=epochs, lr=float(lr), batch_size=batch_size))

    def summary(self) -> str:
        """The schedule of this run beside the paper's, and a note when fewer than 3 seeds are set."""
        note = (f"note: {len(self.seeds)} seed(s); the study reports mean and spread over >= 3\n"
                if len(self.seeds) < 3 else "")
        return note + (f"schedule: {self.epochs} epochs, lr {self.lr:g}, batch {self.batch_size} (paper: "
                       f"{PAPER['epochs']} epochs, lr {PAPER['lr']:g}, batch {PAPER['batch_size']})")


def style() -> None:
    """Plot theme and table formats of this chapter."""
    sns.set_theme(style="whitegrid")
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", None)


def load_data(p: Params):
    """Data."""
    study.require(p.dataset, p.data_dir, spaces=p.SPACES)
    sets = {sp: study.load_set(p.dataset, sp, p.data_dir, n=p.n_archs, seed=p.seed) for sp in p.SPACES}
    if {"flops", "n_params"} & set(p.labels):  # absent from caches with only the README's labels: computed
        from autobuild_lib.benchmarks import released_flops

        for note in [released_flops.fill_static(s.frame, sp) for sp, s in sets.items()]:
            if note:
                print(note)
    for sp, s in sets.items():
        missing = [c for c in p.labels if c not in s.frame.columns]
        if missing:
            raise ValueError(
                f"{sp}: the {p.dataset} table lacks the label columns {missing}; " f"available: {list(s.frame.columns)}"
            )
    print(
        f"dataset {p.dataset!r}, profile {p.profile!r}: "
        + ", ".join(f"{sp} {len(s.frame)} architectures" for sp, s in sets.items())
    )
    return sets


def training_budget(p: Params, sets):
    """Training budget."""
    runs = pd.concat(
        [
            analysis.hop_srcc_runs(
                s.graphs,
                {lab: s.labels(lab) for lab in p.labels},
                p.seeds,
                p.epochs,
                space=sp,
                lr=p.schedule["lr"],
                batch_size=p.schedule["batch_size"],
            )
            for sp, s in sets.items()
        ],
        ignore_index=True,
    )
    cost = analysis.training_cost(runs)
    n_full = len(p.SPACES) * len(p.labels) * len(p.seeds) * 2
    full_proj = analysis.training_cost(runs, n_train=paper.TRAIN_ARCHS, epochs=SCHEDULE["full"]["epochs"], n_runs=n_full)
    paper_proj = analysis.training_cost(runs, n_train=paper.TRAIN_ARCHS, epochs=PAPER["epochs"], n_runs=n_full)
    print(
        f"trained {len(runs)} predictors x {p.epochs} epochs on {runs['n_train'].mean():.0f} training graphs each "
        f"in {cost['seconds']:.0f} s ({cost['per_epoch']:.3f} s per epoch, "
        f"{1e3 * cost['per_graph_epoch']:.3f} ms per graph-epoch)"
    )
    if runs["n_train"].min() >= 1000:
        print(
            f"projected at this cost for {n_full} predictors on {paper.TRAIN_ARCHS:,} training graphs: full profile "
            f"({SCHEDULE['full']['epochs']} epochs) {full_proj['projected'] / 60:.1f} min; "
            f"paper's {PAPER['epochs']} epochs {paper_proj['projected'] / 60:.1f} min"
        )
    else:
        print(f"too few training graphs for a projection to {paper.TRAIN_ARCHS:,} (few batches per epoch: per-batch overhead dominates)")
    return runs


def fig2(p: Params, runs):
    """Fig. 2, reproduced."""
    long = analysis.hop_srcc_long(runs)
    n_hops = int(long.loc[long.term != "head", "x"].max()) + 1
    styles = {"autobuild": dict(color="C0", marker="o"), "mse": dict(color="C3", marker="s")}
    fig, axes = plt.subplots(
        len(p.SPACES),
        len(p.labels),
        figsize=(4.2 * len(p.labels), 3.4 * len(p.SPACES)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, sp in enumerate(p.SPACES):
        for j, lab in enumerate(p.labels):
            ax = axes[i, j]
            for k, (loss, st) in enumerate(styles.items()):
                g = long[(long.space == sp) & (long.label == lab) & (long.loss == loss)]
                agg = g.groupby("x")["srcc"].agg(["mean", "std"]).reset_index()
                hop, head = agg[agg.x < n_hops], agg[agg.x == n_hops]
                off = 0.06 * (k - 0.5)
                ax.errorbar(
                    hop.x + off,
                    hop["mean"],
                    yerr=hop["std"].fillna(0),
                    capsize=3,
                    lw=1.5,
                    label=analysis.LOSS_LABELS[loss],
                    **st,
                )
                ax.errorbar(
                    head.x + off,
                    head["mean"],
                    yerr=head["std"].fillna(0),
                    capsize=3,
                    lw=0,
                    elinewidth=1.5,
                    mfc="white",
                    **st,
                )
            ax.axvline(n_hops - 0.5, color="0.7", lw=0.8, ls="--")
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_title(f"{sp}: {lab}")
            ax.set_xticks(range(n_hops + 1), [str(m) for m in range(n_hops)] + ["MLP"])
            if i == len(p.SPACES) - 1:
                ax.set_xlabel("hop m of ||h_G^m||_1")
            if j == 0:
                ax.set_ylabel("test SRCC")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"Test SRCC of the graph-embedding norm per hop ({p.dataset}, {p.epochs} epochs at lr {p.lr:g}, "
        f"{len(p.seeds)} seeds, mean +/- std)"
    )
    plt.tight_layout()
    plt.show()


def schedule_check(p: Params, runs, sets):
    """A shorter schedule against the paper's (`paper_check`); nothing to compare when they are the same."""
    check_proj = analysis.training_cost(runs, n_train=paper.TRAIN_ARCHS, epochs=PAPER["epochs"], n_runs=2 * len(p.SPACES))
    if p.paper_check and (p.epochs, p.lr) == (PAPER["epochs"], PAPER["lr"]):
        print("paper_check: this run already trains the paper's schedule; nothing to compare")
        paper_cmp = None
    elif not p.paper_check:
        print(
            "paper_check is off"
            + (
                f"; on {paper.TRAIN_ARCHS:,} training graphs it would add about {check_proj['projected'] / 60:.1f} min"
                if runs["n_train"].min() >= 1000
                else ""
            )
        )
        paper_cmp = None
    else:
        lab0 = p.labels[0]
        check = pd.concat(
            [
                analysis.hop_srcc_runs(
                    s.graphs,
                    {lab0: s.labels(lab0)},
                    p.seeds[:1],
                    PAPER["epochs"],
                    space=sp,
                    lr=PAPER["lr"],
                    batch_size=PAPER["batch_size"],
                )
                for sp, s in sets.items()
            ],
            ignore_index=True,
        )
        cols = [c for c in runs.columns if c.startswith("srcc_")]
        ours = runs[(runs.seed == p.seeds[0]) & (runs.label == lab0)].set_index(["space", "label", "loss"])[cols]
        theirs = check.set_index(["space", "label", "loss"])[cols]
        paper_cmp = pd.concat(
            {f"{p.epochs} ep, lr {p.lr:g}": ours, f"{PAPER['epochs']} ep, lr {PAPER['lr']:g}": theirs}, axis=1
        )
        paper_cmp["max |diff|"] = (ours - theirs).abs().max(axis=1)
        print(f"paper schedule: {check['seconds'].sum():.0f} s for {len(check)} predictors")
    shown = paper_cmp
    return shown


def claims(p: Params, runs):
    """Paper vs this study."""
    checked = analysis.hop_srcc_claims(runs, bar=p.hop_bar, tol=p.srcc_tol)
    fig2_rows = [{**r, "verdict": C.verdict(r["holds"])} for r in checked.to_dict("records")]
    claims = C.claims_table(fig2_rows)
    same_schedule = p.schedule == PAPER
    schedule_row = {
        "claim": "training schedule of each predictor",
        "paper": f"{PAPER['epochs']} epochs, lr {PAPER['lr']:g}, batch {PAPER['batch_size']}",
        "this study": f"{p.epochs} epochs, lr {p.lr:g}, batch {p.batch_size}; {len(p.seeds)} seeds x 2 losses; "
        f"{runs['n_train'].iloc[0]} train / {runs['n_test'].iloc[0]} test architectures per space",
        "verdict": C.verdict(True) if same_schedule else C.not_comparable("shortened to fit the CPU budget"),
    }
    comparison = C.claims_table([schedule_row, *fig2_rows], smoke=p.profile == "smoke")
    C.record_claims(comparison, "02_hop_srcc")  # for the verdict page (autobuild_lib.study.claims)
    tally = comparison["verdict"].value_counts()
    print(", ".join(f"{v}: {n}" for v, n in tally.items()) + f"  ({p.epochs} epochs, {p.profile} profile)")
    return claims, comparison, same_schedule


def disagreements(p: Params, claims, comparison, runs, same_schedule):
    """Where this study disagrees, and why it might."""
    dis = C.disagreements(comparison, include_open=True)
    hop_cols = [c for c in runs.columns if c.startswith("srcc_h") and c[6:].isdigit()]
    ab_means = runs[runs.loss == "autobuild"].groupby(["space", "label"])[hop_cols].mean()
    worst_hop = ab_means.idxmin(axis=1).str.replace("srcc_h", "", regex=False)
    n_test = int(runs["n_test"].iloc[0])
    lines = []
    unconfirmed = C.disagreements(claims, include_open=True)
    c1 = unconfirmed[unconfirmed.claim.str.contains("every hop")]
    c2 = unconfirmed[unconfirmed.claim.str.contains("MSE-only")]
    if p.profile == "smoke":
        lines.append(
            f"- This is a **smoke run** ({p.epochs} epochs on {runs['n_train'].iloc[0]} architectures, "
            f"{n_test} test architectures): the predictors are barely trained, no verdict is evidence."
        )
    if not same_schedule:
        lines.append(
            f"- The schedule is shortened ({p.epochs} epochs at lr {p.lr:g} instead of {PAPER['epochs']} at "
            f"{PAPER['lr']:g}); predictors that are not converged rank less well, at the hops first."
        )
    if len(c1):
        at0 = [
            f"{sp} {lab}"
            for (sp, lab), h in worst_hop.items()
            if h == "0" and c1.claim.str.startswith(f"{sp} {lab}:").any()
        ]
        lines.append(
            f"- Claim 1 (every hop ranks well) fails for {len(c1)} of {len(ab_means)} space-label pairs"
            + (
                f"; the weakest hop is hop 0 for {', '.join(at0)}. Hop 0 is the FE-MLP alone: one scalar per "
                "feature category, no interaction between categories, so its norm can only order architectures "
                "by an additive function of layer features (the library's planted-ground-truth test finds "
                "hop 0 weakest as well)"
                if at0
                else ""
            )
            + "."
        )
    if len(c2):
        lines.append(
            f"- Claim 2 (MSE-only hop norms rank worse) fails for {len(c2)} of {len(ab_means)} pairs: on at "
            "least one seed the MSE-only embedding norms order the test architectures as well as Eq. 4's. "
            "Nothing forces an MSE-trained norm to be uninformative: for labels that grow with the amount of "
            "computation (latency, FLOPs) the embedding size may track the label without a rank term."
        )
    if len(ab_means) and n_test < 100:
        lines.append(
            f"- Each SRCC is measured on {n_test} test architectures (standard error about "
            f"{1 / np.sqrt(max(n_test - 3, 1)):.2f}); small differences are noise."
        )
    if p.dataset == "mini-ofa":
        lines.append(
            "- The labels are Mini-OFA's (subnets of a small supernet on cluttered Fashion-MNIST, CPU latency "
            "measured here), not the paper's ImageNet labels; noisier accuracy labels lower every SRCC."
        )
    consistent = len(comparison) - len(dis)
    text = (
        f"{consistent} of {len(comparison)} rows are consistent with the paper"
        + ("." if dis.empty else "; the others: " + "; ".join(f"*{c}*" for c in dis.claim) + ".")
        + ("\n\n" + "\n".join(lines) if lines and not dis.empty else "")
    )
    display(Markdown(text))
