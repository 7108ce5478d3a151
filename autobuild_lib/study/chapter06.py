"""Chapter 06_evolutionary_nas: the computations behind the notebook's cells, in its order."""

from __future__ import annotations

import ast
import json
import math
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import papermill as pm
import seaborn as sns
import torch
from IPython.display import Markdown, display
from joblib import Parallel, delayed

from autobuild_lib.benchmarks.miniofa.constants import load_latency_model
from autobuild_lib.benchmarks.pipeline.stages import now_utc
from autobuild_lib.benchmarks.released_l1 import L1_SOURCE, find_l1, l1_files
from autobuild_lib.core import build
from autobuild_lib.core.search import SCHEMES, make_scheme, union_candidates
from autobuild_lib.paths import NOTEBOOK_DIR
from autobuild_lib.study import claims as C
from autobuild_lib.study import construction, paper
from autobuild_lib.study import data as study
from autobuild_lib.study.params import parse_equations

#: the runs.jsonl stage under which `chapter06 --fill` logs each finished search
FILL_STAGE = "chapter06_fill"


@dataclass(frozen=True, kw_only=True)
class Params(construction.ConstructionParams):
    """The notebook's parameters, checked once; the profile resolved by ``construction.chapter06_settings``
    (full: the paper's setting; smoke: a tiny end-to-end run).  Layer-Insight schemes are dropped
    outside MBv3 (``dropped``)."""

    schemes: list[str]
    n_initial: int
    n_iterations: int
    per_iteration: int
    accuracy: str
    budget: int = field(init=False, default=0)
    dropped: list[str] = field(init=False, default_factory=list)

    def resolve(self) -> None:
        eqs = parse_equations(self.equations)
        schemes = self.schemes
        if (not isinstance(schemes, (list, tuple)) or not schemes or len(set(schemes)) != len(schemes)
                or any(s not in SCHEMES for s in schemes)):
            raise ValueError(f"schemes must be distinct names from {list(SCHEMES)}, got {schemes}")
        self._check_caches()
        st = construction.chapter06_settings(self.profile, self.k, self.n_initial, self.n_iterations,
                                             self.per_iteration, self.epochs, self.latency_epochs, self.accuracy,
                                             self.dataset)
        dropped = [s for s in schemes if s.startswith("layer-insight") and self.space != "mbv3"]
        self._set(eqs=eqs, dropped=dropped, schemes=[s for s in schemes if s not in dropped],
                  **{x: st[x] for x in ("k", "n_initial", "n_iterations", "per_iteration", "epochs",
                                        "latency_epochs", "accuracy", "n_train", "budget")})
        self._set_training(st["epochs"])

    def summary(self) -> str:
        """The resolved settings, and the schemes dropped for this space."""
        line = (f"profile={self.profile}  dataset={self.dataset}  space={self.space}  accuracy={self.accuracy}  "
                f"K={self.k}  budget={self.budget} = {self.n_initial} + {self.n_iterations} x {self.per_iteration}  "
                f"seeds={list(self.seeds)}  schemes={self.schemes}")
        if self.dropped:
            line += (f"\ndropped {self.dropped}: the paper's Layer-Insight spaces are hand-reduced MBv3 spaces; "
                     f"there is none for {self.space}")
        return line


