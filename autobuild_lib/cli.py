"""Command-line interface: ``python -m autobuild_lib <command>`` (or ``autobuild``).

Arguments are checked before any work starts.  Every failure ends in one line on stderr,
``error: <cause>; <remedy>``, and a non-zero exit (``--debug`` adds the trace); a closed
output pipe (``... | head``) ends quietly with exit 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import NoReturn

import pandas as pd

# a deprecation notice printed when PyG is imported: noise for a user of this CLI
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def _spaces(args: argparse.Namespace) -> None:
    from autobuild_lib.core.spaces import get_space

    rows = {}
    for name in ("mbv3", "pn", "sd", "sd-hw"):
        sp = get_space(name)
        rows[name] = {"units": sp.n_units,
                      "modules_per_unit": [sp.n_modules(u) for u in range(sp.n_units)],
                      "size": sp.size(), "size_sci": f"{float(sp.size()):.3g}"}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for name, r in rows.items():
            print(f"{name:6s} size {r['size_sci']:>9s}  modules per unit {r['modules_per_unit']}")


def _load_set(args: argparse.Namespace):
    from autobuild_lib.benchmarks.labelled import load_labelled

    return load_labelled(args.space, table=args.table, released=args.released)


def _train(args: argparse.Namespace) -> None:
    from autobuild_lib.core.equations import LabelEquation
    from autobuild_lib.core.scoring import hop_moments, label_moments
    from autobuild_lib.core.training import TrainConfig, save_result, train_predictor

    equation = LabelEquation.parse(args.label)  # a bad equation fails before any data is read
    ls = _load_set(args)
    y = ls.labels(equation)
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, hop_srcc=not args.mse_only)
    res = train_predictor(ls.graphs, y, cfg, progress=not args.quiet)
    hm = hop_moments(res.model, ls.graphs, res.train_idx)
    lm = label_moments(ls.space, [ls.archs[i] for i in res.train_idx], y[res.train_idx])
    save_result(res, args.out, space=ls.space.name, label=args.label,
                hop_moments=hm.reset_index().to_dict("list"),
                label_moments=lm.reset_index().to_dict("list"))
    print(json.dumps({"out": str(args.out), **res.metrics}, indent=2, allow_nan=False))


def _load_model(path: str, space: str | None = None):
    """A predictor saved by ``train`` with its space, label and moments; refuses another space."""
    from autobuild_lib.core.graphs import OFA_SCHEMA
    from autobuild_lib.core.spaces import get_space
    from autobuild_lib.core.training import load_result

    res, extra = load_result(path, OFA_SCHEMA)
    missing = [k for k in ("space", "label", "hop_moments", "label_moments") if k not in extra]
    if missing:
        raise ValueError(f"{path} records no {', '.join(missing)}; retrain it with `autobuild train`, "
                         "which stores them")
    if space is not None and extra["space"] != space:
        raise ValueError(f"{path} predicts {extra['label']!r} on space {extra['space']!r}, not {space!r}; "
                         f"use a predictor trained with --space {space}")
    hm = pd.DataFrame(extra["hop_moments"]).set_index("hop")
    lm = pd.DataFrame(extra["label_moments"]).set_index(["unit", "layers"])
    return res, get_space(extra["space"]), hm, lm, extra["label"]


def _score(args: argparse.Namespace) -> None:
    from autobuild_lib.core.scoring import score_modules

    res, space, hm, lm, label = _load_model(args.model)
    scores = score_modules(res, space, hm, lm, resolution=args.resolution, shift=not args.no_shift)
    scores.insert(0, "label", label)
    scores.insert(0, "space", space.name)
    scores.to_csv(args.out, index=False)
    best = scores.sort_values("score", ascending=False).groupby("unit").head(1)
    print(best.to_string(index=False))


def _read_scores(path: str, space: str) -> pd.DataFrame:
    """A module-score table written by ``score``; refuses one of another space or without one."""
    from autobuild_lib.benchmarks.labelled import read_csv_file

    scores = read_csv_file(path, "module-score table")
    need = {"space", "label", "unit", "module", "score"}
    if not need <= set(scores.columns):
        raise ValueError(f"{path} lacks column(s) {sorted(need - set(scores.columns))}; "
                         "write module scores with `autobuild score`, which records the space and label")
    spaces, labels = sorted(set(scores["space"].astype(str))), sorted(set(scores["label"].astype(str)))
    if len(labels) > 1:
        raise ValueError(f"{path} mixes the scores of labels {labels}; score each predictor into its own file")
    if spaces != [space]:
        raise ValueError(f"{path} scores modules of space {', '.join(spaces)}, not {space!r}; "
                         f"score a predictor trained with --space {space}")
    return scores


def _construct(args: argparse.Namespace) -> None:
    from autobuild_lib.core.construction import construct, top_k
    from autobuild_lib.core.spaces import get_space

    space = get_space(args.space)
    scores = _read_scores(args.scores, args.space)
    archs = construct(space, top_k(scores, args.k, maximize=not args.minimize), args.resolution)
    for a in archs:
        print(space.to_string(a))


def _search(args: argparse.Namespace) -> None:
    from autobuild_lib.core.construction import top_k
    from autobuild_lib.core.graphs import ofa_graph
    from autobuild_lib.core.search import SCHEMES, evolutionary_search, make_scheme, union_candidates
    from autobuild_lib.core.spaces import get_space
    from autobuild_lib.core.training import predict

    space = get_space(args.space)
    objectives, specs = [], []
    for spec in args.objective:
        try:
            name, rest = spec.split("=", 1)
            path, direction = rest.rsplit(":", 1)
        except ValueError:
            raise ValueError(f"--objective {spec!r}: expected NAME=MODEL.pt:max|min") from None
        if direction not in ("max", "min"):
            raise ValueError(f"--objective {spec!r}: direction must be max or min")
        objectives.append((name, direction == "max"))
        specs.append((name, path))
    if args.scheme == "autobuild" and not args.candidates:
        raise ValueError("--scheme autobuild needs --candidates SCORES.csv [...]")
    models = {name: _load_model(path, args.space)[0] for name, path in specs}
    candidates = None
    if args.scheme == "autobuild":
        candidates = union_candidates([top_k(_read_scores(p, args.space), args.k) for p in args.candidates])

    from autobuild_lib.core.graphs import OFA_SCHEMA, GraphTable

    def evaluate(arch):
        table = GraphTable([ofa_graph(space, arch)], OFA_SCHEMA)
        return {n: float(predict(m, table)[0][0]) for n, m in models.items()}

    scheme = make_scheme(args.scheme, space, candidates)
    result = evolutionary_search(space, scheme, evaluate, objectives, n_initial=args.initial,
                                 n_iterations=args.iterations, per_iteration=args.per_iteration,
                                 seed=args.seed, progress=not args.quiet)
    result.history.to_csv(args.out, index=False)
    print(result.front.to_string(index=False))
    print(f"(surrogate search: objectives are predictor estimates; {len(result.history)} archs"
          f" -> {args.out}; schemes: {sorted(SCHEMES)})")


def _evaluate(args: argparse.Namespace) -> None:
    """``evaluate --l1-dir``: predictions of the authors' L1 predictors for the architectures in ``--archs``."""
    from autobuild_lib.benchmarks.released_l1 import L1Evaluator

    path = Path(args.archs)
    if not path.is_file():
        raise FileNotFoundError(f"--archs {path}: no such file; give one architecture string per line "
                                "(e.g. 224|k3e6,k5e4|...) or a CSV with an 'arch' column")
    if path.suffix == ".csv":
        from autobuild_lib.benchmarks.labelled import read_table

        archs = [str(a) for a in read_table(path)["arch"]]
    else:
        archs = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not archs:
        raise ValueError(f"--archs {path} holds no architecture")
    out = L1Evaluator(args.l1_dir).evaluate_many(args.space, archs)
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"{len(out)} architectures -> {args.out} (acc in %, latency in ms; source: {out['source'].iloc[0]})")
    else:
        print(out.to_csv(index=False), end="")


