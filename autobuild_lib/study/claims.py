"""The study's claims model: a verdict per paper claim, the chapters' "paper vs this study" tables,
and the book's verdict page.

Every chapter checks the paper's claims against its own numbers and ends with a table (columns
``claim``, ``paper``, ``this study``, ``verdict``).  A verdict is a :class:`Verdict`: an
:class:`Outcome` (the measured number *agrees* with the paper, *disagrees*, or the claim stays
*open*) and a reason.  It is written in one vocabulary:

* ``consistent`` / ``consistent (reason)`` -- agrees;
* ``inconsistent`` / ``inconsistent (higher)`` -- disagrees;
* ``undetermined`` / ``undetermined (reason)`` -- open: the number could not be measured here;
* ``not comparable (reason)`` -- open: this study's setting or data differ from the paper's;
* a note such as ``same setting`` or ``study check: met`` -- open: a row that states a setting or a
  check of the study's own, not a claim of the paper.

A smoke run's table appends `` [smoke run: not evidence]`` to every verdict.
:func:`claims_table` builds a chapter's table, :func:`disagreements` picks its rows that disagree
(the one definition of "disagrees"), :func:`show_claims` records, displays and summarises it.

When the study's runner executes the chapters it sets ``AUTOBUILD_CLAIMS_DIR`` (next to the executed
notebooks), so :func:`record_claims` also writes each table there as ``<chapter>.csv``; the verdict
chapter (``90_verdicts``), run last, reads them back with :func:`load_claims`.  Outside the runner
nothing is written.
"""
from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from autobuild_lib.benchmarks.pipeline.atomic import atomic_write

__all__ = ["CLAIMS_ENV", "COLUMNS", "CONSISTENT", "INCONSISTENT", "UNDETERMINED", "NOT_COMPARABLE", "SMOKE",
           "Outcome", "Verdict", "verdict", "verdict_close", "verdict_number", "undetermined", "not_comparable",
           "note", "claims_table", "outcomes", "disagreements", "record_claims", "show_claims", "load_claims"]

CLAIMS_ENV = "AUTOBUILD_CLAIMS_DIR"
COLUMNS = ["claim", "paper", "this study", "verdict"]

CONSISTENT = "consistent"
INCONSISTENT = "inconsistent"
UNDETERMINED = "undetermined"
NOT_COMPARABLE = "not comparable"
SMOKE = " [smoke run: not evidence]"


class Outcome(enum.Enum):
    """What a verdict says of a paper claim; the value is the verdict page's category."""

    AGREES = "agrees"
    DISAGREES = "disagrees"
    OPEN = "open"