def data_and_cost(p: Params):
    """Data and cost."""
    study.require(p.dataset, p.data_dir, spaces=[p.space])
    ls = study.load_set(p.dataset, p.space, p.data_dir, n=p.n_train, seed=p.seed)
    sp, frame = ls.space, ls.frame
    keys = [sp.to_string(a) for a in ls.archs]
    n_evals = len(p.schemes) * len(p.seeds) * p.budget
    root = study.mini_ofa_dir() if study.can_evaluate(p.dataset) else None
    # what one new evaluation costs: measured by this chapter's own cache fill where it ran, else the
    # benchmark generation's per-label time (which ran beside other jobs, so it is an upper bound)
    fill_s = construction.fill_seconds_per_eval(root, p.space, FILL_STAGE) if root is not None else None
    s_per = fill_s or (construction.seconds_per_new_arch(root, p.space, stages=("static", "acc"))
                       if root is not None else None)
    l1 = (
        find_l1(study.resolve_data_dir(p.data_dir), p.space)
        if p.dataset == "autobuild-release" and p.accuracy != "evaluator"
        else None
    )
    cost_lines = [
        f"{len(frame)} labelled {p.space} architectures.",
        f"The comparison requests {len(p.schemes)} schemes × {len(p.seeds)} seeds × {p.budget} = {n_evals} evaluations "
        "(fewer distinct architectures where searches meet).",
    ]
    if p.accuracy == "evaluator":
        per = (
            f"{s_per:.1f} s, as {'`chapter06 --fill` measured' if fill_s else 'the benchmark generation log records'}"
            if s_per
            else "the benchmark's per-architecture time (not logged in this data folder; about 5-12 s)"
        )
        cost_lines.append(
            f"Accuracy comes from the evaluator: each architecture neither in the benchmark nor in the cache costs {per} "
            "(accuracy on the evaluation canvases, FLOPs; latency predicted)"
            + (f", so at most {n_evals * s_per / 3600:.1f} h of one CPU core from an empty cache." if s_per else ".")
        )
    else:
        cost_lines.append(
            f"Accuracy and latency of new architectures come from {L1_SOURCE} in `{l1.l1_dir}` (milliseconds "
            "each); they were trained by the authors, on the released cache itself for accuracy, so the "
            "circularity is reduced, not removed: these are **predictions**."
            if l1 is not None
            else "Accuracy of new architectures comes from an accuracy predictor (surrogate, milliseconds each)"
            + (
                "; ImageNet evaluation is not available for the authors' release, so these are **estimates**."
                if not study.can_evaluate(p.dataset)
                else "; this profile does not run the evaluator, so searched accuracies are **estimates**."
            )
        )
    display(Markdown(" ".join(cost_lines)))
    return frame, keys, l1, ls, s_per, sp


def _builds(p: Params, ls) -> dict:
    """One AutoBuild predictor (trained or loaded from the predictor cache) per label equation."""
    return {e.text: b for e, b in zip(p.eqs, build.build_equations(ls, p.eqs, p.config, cache_dir=p.pcache))}


def nas_space(p: Params, ls, sp):
    """The AutoBuild-NAS space: union of the equations' top-K modules."""
    builds = _builds(p, ls)
    per_eq = [b.top(p.k) for b in builds.values()]
    candidates = union_candidates(per_eq)
    cand_table = pd.DataFrame(
        {
            "unit": range(1, sp.n_units + 1),
            "candidates (union)": [len(c) for c in candidates],
            "upper bound P*K": [len(per_eq) * p.k] * sp.n_units,
            "modules in the full space": [sp.n_modules(u) for u in range(sp.n_units)],
        }
    )
    union_size = math.prod(len(c) for c in candidates)
    display(cand_table)
    display(
        Markdown(
            f"AutoBuild-NAS searches {union_size:.3g} architectures (x{len(sp.resolutions)} resolutions) instead of "
            f"{float(sp.size()):.3g}; the bound (P·K)^units is {(len(per_eq) * p.k) ** sp.n_units:.3g}. "
            f"Predictors: {sum(b.info['cached'] for b in builds.values())} of {len(builds)} loaded from the cache, "
            f"training time {sum(b.info['train_s'] for b in builds.values()):.0f} s in total."
        )
    )
    return candidates, per_eq, union_size


