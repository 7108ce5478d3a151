import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from fixtures_released import write_fixture_caches

from autobuild_lib.cli import main
from autobuild_lib.core.spaces import mbv3


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "autobuild_lib", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ("spaces", "train", "score", "construct", "search", "bench", "data", "book", "generate", "evaluate"):
        assert cmd in out


def test_spaces_json(capsys):
    assert main(["spaces", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mbv3"]["modules_per_unit"] == [7371] * 5 and out["mbv3"]["size_sci"] == "2.18e+19"
    assert out["pn"]["modules_per_unit"] == [7371] * 4 + [66339] and out["pn"]["size_sci"] == "1.96e+20"
    assert 7e5 < out["sd"]["size"] < 9e5 and 9e4 < out["sd-hw"]["size"] < 1.2e5


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    sp, rng = mbv3(), np.random.default_rng(0)
    archs = [sp.sample(rng) for _ in range(150)]
    pd.DataFrame({"arch": [sp.to_string(a) for a in archs],
                  "acc": [70 + a.n_layers / 4 for a in archs],
                  "latency_cpu": [a.n_layers * 1.5 for a in archs]}).to_csv(d / "t.csv", index=False)
    return d


def test_train_score_construct_search(table, capsys):
    d = table
    for label, name in (("acc", "acc"), ("latency_cpu", "lat")):
        assert main(["train", "--space", "mbv3", "--table", str(d / "t.csv"), "--label", label,
                     "--epochs", "2", "--out", str(d / f"{name}.pt"), "--quiet"]) == 0
    assert main(["score", "--model", str(d / "acc.pt"), "--out", str(d / "s.csv")]) == 0
    assert len(pd.read_csv(d / "s.csv")) == 36855
    capsys.readouterr()
    assert main(["construct", "--space", "mbv3", "--scores", str(d / "s.csv"), "--k", "2"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 32 and all(mbv3().from_string(x) for x in lines)
    assert main(["search", "--space", "mbv3", "--scheme", "autobuild", "--candidates", str(d / "s.csv"),
                 "--k", "3", "--objective", f"acc={d / 'acc.pt'}:max",
                 "--objective", f"lat={d / 'lat.pt'}:min", "--initial", "10", "--iterations", "1",
                 "--per-iteration", "5", "--out", str(d / "h.csv"), "--quiet"]) == 0
    assert len(pd.read_csv(d / "h.csv")) == 15


def test_bad_inputs_exit_2(table, capsys):
    d = table
    assert main(["train", "--space", "mbv3", "--table", str(d / "t.csv"), "--label", "acc/lat",
                 "--epochs", "1", "--out", str(d / "x.pt")]) == 2
    assert "latency_cpu" in capsys.readouterr().err  # lists the available metrics
    assert main(["train", "--space", "mbv3", "--table", str(d / "none.csv"), "--label", "acc",
                 "--out", str(d / "x.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    (d / "bad.csv").write_text("arch,acc\n224|k3e4,acc\n")
    assert main(["train", "--space", "mbv3", "--table", str(d / "bad.csv"), "--label", "acc",
                 "--out", str(d / "x.pt")]) == 2
    assert "row 0" in capsys.readouterr().err


def test_data_summary_lists_released(tmp_path, capsys):
    write_fixture_caches(tmp_path, n=20)
    assert main(["data", "summary", "--json", "--data-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["released"]["ofa_mbv3_custom_cache.pkl"]["rows"] == 20
    assert "acc" in out["released"]["ofa_pn_custom_cache.pkl"]["labels"]


def test_environment_yml_matches_requirements():
    from autobuild_lib.paths import REPO_ROOT

    reqs = {line.strip() for line in (REPO_ROOT / "requirements" / "base.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    env = (REPO_ROOT / "environment.yml").read_text()
    missing = [r for r in reqs | {"torch==2.14.1", "torchvision==0.29.1"} if f"- {r}" not in env]
    assert not missing, f"environment.yml lacks {missing}"