def _bench(args: argparse.Namespace) -> None:
    from autobuild_lib.study.bench import run_bench

    out = run_bench(epochs=args.epochs, n_archs=args.n_archs)
    print(json.dumps(out, indent=2) if args.json else out)


def _data(args: argparse.Namespace) -> None:
    from autobuild_lib.benchmarks.datasets import data_summary

    out = data_summary(Path(args.data_dir) if args.data_dir else None)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(_summary_text(out))
    nan = [f"{t}: {c} ({n})" for t, st in {**out["tables"], **out["released"]}.items()
           for c, n in st.get("nan_labels", {}).items()]
    if nan:
        raise ValueError(f"NaN labels (count in brackets) in {'; '.join(nan)}; drop or fix those rows")


def _summary_text(out: dict) -> str:
    """The plain-text ``data summary``: rows and NaN labels of every table, then the released caches."""
    def lines(kind: str, entries: dict) -> list[str]:
        if not entries:
            return [f"{kind}: none"]
        rows = [f"{kind}:"]
        for name, st in entries.items():
            if "rows" not in st:
                rows.append(f"  {name}  (not an OFA cache: {st.get('path', '')})")
                continue
            nan = ", ".join(f"{c}: {n}" for c, n in st.get("nan_labels", {}).items())
            rows.append(f"  {name}  rows {st['rows']}  labels {', '.join(st['labels'])}"
                        + (f"  NaN labels {nan}" if nan else ""))
        return rows

    return "\n".join(lines("tables", out["tables"]) + lines("released caches", out["released"]))