def _evaluator_metrics(p: Params, sp):
    """Real accuracy from the Mini-OFA evaluator (through the evaluation cache) and, for architectures
    outside the benchmark, latency from the benchmark's k-GNN model: ``(latency, metrics, cache path)``."""
    model, record = load_latency_model(p.space, study.mini_ofa_dir())
    lazy_lat = build.LazyLatencyPredictor.of(model, {"source": f"the benchmark's latency-{p.space}.pt, trained on "
                                                      f"its {record.get('latency_source', 'measured')} latencies"})
    cache_path = construction.resolve_eval_cache(p.eval_cache, p.profile, study.mini_ofa_dir())
    ev = study.evaluator(p.dataset, cache=cache_path, latency="skip")
    return lazy_lat, construction.SearchMetrics(sp, p.space, evaluator=ev, latency_fn=lazy_lat), cache_path


def evaluators(
    p: Params, frame, keys, l1, ls, sp,
):
    """How architectures are evaluated."""
    metrics = None
    lazy_lat = build.LazyLatencyPredictor(
        sp, keys, frame["latency_cpu"].to_numpy(), p.pcache, epochs=p.latency_epochs, seed=p.seed
    )
    if p.accuracy == "evaluator":
        lazy_lat, metrics, cache_path = _evaluator_metrics(p, sp)
        acc_res = None
        print(f"evaluation cache: {cache_path if p.profile == 'full' else 'temporary copy (smoke)'}")
    elif l1 is not None:
        acc_res = None
        metrics = construction.SearchMetrics(
            sp,
            p.space,
            accuracy_fn=lambda a: l1.predict(p.space, a, "acc"),
            latency_fn=lambda a: l1.predict(p.space, a, "latency_cpu"),
            known=frame,
        )
        display(
            pd.DataFrame(
                [
                    {"surrogate": f"{t} ({L1_SOURCE})", "file": l1_files(l1.l1_dir, p.space, t)[0].name}
                    for t in ("acc", "latency_cpu")
                ]
            )
        )
    else:
        if p.dataset == "autobuild-release":
            print(
                f"no l1_models/ folder with {p.space} acc and latency_cpu predictors in {study.resolve_data_dir(p.data_dir)}: "
                "the study's own predictors are used (see README, released data)"
            )
        acc_res, acc_info = build.train_cached(ls.graphs, frame["acc"].to_numpy(), keys, p.config, p.pcache)
        metrics = construction.SearchMetrics(
            sp, p.space, accuracy_fn=lambda a: build.predict_archs(acc_res, sp, a), latency_fn=lazy_lat, known=frame
        )
        display(
            pd.DataFrame(
                [
                    {
                        "surrogate": "acc (AutoBuild predictor)",
                        "test SRCC": acc_res.metrics.get("srcc_pred"),
                        "test MAE (%)": acc_res.metrics.get("mae"),
                        "from cache": acc_info["cached"],
                    }
                ]
            ).round(3)
        )
    print(
        f"accuracy of new architectures: {'evaluated (supernet weights)' if metrics.mode == 'evaluator' else f'predicted ({L1_SOURCE})' if l1 is not None else 'predicted (surrogate estimates)'}"
    )
    return lazy_lat, metrics


