import pandas as pd
import pytest

from autobuild_lib.study.claims import CLAIMS_ENV, load_claims, record_claims, verdict_category


def _table(verdicts):
    return pd.DataFrame({"claim": [f"c{i}" for i in range(len(verdicts))], "paper": "p", "this study": "s",
                         "verdict": verdicts})


def test_recorded_only_under_the_runner_and_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv(CLAIMS_ENV, raising=False)
    record_claims(_table(["consistent"]), "01_a")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(CLAIMS_ENV, str(tmp_path / "claims"))
    record_claims(_table(["consistent", "inconsistent (lower)", "undetermined"]), "01_a")
    record_claims(_table(["reproduced", "not reproduced (estimates)", "not checked"]), "05_b")
    got = load_claims()
    assert list(got["chapter"]) == ["01_a"] * 3 + ["05_b"] * 3
    assert list(got["category"]) == ["agrees", "disagrees", "open"] * 2
    assert not list((tmp_path / "claims").glob(".partial-*"))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        record_claims(pd.DataFrame({"claim": ["x"]}), "01_a")
    with pytest.raises(ValueError, match="notebook stem"):
        record_claims(_table(["consistent"]), "a/b")
    (tmp_path / "02_x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a claims table"):
        load_claims(tmp_path)
    assert load_claims(tmp_path / "empty").empty
    assert verdict_category("Consistent [smoke run: not evidence]") == "agrees"