def _engine(args: argparse.Namespace):
    """Where the work units run: a Dask cluster (``--scheduler``) or joblib's ``--backend`` here."""
    from joblib import parallel_config

    from autobuild_lib.benchmarks.pipeline.workunits import dask_scheduler

    if args.scheduler:
        return dask_scheduler(args.scheduler, n_workers=args.n_jobs)
    return parallel_config(backend=args.backend)


def _generate(args: argparse.Namespace) -> None:
    from autobuild_lib.benchmarks.miniofa.generate import generate

    stages = args.stages.split(",") if args.stages else None
    kw = {} if stages is None else {"stages": stages}
    if args.design:
        kw["design"] = args.design
    with _engine(args):
        for space in args.space:
            rep = generate(space, n=args.n, n_jobs=args.n_jobs, chunk=args.chunk,
                           time_budget_s=args.time_budget_s, progress=not args.quiet, **kw)
            for stage, r in rep.items():
                print(json.dumps({k: v for k, v in r.items() if k != "machine"}))


def _generate_staged(args: argparse.Namespace) -> None:
    """``generate mini-sd`` / ``generate mini-panoptic``: run the benchmark's stages, print each report."""
    import importlib

    mod = importlib.import_module({"mini-sd": ".benchmarks.minisd.generate", "mini-panoptic": ".benchmarks.panoptic.generate"}[args.benchmark],
                                  __package__)
    stages = args.stages.split(",") if args.stages else mod.STAGES
    kw = {"allow_unreliable": args.allow_unreliable} if args.benchmark == "mini-panoptic" else {}
    with _engine(args):
        rep = mod.generate(stages, n_jobs=args.n_jobs, progress=not args.quiet, **kw)
    for r in rep.values():
        print(json.dumps({k: v for k, v in r.items() if k != "machine"}))


def _book(args: argparse.Namespace) -> None:
    from autobuild_lib.study.book import build_book

    log = build_book(profile=args.profile, only=args.only, render=not args.no_render)
    print(pd.DataFrame(log)[["notebook", "status", "seconds"]].to_string(index=False))