def searches(
    p: Params, candidates, l1, lazy_lat, metrics, s_per, sp
):
    """The searches."""
    scheme_objs = {s: make_scheme(s, sp, candidates if s == "autobuild" else None) for s in p.schemes}
    names = {s: o.name for s, o in scheme_objs.items()}
    t0 = time.perf_counter()
    results = construction.run_search_grid(
        sp, {names[s]: o for s, o in scheme_objs.items()}, metrics, p.seeds, p.n_initial, p.n_iterations, p.per_iteration
    )
    search_s = time.perf_counter() - t0
    history = construction.search_history(results)
    prov = metrics.provenance()
    if l1 is not None:  # name the predictor that produced the searched architectures' numbers
        by_l1 = prov["source"] == "predictor"
        prov.loc[by_l1, "source"] = L1_SOURCE
        prov.loc[by_l1, ["acc_source", "latency_source"]] = f"predicted ({L1_SOURCE})"
    hist = history.merge(prov[["arch", "acc_source", "latency_source", "source"]], on="arch", how="left")
    src = hist.groupby("scheme", sort=False)[["acc_source", "latency_source", "source"]].agg(
        lambda c: ", ".join(f"{k}: {v}" for k, v in c.value_counts().items())
    )
    display(src)
    computed = prov[prov["source"] == "computed"]
    n_new = int((prov["source"] != "benchmark").sum())
    counts = pd.Series(
        {
            "evaluations requested": len(history),
            "distinct architectures": len(prov),
            "from the benchmark table": int((prov["source"] == "benchmark").sum()),
            "cache hits": int((prov["source"] == "cache").sum()),
            "new (computed now)": len(computed),
            "predicted by the surrogate": int((prov["source"] == "predictor").sum()),
            f"predicted by {L1_SOURCE}": int((prov["source"] == L1_SOURCE).sum()),
            "latency measured": int((prov["latency_source"] == "measured").sum()),
            "latency predicted (k-GNN)": int((prov["latency_source"] == "predicted").sum()),
        },
        name="architectures",
        dtype=object,
    ).to_frame()
    display(counts)
    per_new = s_per or (float(computed["seconds"].mean()) if len(computed) else None)
    lat_note = (
        f"latency of new architectures from {L1_SOURCE}"
        if l1 is not None
        else "the latency predictor was not needed (every latency measured or cached)"
        if lazy_lat.result is None
        else f"latency predictor: test SRCC {lazy_lat.result.test_srcc:.3f}, MAE {lazy_lat.result.test_mae_ms:.2f} ms "
        f"({lazy_lat.info.get('source') or ('loaded from cache' if lazy_lat.info.get('cached') else 'trained now')})"
    )
    display(
        Markdown(
            f"{len(history)} evaluations requested, {len(prov)} distinct architectures, {n_new} of them outside the benchmark table; "
            f"searches took {search_s:.1f} s. Accuracy sources: {prov['acc_source'].value_counts().to_dict()}; "
            f"latency sources: {prov['latency_source'].value_counts().to_dict()}; {lat_note}. "
            + (
                f"{len(computed)} architectures were evaluated now ({computed['seconds'].sum():.0f} s), "
                f"{int((prov['source'] == 'cache').sum())} were cache hits"
                + (
                    f"; from an empty cache the {n_new} would take about {n_new * per_new / 3600:.2f} h of one CPU core."
                    if per_new
                    else "."
                )
                if p.accuracy == "evaluator"
                else ""
            )
        )
    )
    return history, names, results


def hypervolume(p: Params, frame, metrics, names, ref_point, results, train_front):
    """Hypervolume."""
    curves = construction.hypervolume_curves(results, ref_point)
    palette = dict(zip(names.values(), sns.color_palette("tab10", len(names))))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    ax.scatter(frame["latency_cpu"], frame["acc"], s=5, c="0.8", label=f"training archs ({len(frame)})", zorder=1)
    ax.step(
        train_front["latency_cpu"],
        train_front["acc"],
        where="post",
        c="k",
        ls="--",
        lw=1.2,
        label="training front",
        zorder=2,
    )
    for (name, s), r in results.items():
        f = r.front.sort_values("latency_cpu")
        ax.step(
            f["latency_cpu"],
            f["acc"],
            where="post",
            color=palette[name],
            alpha=0.8,
            lw=1.4,
            label=name if s == p.seeds[0] else None,
            zorder=3,
        )
        ax.scatter(f["latency_cpu"], f["acc"], color=palette[name], s=12, zorder=4)
    ax.set_xlabel(
        "CPU latency (ms)" + (" [measured or k-GNN predicted]" if metrics.mode == "evaluator" else " [estimates]")
    )
    ax.set_ylabel("top-1 accuracy (%)" + ("" if metrics.mode == "evaluator" else " [estimates]"))
    ax.set_title(
        f"final fronts, {len(p.seeds)} seeds each ({'evaluated' if metrics.mode == 'evaluator' else 'predicted'} accuracy)"
    )
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    for name, g in curves.groupby("scheme", sort=False):
        m = g.groupby("evaluated")["HV"].agg(["mean", "min", "max"])
        ax.plot(m.index, m["mean"], marker="o", color=palette[name], label=name)
        ax.fill_between(m.index, m["min"], m["max"], color=palette[name], alpha=0.15)
    ax.set_xlabel("architectures evaluated")
    ax.set_ylabel("hypervolume (mean, band: min-max over seeds)")
    ax.set_title(f"{p.space.upper()} on {p.dataset}: hypervolume during search")
    ax.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    return curves


