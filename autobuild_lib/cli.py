"""Command-line interface: ``python -m autobuild_lib <command>`` (or ``autobuild``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


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
    from autobuild_lib.core.scoring import hop_moments, label_moments
    from autobuild_lib.core.training import TrainConfig, save_result, train_predictor

    ls = _load_set(args)
    y = ls.labels(args.label)
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, hop_srcc=not args.mse_only)
    res = train_predictor(ls.graphs, y, cfg, progress=not args.quiet)
    hm = hop_moments(res.model, ls.graphs, res.train_idx)
    lm = label_moments(ls.space, [ls.archs[i] for i in res.train_idx], y[res.train_idx])
    save_result(res, args.out, space=ls.space.name, label=args.label,
                hop_moments=hm.reset_index().to_dict("list"),
                label_moments=lm.reset_index().to_dict("list"))
    print(json.dumps({"out": str(args.out), **res.metrics}, indent=2))


def _load_model(path: str):
    from autobuild_lib.core.graphs import OFA_SCHEMA
    from autobuild_lib.core.spaces import get_space
    from autobuild_lib.core.training import load_result

    res, extra = load_result(path, OFA_SCHEMA)
    hm = pd.DataFrame(extra["hop_moments"]).set_index("hop")
    lm = pd.DataFrame(extra["label_moments"]).set_index(["unit", "layers"])
    return res, get_space(extra["space"]), hm, lm


def _score(args: argparse.Namespace) -> None:
    from autobuild_lib.core.scoring import score_modules

    res, space, hm, lm = _load_model(args.model)
    scores = score_modules(res, space, hm, lm, resolution=args.resolution, shift=not args.no_shift)
    scores.to_csv(args.out, index=False)
    best = scores.sort_values("score", ascending=False).groupby("unit").head(1)
    print(best.to_string(index=False))


def _construct(args: argparse.Namespace) -> None:
    from autobuild_lib.core.scoring import construct, top_k
    from autobuild_lib.core.spaces import get_space

    space = get_space(args.space)
    scores = pd.read_csv(args.scores)
    archs = construct(space, top_k(scores, args.k, maximize=not args.minimize), args.resolution)
    for a in archs:
        print(space.to_string(a))


def _search(args: argparse.Namespace) -> None:
    from autobuild_lib.core.graphs import ofa_graph
    from autobuild_lib.core.scoring import top_k
    from autobuild_lib.core.search import SCHEMES, evolutionary_search, make_scheme, union_candidates
    from autobuild_lib.core.spaces import get_space
    from autobuild_lib.core.training import predict

    space = get_space(args.space)
    objectives, models = [], {}
    for spec in args.objective:
        try:
            name, rest = spec.split("=", 1)
            path, direction = rest.rsplit(":", 1)
        except ValueError:
            raise SystemExit(f"--objective {spec!r}: expected NAME=MODEL.pt:max|min") from None
        if direction not in ("max", "min"):
            raise SystemExit(f"--objective {spec!r}: direction must be max or min")
        objectives.append((name, direction == "max"))
        models[name] = _load_model(path)[0]
    candidates = None
    if args.scheme == "autobuild":
        if not args.candidates:
            raise SystemExit("--scheme autobuild needs --candidates SCORES.csv [...]")
        candidates = union_candidates([top_k(pd.read_csv(p), args.k) for p in args.candidates])

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


def _bench(args: argparse.Namespace) -> None:
    from autobuild_lib.study.bench import run_bench

    out = run_bench(epochs=args.epochs, n_archs=args.n_archs)
    print(json.dumps(out, indent=2) if args.json else out)


def _data(args: argparse.Namespace) -> None:
    from autobuild_lib.benchmarks.datasets import data_summary

    out = data_summary(Path(args.data_dir) if args.data_dir else None)
    print(json.dumps(out, indent=2) if args.json else pd.DataFrame(out["tables"]).T.to_string())


def _generate(args: argparse.Namespace) -> None:
    from joblib import parallel_config

    from autobuild_lib.benchmarks.miniofa.generate import generate

    stages = args.stages.split(",") if args.stages else None
    kw = {} if stages is None else {"stages": stages}
    if args.design:
        kw["design"] = args.design
    with parallel_config(backend=args.backend):
        for space in args.space:
            rep = generate(space, n=args.n, n_jobs=args.n_jobs, chunk=args.chunk,
                           time_budget_s=args.time_budget_s, progress=not args.quiet, **kw)
            for stage, r in rep.items():
                print(json.dumps({k: v for k, v in r.items() if k != "machine"}))


def _generate_staged(args: argparse.Namespace) -> None:
    """``generate mini-sd`` / ``generate mini-panoptic``: run the benchmark's stages, print each report."""
    import importlib

    from joblib import parallel_config

    mod = importlib.import_module({"mini-sd": ".benchmarks.minisd.generate", "mini-panoptic": ".benchmarks.panoptic.generate"}[args.benchmark],
                                  __package__)
    stages = args.stages.split(",") if args.stages else mod.STAGES
    kw = {"allow_unreliable": args.allow_unreliable} if args.benchmark == "mini-panoptic" else {}
    with parallel_config(backend=args.backend):
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
        if args.list:
            sys.stdout.write("".join(f"{space}\t{k}\n" for k in keys))
            continue
        ev = study.evaluator("mini-ofa", cache=args.cache)
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
    s.set_defaults(func=_chapter05)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autobuild", description="AutoBuild study: the method and its data.")
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
    s.add_argument("--epochs", type=int, default=200)
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
    s.add_argument("--k", type=int, default=3)
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
    s.add_argument("--k", type=int, default=25)
    s.add_argument("--initial", type=int, default=50)
    s.add_argument("--iterations", type=int, default=4)
    s.add_argument("--per-iteration", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="CSV of every evaluated architecture")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_search)

    s = sub.add_parser("bench", help="time training and module scoring")
    s.add_argument("--json", action="store_true")
    s.add_argument("--epochs", type=int, default=200)
    s.add_argument("--n-archs", type=int, default=2700)
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
                                    "(default: all, in that order)")
    g.add_argument("--n", type=int, default=3000, help="architectures per space")
    g.add_argument("--design", help="supernet design (autobuild_lib.benchmarks.miniofa.generate.DESIGNS; default FINAL_DESIGN)")
    g.add_argument("--n-jobs", type=int, default=1, help="parallel work units (latency: keep 1)")
    g.add_argument("--backend", default="loky", help="joblib backend, e.g. loky, threading, dask, ray")
    g.add_argument("--chunk", type=int, default=50, help="units per shard")
    g.add_argument("--time-budget-s", type=float, help="stop supernet training after this many seconds")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_generate)
    g = gsub.add_parser("mini-sd", help="Mini-SD: FID classifier, base U-Net, FID labels of fine-tuned variants")
    g.add_argument("--stages", help="comma-separated subset of classifier,base,reliability,labels,constructions,hw_labels,hw_latency,hw_constructions "
                                    "(default: all, in that order)")
    g.add_argument("--n-jobs", type=int, default=1, help="variants fine-tuned in parallel (one core each)")
    g.add_argument("--backend", default="loky", help="joblib backend, e.g. loky, threading, dask, ray")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_generate_staged)
    g = gsub.add_parser("mini-panoptic", help="Mini-Panoptic: panoptic supernet, pseudo and fully fine-tuned PQ labels")
    g.add_argument("--stages", help="comma-separated subset of supernet,reliability,noise,pseudo,full,constructions "
                                    "(default: all, in that order)")
    g.add_argument("--n-jobs", type=int, default=1, help="architectures labelled in parallel (one core each)")
    g.add_argument("--backend", default="loky", help="joblib backend, e.g. loky, threading, dask, ray")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--allow-unreliable", action="store_true",
                   help="label even if the reliability check missed its bar (the data card will say so)")
    g.set_defaults(func=_generate_staged)

    _add_chapter05(sub)

    s = sub.add_parser("book", help="execute the notebooks and render the book")
    s.add_argument("--profile", choices=["smoke", "full"], help="default: _config.yml")
    s.add_argument("--only", nargs="*", help="notebook names to run")
    s.add_argument("--no-render", action="store_true", help="skip jupyter-book build")
    s.set_defaults(func=_book)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
