"""The paper's method and nothing else: spaces, graph encodings, the predictor (FE-MLP + GATv2),
the Eq. 4 loss (:mod:`.losses`), training, module scoring with Eq. 5 (:mod:`.scoring`), construction,
search, Pareto fronts, the latency GNN, label equations and interpretation.

Imports nothing from :mod:`autobuild_lib.benchmarks` or :mod:`autobuild_lib.study`.
"""
