"""What the book needs: the runner and settings, the claims model, the paper's numbers and one
module per chapter. Imports :mod:`autobuild_lib.core` and :mod:`autobuild_lib.benchmarks`."""