def hypervolume_table(curves, names):
    """Hypervolume."""
    final = curves.loc[curves.groupby(["scheme", "seed"], sort=False)["iteration"].idxmax()].pivot(
        index="seed", columns="scheme", values="HV"
    )
    ab = names.get("autobuild")
    pair_rows = []
    if ab is not None:
        for other in [n for n in names.values() if n != ab]:
            d = final[ab] - final[other]
            pair_rows.append(
                {
                    "baseline": other,
                    "mean HV difference (AutoBuild - baseline)": d.mean(),
                    "std": d.std(ddof=1) if len(d) > 1 else np.nan,
                    "seeds won": f"{int((d > 0).sum())}/{len(d)}",
                }
            )
    pairs = pd.DataFrame(pair_rows)
    shown = (
        pairs.round(4) if len(pairs) else Markdown("AutoBuild-NAS is not among the schemes: no pairwise comparison.")
    )
    return ab, pairs, shown


def claims(
    p: Params, ab, candidates, l1, metrics, pairs, per_eq, sp, summary, union_size,
):
    """Paper vs this study."""
    reason = (
        ""
        if metrics.mode == "evaluator"
        else f"accuracy: {L1_SOURCE}"
        if l1 is not None
        else "accuracy: predictor estimates"
    )

    def verdict(ok):
        return C.verdict(ok, reason)

    rank = list(summary.index)
    n_eq, paper_k = paper.NAS_EQUATIONS, paper.NAS_K
    paper_size = (n_eq * paper_k) ** sp.n_units
    rows = [
        {
            "claim": "AutoBuild-NAS reaches the best accuracy-latency front (largest hypervolume)",
            "paper": "yes (Fig. 5, bottom)",
            "this study": (
                f"rank {rank.index(ab) + 1} of {len(rank)}: "
                + ", ".join(f"{n} {summary.loc[n, 'HV mean']:.4g} ± {summary.loc[n, 'HV std']:.2g}" for n in rank)
            )
            if ab in rank
            else "AutoBuild-NAS not run",
            "verdict": verdict(bool(rank and rank[0] == ab))
            if ab in rank and len(rank) > 1
            else C.undetermined("needs AutoBuild-NAS and a baseline"),
        }
    ]
    for _, pair in pairs.iterrows():
        won, n = map(int, pair["seeds won"].split("/"))
        rows.append(
            {
                "claim": f"AutoBuild-NAS beats {pair['baseline']}",
                "paper": "yes",
                "this study": f"mean HV difference {pair['mean HV difference (AutoBuild - baseline)']:+.4g}, won {won}/{n} seeds",
                "verdict": verdict(pair["mean HV difference (AutoBuild - baseline)"] > 0 and won > n / 2),
            }
        )
    rows.append(
        {
            "claim": f"union of {n_eq} equations' top-{paper_k} modules per unit: ({n_eq}·{paper_k})^{sp.n_units} "
            f"= {paper_size:.0e} architectures".replace("e+", "e"),
            "paper": f"{paper_size:.3g}",
            "this study": f"{union_size:.3g} ({len(per_eq)} equations, K={p.k})",
            "verdict": (
                C.verdict(True)
                if union_size == paper_size
                else C.verdict(False, f"smaller: the equations' top-K lists overlap, {sum(len(c) for c in candidates)} of "
                f"{len(per_eq) * p.k * sp.n_units} module slots distinct")
            )
            if (len(per_eq) == n_eq and p.k == paper_k)
            else C.not_comparable(f"{len(per_eq)} equations, K={p.k}"),
        }
    )
    rows.append(
        {
            "claim": f"budget {paper.NAS_BUDGET} = {paper.NAS_INITIAL} + {paper.NAS_ITERATIONS} x "
            f"{(paper.NAS_BUDGET - paper.NAS_INITIAL) // paper.NAS_ITERATIONS} per search",
            "paper": f"{paper.NAS_BUDGET}",
            "this study": f"{p.budget} = {p.n_initial} + {p.n_iterations} x {p.per_iteration}, {len(p.seeds)} seeds",
            "verdict": C.note("same setting")
            if p.budget == paper.NAS_BUDGET and (p.n_initial, p.n_iterations) == (paper.NAS_INITIAL, paper.NAS_ITERATIONS)
            else C.not_comparable("setting"),
        }
    )
    claims = C.claims_table(rows, smoke=p.profile == "smoke")
    C.show_claims(claims, "06_evolutionary_nas", wide=True)