def _chapter05(args: argparse.Namespace) -> None:
    """``chapter05``: the architectures chapter 05 evaluates: list, count what the cache lacks, or fill it."""
    from autobuild_lib.study import construction as C
    from autobuild_lib.study import data as study

    kw = {"profile": args.profile, "seed": args.seed, "k": args.k, "epochs": args.epochs,
          "equations": args.equations or C.CHAPTER05_EQUATIONS, "predictor_cache": args.predictor_cache}
    for space in args.space:
        if args.fill:
            out = C.fill_chapter05_cache(space, cache=args.cache, **kw)
            print(json.dumps({"space": space, "archs": len(out), **out["source"].value_counts().to_dict()}))
            continue
        keys = C.chapter05_archs(space, **kw)
        if args.measure_latency:
            print(json.dumps(C.measure_constructed_latency(space, keys, args.measure_latency)))
            continue
        if args.list:
            sys.stdout.write("".join(f"{space}\t{k}\n" for k in keys))
            continue
        # the mode --fill evaluates in (accuracy only), so the rows it wrote count as cached
        ev = study.evaluator("mini-ofa", cache=args.cache, latency="skip")
        todo, never = ev.uncached(space, keys), ev.uncached(space, keys, include_cache=False)
        print(json.dumps({"space": space, "digest": C.archs_digest(keys), "distinct archs": len(keys),
                          "in benchmark table": len(keys) - len(never),
                          "cached": len(never) - len(todo), "to compute": len(todo)}))


def _add_chapter05(sub) -> None:
    from autobuild_lib.study.config import PROFILES
    from autobuild_lib.study.construction import CHAPTER05_EQUATIONS, DEFAULT_PREDICTOR_CACHE

    s = sub.add_parser("chapter05", help="the architectures chapter 05 evaluates: list, count uncached, or fill "
                                         "the evaluation cache")
    s.add_argument("--space", nargs="+", default=["mbv3", "pn"], choices=["mbv3", "pn"])
    s.add_argument("--profile", default="full", choices=PROFILES)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--k", type=int, default=3)
    s.add_argument("--epochs", type=int, default=200)
    s.add_argument("--equation", action="append", dest="equations",
                   help=f"label equation (repeat; default: {list(CHAPTER05_EQUATIONS)})")
    s.add_argument("--predictor-cache", default=DEFAULT_PREDICTOR_CACHE)
    s.add_argument("--cache", default=None, help="evaluation cache (default: <mini-ofa dir>/evaluations.sqlite)")
    what = s.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="print one canonical architecture string per line")
    what.add_argument("--count", action="store_true", help="print counts as JSON (default)")
    what.add_argument("--fill", action="store_true", help="evaluate every architecture not cached yet")
    what.add_argument("--measure-latency", type=_positive, metavar="N", default=0,
                      help="measure the latency of N evenly spaced constructed architectures outside the benchmark "
                           "with the space's round protocol, and the latency predictor's error on them (run with "
                           "nothing else on the machine)")
    s.set_defaults(func=_chapter05)


def _chapter06(args: argparse.Namespace) -> None:
    """``chapter06 --fill``: run chapter 06's full-profile searches so its evaluation cache holds every accuracy."""
    from autobuild_lib.study import chapter06

    p = chapter06.notebook_params(space=args.space)
    print(p.summary(), flush=True)
    chapter06.fill_cache(p, n_jobs=args.n_jobs)


def _add_chapter06(sub) -> None:
    s = sub.add_parser("chapter06", help="fill chapter 06's evaluation cache (the notebook's full-profile searches)")
    s.add_argument("--space", default="mbv3", choices=["mbv3", "pn"])
    s.add_argument("--n-jobs", type=_positive, default=1, help="searches run at once, one core each")
    s.add_argument("--fill", action="store_true", required=True,
                   help="run every scheme x seed search of the notebook's parameters cell (resumable)")
    s.set_defaults(func=_chapter06)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def engine_args(g: argparse.ArgumentParser) -> None:
    g.add_argument("--backend", default="loky", choices=["loky", "threading"],
                   help="joblib backend for --n-jobs on this machine (default loky)")
    g.add_argument("--scheduler", metavar="local|ADDRESS",
                   help="run the work units on a Dask cluster: 'local' starts a LocalCluster of --n-jobs "
                        "worker processes, else the address of a running scheduler, e.g. tcp://host:8786; "
                        "shards are written by this process only")


