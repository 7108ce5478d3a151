"""Chapter 05_mbv3_pareto: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from scipy.stats import spearmanr

from autobuild_lib.benchmarks.miniofa.constants import load_latency_model
from autobuild_lib.benchmarks.miniofa.latency_outside import load_outside
from autobuild_lib.benchmarks.released_l1 import L1_SOURCE, find_l1, l1_files
from autobuild_lib.core import build, pareto
from autobuild_lib.core.equations import LabelEquation
from autobuild_lib.study import claims as C
from autobuild_lib.study import construction, paper
from autobuild_lib.study import data as study
from autobuild_lib.study.params import parse_equations


@dataclass(frozen=True, kw_only=True)
class Params(construction.ConstructionParams):
    """The notebook's parameters, checked once; the profile resolved by ``construction.chapter05_settings``
    (full: the paper's setting; smoke: a tiny end-to-end run)."""

    n_eval: int | None = field(init=False, default=None)  # None: every constructed architecture

    def resolve(self) -> None:
        parsed = parse_equations(self.equations)
        self._check_caches()
        settings = construction.chapter05_settings(self.profile, [e.text for e in parsed], self.k, self.epochs,
                                                   self.latency_epochs)
        self._set(eqs=[LabelEquation.parse(e) for e in settings["equations"]], k=settings["k"],
                  epochs=settings["epochs"], latency_epochs=settings["latency_epochs"],
                  n_train=settings["n_train"], n_eval=settings["n_eval"])
        self._set_training(settings["epochs"])

    def summary(self) -> str:
        """One line with the resolved settings."""
        return (f"profile={self.profile}  dataset={self.dataset}  space={self.space}  K={self.k}  epochs={self.epochs}  "
                f"equations={len(self.eqs)}  training archs={'all' if self.n_train is None else self.n_train}  "
                f"evaluations per equation={'all' if self.n_eval is None else self.n_eval}")


def load_data(p: Params):
    """Data."""
    study.require(p.dataset, p.data_dir, spaces=[p.space])
    ls = study.load_set(p.dataset, p.space, p.data_dir, n=p.n_train, seed=p.seed)
    sp = ls.space
    frame = ls.frame
    real_eval = study.can_evaluate(p.dataset)
    n_units = sp.n_units
    print(f"{len(frame)} labelled {p.space} architectures; {n_units} units -> K^{n_units} = {p.k**n_units} per equation")
    shown = [c for c in ("acc", "latency_cpu", "flops") if c in frame.columns]
    if "flops" not in shown:
        print(
            "FLOPs: not in this cache (the authors' README lists accuracy and latency only); this chapter does not use them"
        )
    shown = frame[shown].describe().round(3)
    return frame, ls, n_units, real_eval, sp, shown


def equation_regions(p: Params, frame, ls):
    """Which region does each equation aim at?."""
    aim_rows = []
    for e in p.eqs:
        y = ls.labels(e)
        aim_rows.append(
            {
                "equation": e.text,
                "SRCC(label, acc)": spearmanr(y, frame["acc"]).statistic,
                "SRCC(label, -latency)": spearmanr(y, -frame["latency_cpu"]).statistic,
            }
        )
    aim = pd.DataFrame(aim_rows)
    aim["weight on accuracy"] = aim["SRCC(label, acc)"] / (
        aim["SRCC(label, acc)"].abs() + aim["SRCC(label, -latency)"].abs()
    )
    aim = aim.sort_values("weight on accuracy", ascending=False, kind="stable").reset_index(drop=True)
    acc_eq, lat_eq = aim["equation"].iloc[0], aim["equation"].iloc[-1]
    display(aim.round(3))
    display(
        Markdown(
            f"Most accuracy-oriented equation: `{acc_eq}`; most latency-oriented: `{lat_eq}`. "
            f"SRCC(acc, -latency) over the training architectures: "
            f"{spearmanr(frame['acc'], -frame['latency_cpu']).statistic:.3f} (negative: accuracy costs latency)."
        )
    )
    return acc_eq, aim, lat_eq


def train_predictors(p: Params, ls):
    """One AutoBuild predictor per equation."""
    t0 = time.perf_counter()
    plan = construction.plan_construction(ls, p.eqs, p.k, p.config, cache_dir=p.pcache, n_eval=p.n_eval)
    builds = plan.builds
    rows = []
    for text, b in builds.items():
        rows.append(
            {
                "equation": text,
                "test SRCC (prediction)": b.info.get("srcc_pred", np.nan),
                "test SRCC (hop M norm)": (b.info.get("srcc_hop") or [np.nan])[-1],
                "train s": b.info["train_s"],
                "from cache": b.info["cached"],
            }
        )
    train_table = pd.DataFrame(rows)
    print(
        f"predictors ready in {time.perf_counter() - t0:.1f} s "
        f"({int(train_table['from cache'].sum())} of {len(train_table)} loaded from the predictor cache; "
        f"module scoring {sum(b.info['score_s'] for b in builds.values()):.1f} s)"
    )
    shown = train_table.round(3)
    return builds, plan, shown


def _outside_note(space: str) -> str:
    """The latency predictor's error on constructed architectures measured for real (issue 14), if measured."""
    c = load_outside(space, study.mini_ofa_dir())
    if c is None:
        return (" Its error on constructed architectures, which lie outside the benchmark's sample, has not "
                "been measured yet.")
    return (f" On {c['n']} constructed architectures outside the benchmark, measured with the benchmark's own "
            f"protocol ({c['rounds']} shuffled rounds x {c['passes']} passes, {c['cpu_model']}), its error is MAE "
            f"{c['mae_ms']:.2f} ms ({c['mape_pct']:.1f} % of the latency), SRCC {c['srcc']:.3f}.")


def construct_and_evaluate(
    p: Params, frame, ls, plan, real_eval, sp
):
    """Construct and evaluate."""
    results = None
    constructed = plan.constructed
    n_constructed = {t: len(a) for t, a in constructed.items()}
    all_keys = plan.keys()
    rows_eval = plan.frame()
    print(
        f"constructed per equation: {n_constructed}; to evaluate: {len(rows_eval)} rows, {len(all_keys)} distinct "
        f"architectures (list fingerprint {construction.archs_digest(all_keys)})"
    )

    l1 = None if real_eval else find_l1(study.resolve_data_dir(p.data_dir), p.space)  # the authors' l1_models/
    if real_eval:
        cache_path = construction.resolve_eval_cache(p.eval_cache, p.profile, study.mini_ofa_dir())
        ev = study.evaluator(p.dataset, cache=cache_path, latency="skip")  # latency: the benchmark's k-GNN
        todo = ev.uncached(p.space, all_keys)
        never = ev.uncached(p.space, all_keys, include_cache=False)
        # measured by `chapter05 --fill` where it ran, else the generation log (an upper bound: it ran beside other jobs)
        fill_s = construction.fill_seconds_per_eval(study.mini_ofa_dir(), p.space, "chapter05_fill")
        s_per = fill_s or construction.seconds_per_new_arch(study.mini_ofa_dir(), p.space)
        s_per_src = "measured by `chapter05 --fill`" if fill_s else "benchmark generation log"
        if todo:
            per = (
                f"{s_per:.1f} s each ({s_per_src})"
                if s_per
                else "an unlogged time each (about 5-12 s on a 2-core CPU)"
            )
            print(
                f"{len(todo)} architectures are not cached yet and are evaluated now, {per}. "
                f"`python -m autobuild_lib chapter05 --space {p.space} --fill` fills the cache ahead of time."
            )
        t0 = time.perf_counter()
        evaluated = ev.evaluate_many(p.space, all_keys, progress=False)
        eval_s = time.perf_counter() - t0
        src_counts = evaluated["source"].value_counts()
        n_computed = int(src_counts.get("computed", 0))
        measured_s = eval_s / n_computed if n_computed else None
        per_arch = s_per or measured_s
        provenance = pd.Series(
            {
                "distinct architectures": len(all_keys),
                "from the benchmark table": int(src_counts.get("benchmark", 0)),
                "cache hits": int(src_counts.get("cache", 0)),
                "new (computed now)": n_computed,
                f"s per new arch ({s_per_src})": round(s_per, 2) if s_per else None,
                "would compute from an empty cache": len(never),
                "evaluation cache": str(cache_path) if p.profile == "full" else "temporary copy (smoke)",
            },
            name="evaluation provenance",
        ).to_frame()
        display(provenance)
        lat_model, lat_record = load_latency_model(p.space, study.mini_ofa_dir())
        evaluated = construction.with_predicted_latency(evaluated, lat_model.predict)
        display(
            Markdown(
                "Accuracy is evaluated with the supernet weights; the CPU latency of every architecture outside "
                f"the benchmark table comes from the benchmark's k-GNN latency predictor (`latency-{p.space}.pt`, "
                f"trained on {lat_record['n_train']:,} of its {lat_record.get('latency_source', 'measured')} latencies; "
                f"held-out {lat_record['n_test']}: MAE {lat_record['test_mae_ms']:.2f} ms, SRCC "
                f"{lat_record['test_srcc']:.3f}), as the paper predicts new architectures' latency. Latency sources: "
                f"{evaluated['latency_source'].value_counts().to_dict()}."
                + _outside_note(p.space)
            )
        )
        results = rows_eval.merge(evaluated, on="arch", how="left")
        display(
            Markdown(
                f"{len(all_keys)} distinct architectures: {int(src_counts.get('benchmark', 0))} from the benchmark table, "
                f"{int(src_counts.get('cache', 0))} cache hits, {n_computed} new evaluations ({eval_s:.1f} s"
                + (f", {measured_s:.1f} s each" if measured_s else "")
                + "). "
                f"From an empty cache, {len(never)} would need computing"
                + (f", about {len(never) * per_arch / 3600:.2f} h of one CPU core." if per_arch else ".")
            )
        )
    elif l1 is not None:
        display(
            Markdown(
                "**ImageNet evaluation is not available here.** The constructed architectures are scored by "
                f"**{L1_SOURCE}** (`{l1.l1_dir}`): the GNN predictors of accuracy and CPU latency that the authors' "
                "`eval_topk_ofa.py` uses, which this study did not train. The circularity of scoring with predictors "
                "trained on the same labels is reduced, not removed: the authors' accuracy predictor was itself trained on "
                "the released cache (its config names `ofa_mbv3` / `custom`). Every accuracy and latency below for a "
                "constructed architecture is a **prediction**, tagged with its source."
            )
        )
        est = l1.evaluate_many(p.space, all_keys)[["arch", "acc", "latency_cpu", "source"]].assign(
            latency_source="predicted"
        )
        results = rows_eval.merge(est, on="arch", how="left")
        display(
            pd.DataFrame(
                [
                    {
                        "target": t,
                        "predictor": L1_SOURCE,
                        "file": l1_files(l1.l1_dir, p.space, t)[0].name,
                        "unit": "% top-1 (released: fraction, x100)" if t == "acc" else "ms",
                    }
                    for t in ("acc", "latency_cpu")
                ]
            )
        )
    else:
        print(
            f"no l1_models/ folder with {p.space} acc and latency_cpu predictors in {study.resolve_data_dir(p.data_dir)}: "
            "the study's own predictors are used (see README, released data)"
        )
        display(
            Markdown(
                "**ImageNet evaluation is not available here.** The authors' release has labels only for its own "
                "architectures, so the constructed ones are scored by two predictors trained on the released data: an "
                "AutoBuild predictor of `acc` (same recipe) and the k-GNN latency predictor of `latency_cpu`. "
                "Every accuracy and latency below for a constructed architecture is an **estimate**."
            )
        )
        keys = [sp.to_string(a) for a in ls.archs]
        acc_res, acc_info = build.train_cached(ls.graphs, frame["acc"].to_numpy(), keys, p.config, p.pcache)
        lat_res, lat_info = build.latency_predictor_cached(
            sp, keys, frame["latency_cpu"].to_numpy(), p.pcache, epochs=p.latency_epochs, seed=p.seed
        )
        est = pd.DataFrame(
            {
                "arch": all_keys,
                "acc": build.predict_archs(acc_res, sp, all_keys),
                "latency_cpu": lat_res.predict(all_keys),
                "source": "the study's predictors (estimate)",
                "latency_source": "predicted",
            }
        )
        results = rows_eval.merge(est, on="arch", how="left")
        display(
            pd.DataFrame(
                [
                    {
                        "predictor": "acc (AutoBuild)",
                        "test SRCC": acc_res.metrics.get("srcc_pred"),
                        "test MAE": acc_res.metrics.get("mae"),
                        "unit": "% top-1",
                        "from cache": acc_info["cached"],
                    },
                    {
                        "predictor": "latency_cpu (k-GNN)",
                        "test SRCC": lat_res.test_srcc,
                        "test MAE": lat_res.test_mae_ms,
                        "unit": "ms",
                        "from cache": lat_info["cached"],
                    },
                ]
            ).round(3)
        )
    label = "evaluated" if real_eval else (f"predicted ({L1_SOURCE})" if l1 is not None else "estimated (predictors)")
    pred_tag = "" if real_eval else (f" ({L1_SOURCE})" if l1 is not None else " (estimates)")
    shown = (
        results.groupby(["equation"] if real_eval else ["equation", "source"], sort=False)[["acc", "latency_cpu"]]
        .describe()
        .round(2)
    )
    return label, n_constructed, pred_tag, results, shown


def clusters_vs_front(p: Params, builds, frame, label, real_eval, results):
    """Clusters against the training front."""
    train_front = pareto.pareto_front(frame, "latency_cpu", "acc", maximize_x=False, maximize_y=True)
    palette = dict(zip(builds, sns.color_palette("tab10", len(builds))))
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    ax.scatter(frame["latency_cpu"], frame["acc"], s=6, c="0.75", label=f"training archs ({len(frame)})", zorder=1)
    ax.step(
        train_front["latency_cpu"],
        train_front["acc"],
        where="post",
        c="k",
        lw=1.5,
        label="training Pareto front",
        zorder=2,
    )
    for text, sub in results.groupby("equation", sort=False):
        ax.scatter(
            sub["latency_cpu"],
            sub["acc"],
            s=22,
            alpha=0.8,
            color=palette[text],
            edgecolor="w",
            lw=0.3,
            label=f"{text} ({len(sub)})",
            zorder=3,
        )
    ax.set_xlabel("CPU latency (ms)" + ("" if real_eval else "  [constructed: predicted]"))
    ax.set_ylabel("top-1 accuracy (%)" + ("" if real_eval else "  [constructed: predicted]"))
    ax.set_title(f"{p.space.upper()} on {p.dataset}: K={p.k} per unit, constructed archs {label}")
    ax.legend(fontsize=8, loc="lower right")
    plt.tight_layout()
    plt.show()


def beyond_front(acc_eq, gain, label, lat_eq):
    """Beyond the front, and hypervolume gained."""
    n_beyond_eq = int((gain["beyond front"] > 0).sum())
    med = gain.set_index("equation")
    display(
        Markdown(
            f"{n_beyond_eq} of {len(gain)} equations place at least one architecture beyond the training front; "
            f"in total {int(gain['beyond front'].sum())} of {int(gain['n'].sum())} {label} architectures. "
            f"The largest hypervolume gain is {gain['HV gain %'].max():.2f}% of the training front's "
            f"(`{gain.loc[gain['HV gain'].idxmax(), 'equation']}`). "
            + (
                f"The accuracy-oriented equation `{acc_eq}` has median accuracy {med.loc[acc_eq, 'median acc']:.2f}% at "
                f"{med.loc[acc_eq, 'median latency_cpu']:.2f} ms; the latency-oriented `{lat_eq}` "
                f"{med.loc[lat_eq, 'median acc']:.2f}% at {med.loc[lat_eq, 'median latency_cpu']:.2f} ms."
                if acc_eq in med.index and lat_eq in med.index and acc_eq != lat_eq
                else ""
            )
        )
    )
    return med, n_beyond_eq


def claims(p: Params, acc_eq, gain, lat_eq, med, n_beyond_eq, n_constructed, n_units, pred_tag):
    """Paper vs this study."""

    def verdict(ok):
        return C.verdict(ok, pred_tag.strip()[1:-1])

    paper_k = paper.CONSTRUCTION_K
    paper_size = paper_k**n_units
    sizes = sorted(set(n_constructed.values()))
    two_ends = acc_eq != lat_eq and acc_eq in med.index and lat_eq in med.index
    sep_lat = sep_acc = False
    if two_ends:
        sep_lat = med.loc[lat_eq, "median latency_cpu"] < med.loc[acc_eq, "median latency_cpu"]
        sep_acc = med.loc[acc_eq, "median acc"] > med.loc[lat_eq, "median acc"]
    claims = C.claims_table(
        [
            {
                "claim": f"K={paper_k} per unit gives {paper_k}^{n_units} = {paper_size} architectures per equation",
                "paper": f"{paper_size}",
                "this study": f"K={p.k}: {sizes} per equation ({n_units} units)",
                "verdict": verdict(sizes == [paper_size]) if p.k == paper_k else C.not_comparable(f"K={p.k}"),
            },
            {
                "claim": "some constructed architectures lie beyond the training Pareto front (Fig. 5)",
                "paper": "yes (several equations)",
                "this study": f"{int(gain['beyond front'].sum())}/{int(gain['n'].sum())} archs; {n_beyond_eq}/{len(gain)} equations",
                "verdict": verdict(n_beyond_eq > 0),
            },
            {
                "claim": "constructed clusters add hypervolume to the training front",
                "paper": "yes (clusters extend the front)",
                "this study": f"max HV gain {gain['HV gain %'].max():.2f}% ({int((gain['HV gain'] > 0).sum())}/{len(gain)} equations > 0)",
                "verdict": verdict(bool((gain["HV gain"] > 0).any())),
            },
            {
                "claim": "the equation's weighting moves its cluster along the front (accuracy-oriented: more accurate; latency-oriented: faster)",
                "paper": "yes (clusters in different regions)",
                "this study": (
                    f"`{acc_eq}`: {med.loc[acc_eq, 'median acc']:.2f}% / {med.loc[acc_eq, 'median latency_cpu']:.2f} ms vs "
                    f"`{lat_eq}`: {med.loc[lat_eq, 'median acc']:.2f}% / {med.loc[lat_eq, 'median latency_cpu']:.2f} ms"
                )
                if two_ends
                else "needs two equations",
                "verdict": verdict(bool(sep_lat and sep_acc)) if two_ends else C.undetermined("needs two equations"),
            },
        ],
        smoke=p.profile == "smoke",
    )
    C.show_claims(claims, "05_mbv3_pareto", wide=True)
