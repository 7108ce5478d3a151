"""``autobuild bench``: the fast path, the default path and the frozen baseline timed in one run (issue 19)."""
from autobuild_lib.study.bench import run_bench


def test_bench_reports_the_three_paths_and_their_ratios():
    out = run_bench(epochs=2, n_archs=60)
    m = out["mbv3"]
    assert out["torch_threads_training"] == 1 and out["cpu_model"]
    assert m["graphs"] == 60 and m["epochs"] == 2 and m["modules"] == 36855
    assert m["s_per_epoch"] > 0 and m["baseline_s_per_epoch"] > 0 and m["default_path_train_seconds"] >= 0
    assert out["speedup_ratio"] == m["speedup_ratio"] > 0
    assert m["default_path_speedup_ratio"] > 0
    assert out["pn"]["modules"] == 95823
