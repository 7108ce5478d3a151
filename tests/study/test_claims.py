import numpy as np
import pandas as pd
import pytest

from autobuild_lib.study import claims as C
from autobuild_lib.study.claims import CLAIMS_ENV, Outcome, Verdict, load_claims, record_claims


def _table(verdicts):
    return pd.DataFrame({"claim": [f"c{i}" for i in range(len(verdicts))], "paper": "p", "this study": "s",
                         "verdict": verdicts})


def _row(claim, verdict):
    return {"claim": claim, "paper": "1", "this study": "2", "verdict": verdict}


def test_verdicts_from_numbers():
    assert str(C.verdict(True)) == "consistent" and str(C.verdict(np.bool_(False))) == "inconsistent"
    assert str(C.verdict(None)) == "undetermined" and str(C.verdict(float("nan"))) == "undetermined"
    assert C.verdict_close(2.19e19, 2.18e19, 0.01).outcome is Outcome.AGREES
    assert C.verdict_close(2.5e19, 2.18e19, 0.01).outcome is Outcome.DISAGREES
    assert C.verdict_close(float("nan"), 1.0, 0.1).outcome is Outcome.OPEN
    assert str(C.verdict_number(0.80, 0.79, 0.05)) == "consistent"
    assert str(C.verdict_number(0.60, 0.79, 0.05)) == "inconsistent (lower)"
    assert str(C.verdict_number(1.1, 1.0, 0.05, relative=True)) == "inconsistent (higher)"
    assert str(C.verdict_number(None, 0.79, 0.05)) == "undetermined"
    assert str(C.not_comparable("subset")) == "not comparable (subset)"
    assert str(C.undetermined("no labels")) == "undetermined (no labels)"
    with pytest.raises(ValueError, match="rel_tol"):
        C.verdict_close(1.0, 1.0, -1)
    with pytest.raises(ValueError, match="tol"):
        C.verdict_number(1.0, 1.0, -1)
    with pytest.raises(ValueError, match="reason"):
        C.not_comparable("")
    with pytest.raises(ValueError, match="verdict word"):
        C.note("consistent")


@pytest.mark.parametrize("v", [C.verdict(True), C.verdict(False, "higher"), C.verdict(True, "accuracy: estimates"),
                               C.undetermined(), C.undetermined("no labels"), C.not_comparable("setting"),
                               C.note("same setting"), C.note("study check: not met"),
                               Verdict(Outcome.DISAGREES, "smaller: 3 of 5 (distinct)", smoke=True),
                               Verdict(Outcome.OPEN, "not comparable (K=5)", smoke=True)])
def test_a_rendered_verdict_reads_back(v):
    assert Verdict.parse(str(v)) == v


def test_claims_table_marks_a_smoke_run_and_names_the_disagreements():
    rows = [_row("a", C.verdict(True)), _row("b", C.verdict(False)), _row("c", C.undetermined()),
            _row("d", C.not_comparable("subset")), _row("e", C.note("same setting"))]
    full = C.claims_table(rows)
    assert full["verdict"].tolist() == ["consistent", "inconsistent", "undetermined", "not comparable (subset)",
                                        "same setting"]
    smoke = C.claims_table(rows, smoke=True)
    assert smoke["verdict"].str.endswith("[smoke run: not evidence]").all()
    for table in (full, smoke):
        assert C.disagreements(table)["claim"].tolist() == ["b"]
        assert C.disagreements(table, include_open=True)["claim"].tolist() == ["b", "c", "d", "e"]
    with pytest.raises(ValueError, match="lacks"):
        C.claims_table([{"claim": "x", "paper": "y"}])
    with pytest.raises(ValueError, match="claims.Verdict"):
        C.claims_table([_row("x", "consistent")])
    with pytest.raises(ValueError, match="verdict"):
        C.disagreements(pd.DataFrame({"claim": ["a"]}))


def test_recorded_only_under_the_runner_and_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv(CLAIMS_ENV, raising=False)
    record_claims(_table(["consistent"]), "01_a")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(CLAIMS_ENV, str(tmp_path / "claims"))
    record_claims(_table(["consistent", "inconsistent (lower)", "undetermined"]), "01_a")
    record_claims(_table(["consistent (estimates) [smoke run: not evidence]", "inconsistent (estimates)",
                          "not comparable (K=5)"]), "05_b")
    got = load_claims()
    assert list(got["chapter"]) == ["01_a"] * 3 + ["05_b"] * 3
    assert list(got["category"]) == ["agrees", "disagrees", "open"] * 2
    assert not list((tmp_path / "claims").glob(".partial-*"))


def test_show_claims_records_and_names_disagreements(tmp_path, monkeypatch):
    monkeypatch.setenv(CLAIMS_ENV, str(tmp_path))
    frame = C.claims_table([_row("a", C.verdict(True)), _row("b", C.verdict(False, "higher")),
                            _row("c", C.undetermined())])
    shown = {}
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.setdefault(type(obj).__name__, obj))
    C.show_claims(frame, "99_test")
    assert load_claims(tmp_path)["claim"].tolist() == ["a", "b", "c"]
    assert shown["DataFrame"]["claim"].tolist() == ["a", "b", "c"]
    assert shown["Markdown"].data == "**Where this study disagrees with the paper:** b."


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        record_claims(pd.DataFrame({"claim": ["x"]}), "01_a")
    with pytest.raises(ValueError, match="notebook stem"):
        record_claims(_table(["consistent"]), "a/b")
    (tmp_path / "02_x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a claims table"):
        load_claims(tmp_path)
    assert load_claims(tmp_path / "empty").empty
