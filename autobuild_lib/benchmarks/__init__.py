"""Where labels come from: Mini-OFA, Mini-SD, Mini-Panoptic, the authors' released caches,
Fashion-MNIST, the evaluators, and the shared generation pipeline (:mod:`.pipeline`).

Imports :mod:`autobuild_lib.core`, never :mod:`autobuild_lib.study`.
"""