_WORDS = {Outcome.AGREES: CONSISTENT, Outcome.DISAGREES: INCONSISTENT}


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict.  ``reason`` qualifies an agreeing or disagreeing verdict (``higher``,
    ``accuracy: predictor estimates``); for an open one it is the whole text (``not comparable (...)``),
    empty meaning ``undetermined``.  ``smoke`` marks it as not evidence (a smoke run's)."""

    outcome: Outcome
    reason: str = ""
    smoke: bool = False

    def __str__(self) -> str:
        if self.outcome is Outcome.OPEN:
            text = self.reason or UNDETERMINED
        else:
            word = _WORDS[self.outcome]
            text = f"{word} ({self.reason})" if self.reason else word
        return text + (SMOKE if self.smoke else "")

    @classmethod
    def parse(cls, text: str) -> Verdict:
        """The verdict a table's string was written from (``str`` reversed)."""
        text = str(text).strip()
        smoke = text.endswith(SMOKE.strip())
        body = text[: -len(SMOKE.strip())].rstrip() if smoke else text
        for outcome, word in _WORDS.items():
            if body == word:
                return cls(outcome, "", smoke)
            if body.startswith(f"{word} (") and body.endswith(")"):
                return cls(outcome, body[len(word) + 2: -1], smoke)
        return cls(Outcome.OPEN, "" if body == UNDETERMINED else body, smoke)


def verdict(ok: bool | None | float, reason: str = "") -> Verdict:
    """Agrees for a true check, disagrees for a false one; undetermined for ``None`` or NaN."""
    if ok is None or (isinstance(ok, float) and math.isnan(ok)):
        return undetermined()
    return Verdict(Outcome.AGREES if bool(ok) else Outcome.DISAGREES, reason)


def verdict_close(measured: float, paper: float, rel_tol: float) -> Verdict:
    """Agrees when ``measured`` is within ``rel_tol`` (relative) of ``paper``."""
    if rel_tol < 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
    if not (math.isfinite(measured) and math.isfinite(paper)):
        return undetermined()
    return verdict(abs(measured - paper) <= rel_tol * abs(paper))


def verdict_number(measured: float | None, paper: float, tol: float, relative: bool = False) -> Verdict:
    """Agrees when ``|measured - paper| <= tol`` (``relative``: ``tol * |paper|``); a disagreeing
    verdict says ``higher`` or ``lower``; undetermined for None or NaN."""
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if measured is None or not math.isfinite(measured):
        return undetermined()
    if abs(measured - paper) <= (tol * abs(paper) if relative else tol):
        return verdict(True)
    return verdict(False, "higher" if measured > paper else "lower")


def undetermined(why: str = "") -> Verdict:
    """Open: the number the claim needs could not be measured here (``why`` says why)."""
    return Verdict(Outcome.OPEN, f"{UNDETERMINED} ({why})" if why else "")


def not_comparable(why: str) -> Verdict:
    """Open: this study's setting or data differ from the paper's, so its number cannot judge the claim."""
    if not why:
        raise ValueError("not_comparable needs the reason the claim cannot be compared")
    return Verdict(Outcome.OPEN, f"{NOT_COMPARABLE} ({why})")


def note(text: str) -> Verdict:
    """Open: a row that states a setting or a check of the study's own (``same setting``,
    ``study check: met``), not a claim of the paper."""
    if not text or Verdict.parse(text).outcome is not Outcome.OPEN or text in (UNDETERMINED, NOT_COMPARABLE):
        raise ValueError(f"a note must not read as a verdict word, got {text!r}")
    return Verdict(Outcome.OPEN, text)


def claims_table(rows: Sequence[Mapping[str, object]], smoke: bool = False) -> pd.DataFrame:
    """A chapter's "paper vs this study" table from rows with the four :data:`COLUMNS`, each
    ``verdict`` a :class:`Verdict`; ``smoke`` (a smoke run's measurements) marks every verdict
    as not evidence."""
    out = []
    for r in rows:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise ValueError(f"claim row {r!r} lacks {missing}")
        v = r["verdict"]
        if not isinstance(v, Verdict):
            raise ValueError(f"claim {r['claim']!r}: the verdict must be a claims.Verdict, got {v!r}")
        out.append({**{c: r[c] for c in COLUMNS}, "verdict": str(replace(v, smoke=smoke))})
    return pd.DataFrame(out, columns=COLUMNS)


def outcomes(claims: pd.DataFrame) -> pd.Series:
    """The :class:`Outcome` of every row of a claims table."""
    if "verdict" not in claims.columns:
        raise ValueError("a claims table needs a 'verdict' column (see claims_table)")
    return claims["verdict"].map(lambda v: Verdict.parse(v).outcome)


def disagreements(claims: pd.DataFrame, include_open: bool = False) -> pd.DataFrame:
    """The rows of a claims table where this study disagrees with the paper (outcome
    :attr:`Outcome.DISAGREES`); ``include_open`` adds the open rows, for a chapter that explains
    every row it could not confirm."""
    out = outcomes(claims)
    keep = out != Outcome.AGREES if include_open else out == Outcome.DISAGREES
    return claims[keep]


def record_claims(frame: pd.DataFrame, chapter: str) -> pd.DataFrame:
    """Write ``frame`` to ``$AUTOBUILD_CLAIMS_DIR/<chapter>.csv`` (atomically) when the runner set
    the variable; returns ``frame`` unchanged."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"a claims table needs the columns {COLUMNS}; missing {missing}")
    if not chapter or "/" in chapter:
        raise ValueError(f"chapter must be a notebook stem such as '05_mbv3_pareto', got {chapter!r}")
    directory = os.environ.get(CLAIMS_ENV)
    if directory:
        path = Path(directory) / f"{chapter}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            frame[COLUMNS].astype(str).to_csv(tmp, index=False)
    return frame


def show_claims(frame: pd.DataFrame, chapter: str, wide: bool = False) -> pd.DataFrame:
    """Record a chapter's claims table for the verdict page (:func:`record_claims`), display it
    (``wide``: cells unabridged) and name in one sentence the claims this run disagrees with."""
    from IPython.display import Markdown, display

    record_claims(frame, chapter)
    with pd.option_context("display.max_colwidth", None if wide else pd.get_option("display.max_colwidth")):
        display(frame)
    disagree = disagreements(frame)["claim"].tolist()
    display(Markdown(("**Where this study disagrees with the paper:** " + "; ".join(disagree) + ".") if disagree
                     else "This run does not contradict any of the claims above."))
    return frame


def load_claims(directory: str | Path | None = None) -> pd.DataFrame:
    """Every recorded table, with ``chapter`` and ``category`` columns (empty frame when none)."""
    directory = Path(directory or os.environ.get(CLAIMS_ENV) or ".")
    frames = []
    for path in sorted(directory.glob("[0-9][0-9]_*.csv")):
        f = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in f.columns]
        if missing:
            raise ValueError(f"{path}: not a claims table (missing {missing}); delete it and re-run its chapter")
        frames.append(f.assign(chapter=path.stem))
    if not frames:
        return pd.DataFrame(columns=["chapter", *COLUMNS, "category"])
    out = pd.concat(frames, ignore_index=True)[["chapter", *COLUMNS]]
    return out.assign(category=outcomes(out).map(lambda o: o.value))