def _add_debug(p: argparse.ArgumentParser, top: bool) -> None:
    """``--debug`` on every (sub)command; subcommands must not reset the top-level value."""
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="on failure, show the full trace")
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_debug(child, top=False)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line: what was wrong and where to read the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autobuild", description="AutoBuild study: the method and its data.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("spaces", help="module counts per unit and space sizes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_spaces)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--space", required=True, choices=["mbv3", "pn"])
        g = q.add_mutually_exclusive_group(required=True)
        g.add_argument("--table", help="benchmark CSV with an 'arch' column")
        g.add_argument("--released", help="an authors' cache, e.g. ofa_mbv3_custom_cache.pkl")

    s = sub.add_parser("train", help="train an AutoBuild predictor on a label equation")
    data_args(s)
    s.add_argument("--label", required=True, help="label equation, e.g. 'acc/latency_cpu'")
    s.add_argument("--epochs", type=_positive, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--mse-only", action="store_true", help="ablation: drop the hop-SRCC term")
    s.add_argument("--out", required=True, help="where to save the predictor (.pt)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_train)

    s = sub.add_parser("score", help="score every module of every unit (Eq. 5)")
    s.add_argument("--model", required=True)
    s.add_argument("--resolution", type=int, default=224)
    s.add_argument("--no-shift", action="store_true", help="raw hop norms, no Eq. 5 shift")
    s.add_argument("--out", required=True, help="CSV of module scores")
    s.set_defaults(func=_score)

    s = sub.add_parser("construct", help="the K^|u| architectures of the top-K modules")
    s.add_argument("--space", required=True, choices=["mbv3", "pn"])
    s.add_argument("--scores", required=True)
    s.add_argument("--k", type=_positive, default=3)
    s.add_argument("--resolution", type=int, default=224)
    s.add_argument("--minimize", action="store_true", help="take the lowest scores")
    s.set_defaults(func=_construct)

    s = sub.add_parser("search", help="evolutionary NAS with predictors as evaluators")
    s.add_argument("--space", required=True, choices=["mbv3", "pn"])
    s.add_argument("--scheme", required=True,
                   choices=["stage-full", "layer-full", "layer-insight-gpu", "layer-insight-cpu",
                            "layer-insight-npu", "autobuild"])
    s.add_argument("--objective", action="append", required=True, help="NAME=MODEL.pt:max|min")
    s.add_argument("--candidates", nargs="*", help="module score CSVs (autobuild scheme)")
    s.add_argument("--k", type=_positive, default=25)
    s.add_argument("--initial", type=_positive, default=50)
    s.add_argument("--iterations", type=_positive, default=4)
    s.add_argument("--per-iteration", type=_positive, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="CSV of every evaluated architecture")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_search)

    s = sub.add_parser("evaluate", help="predict acc and latency with the authors' L1 predictors (l1_models/)")
    s.add_argument("--l1-dir", required=True, help="the l1_models/ folder of the authors' repository")
    s.add_argument("--space", required=True, choices=["mbv3", "pn"])
    s.add_argument("--archs", required=True, help="file: one architecture string per line, or a CSV with 'arch'")
    s.add_argument("--out", help="CSV to write (default: print CSV)")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("bench", help="time training and module scoring")
    s.add_argument("--json", action="store_true")
    s.add_argument("--epochs", type=_positive, default=200)
    s.add_argument("--n-archs", type=_positive, default=2700)
    s.set_defaults(func=_bench)

    s = sub.add_parser("data", help="the study's data")
    dsub = s.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = dsub.add_parser("summary", help="tables, rows and label statistics")
    d.add_argument("--json", action="store_true")
    d.add_argument("--data-dir", help="also list the authors' released caches found here")
    d.set_defaults(func=_data)

    s = sub.add_parser("generate", help="generate the study's benchmark data (resumable)")
    gsub = s.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    g = gsub.add_parser("mini-ofa", help="Mini-OFA: supernet, labels of 3,000 archs per space, IR graphs")
    g.add_argument("--space", nargs="+", required=True, choices=["mbv3", "pn"])
    g.add_argument("--stages", help="comma-separated subset of supernet,reliability,static,latency,acc,ir,merge,checks "
                                    "(default: all, in that order), or latency_pilot,latency_rounds (only when named; "
                                    "nothing else may run on the machine meanwhile)")
    g.add_argument("--n", type=_positive, default=3000, help="architectures per space")
    g.add_argument("--design", help="supernet design (autobuild_lib.benchmarks.miniofa.generate.DESIGNS; default FINAL_DESIGN)")
    g.add_argument("--n-jobs", type=_positive, default=1, help="parallel work units (latency: keep 1)")
    engine_args(g)
    g.add_argument("--chunk", type=_positive, default=50, help="units per shard")
    g.add_argument("--time-budget-s", type=float, help="stop supernet training after this many seconds")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_generate)
    g = gsub.add_parser("mini-sd", help="Mini-SD: FID classifier, base U-Net, FID labels of fine-tuned variants")
    g.add_argument("--stages", help="comma-separated subset of classifier,base,reliability,labels,constructions,hw_labels,hw_latency,hw_constructions "
                                    "(default: all, in that order)")
    g.add_argument("--n-jobs", type=_positive, default=1, help="variants fine-tuned in parallel (one core each)")
    engine_args(g)
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_generate_staged)
    g = gsub.add_parser("mini-panoptic", help="Mini-Panoptic: panoptic supernet, pseudo and fully fine-tuned PQ labels")
    g.add_argument("--stages", help="comma-separated subset of supernet,reliability,noise,pseudo,full,constructions "
                                    "(default: all, in that order)")
    g.add_argument("--n-jobs", type=_positive, default=1, help="architectures labelled in parallel (one core each)")
    engine_args(g)
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--allow-unreliable", action="store_true",
                   help="label even if the reliability check missed its bar (the data card will say so)")
    g.set_defaults(func=_generate_staged)

    _add_chapter05(sub)
    _add_chapter06(sub)

    s = sub.add_parser("book", help="execute the notebooks and render the book")
    s.add_argument("--profile", choices=["smoke", "full"], help="default: _config.yml")
    s.add_argument("--only", nargs="*", help="notebook names to run")
    s.add_argument("--no-render", action="store_true", help="skip jupyter-book build")
    s.set_defaults(func=_book)
    _add_debug(p, top=True)
    return p