# ----------------------------------------------------------------------------- cache filling
NOTEBOOK = NOTEBOOK_DIR / "06_evolutionary_nas.ipynb"


def notebook_params(**overrides) -> Params:
    """:class:`Params` from the notebook's parameters cell (its defaults: the full profile, the
    paper's setting), with ``overrides``; so the cache filler runs exactly the searches the notebook runs."""
    declared = pm.inspect_notebook(str(NOTEBOOK))
    values = {name: ast.literal_eval(d["default"]) for name, d in declared.items()}  # literals only
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"chapter 06 has no parameter {sorted(unknown)}; it has {sorted(values)}")
    return Params(**{**values, **overrides})


def _fill_run(p: Params, scheme: str, seed: int) -> dict:
    """One (scheme, seed) search of the full profile, run only for the evaluations it caches."""
    torch.set_num_threads(1)
    ls = study.load_set(p.dataset, p.space, p.data_dir, n=p.n_train, seed=p.seed)
    sp = ls.space
    candidates = union_candidates([b.top(p.k) for b in _builds(p, ls).values()]) if scheme == "autobuild" else None
    _, metrics, _ = _evaluator_metrics(p, sp)
    t0 = time.perf_counter()
    construction.run_search_grid(sp, {scheme: make_scheme(scheme, sp, candidates)}, metrics, [seed], p.n_initial,
                                 p.n_iterations, p.per_iteration)
    src = metrics.provenance()["source"].value_counts().to_dict()
    return {"scheme": scheme, "seed": int(seed), "distinct archs": int(sum(src.values())),
            **{str(k): int(v) for k, v in src.items()}, "seconds": round(time.perf_counter() - t0, 1)}


def fill_cache(p: Params, n_jobs: int = 1, progress: bool = True) -> list[dict]:
    """Run every (scheme, seed) search of ``p`` (full profile, accuracy from the evaluator) so that the
    notebook finds every accuracy in the evaluation cache.  The searches are deterministic (fixed seeds,
    cached evaluations return the stored values), so the notebook retraces exactly these paths.
    Resumable: the evaluator commits one row at a time.  ``n_jobs`` searches run at once (one core each).
    Each finished search of the benchmark's cache is logged as its stage ``chapter06_fill`` (and printed
    when ``progress``).  Returns one summary per search (counts by source: benchmark, cache, computed)."""
    if p.accuracy != "evaluator":
        raise ValueError(f"only the evaluator mode has a cache to fill (this setting uses accuracy={p.accuracy!r}: "
                         "run the full profile on mini-ofa)")
    runs = [(s, seed) for s in p.schemes for seed in p.seeds]
    out = []
    for rec in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(_fill_run)(p, s, seed)
                                                                         for s, seed in runs):
        if p.eval_cache == "auto" and p.profile == "full":  # the benchmark's cache: each search logged at once
            construction.log_fill(FILL_STAGE, {"space": p.space, **rec}, now_utc(), rec["seconds"])
        if progress:
            print(json.dumps(rec), flush=True)
        out.append(rec)
    return out