def _check_paths(args: argparse.Namespace) -> None:
    """Fail on unusable paths before any work: inputs must exist, outputs must be writable files."""
    for attr in ("table", "released", "model", "scores"):
        value = getattr(args, attr, None)
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"--{attr} {value} not found (no such file); check the path")
    data_dir = getattr(args, "data_dir", None)
    if data_dir and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: no such folder; pass the folder holding the "
                                "authors' released caches")
    for path in getattr(args, "candidates", None) or []:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--candidates {path} not found (no such file); check the path")
    out = getattr(args, "out", None)
    if out:
        out, parent = Path(out), Path(out).parent
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name inside it")
        if not parent.is_dir():
            raise FileNotFoundError(f"--out {out}: folder {parent} does not exist; create it first (mkdir -p {parent})")
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"--out {out}: folder {parent} is not writable; choose another place")


def _one_line(exc: BaseException, limit: int = 600) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return text if len(text) <= limit else text[:limit] + "..."


_EXPECTED = (ValueError, LookupError, OSError, RuntimeError, ArithmeticError, EOFError)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 failure, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        _check_paths(args)
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader (e.g. `| head`) has gone: not a failure
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; rerun the command (generation resumes where it stopped)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place where failures become messages
        if args.debug:
            traceback.print_exc()
        if isinstance(exc, _EXPECTED):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)}; rerun with --debug "
                  "for the trace and report it", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
