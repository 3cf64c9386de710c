"""Runs of the same questions compared question by question: what each run gained and lost against the first.

Two runs' exact scores differ by (gained − lost) / n. Whether that is more than chance shows in its standard
error over the paired questions, which is smaller than the two runs' own errors because most questions score
the same in both (McNemar's view of two classifiers on one test set).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kotae.adapters.rows import read_rows
from kotae.core.errors import InputError
from kotae.evals.schema import PREDICTIONS_FILE, PredictionRow

ALL = "all"
HAS_ANS = "HasAns"
"""The answerable questions alone, reported apart when a set mixes in NoAns questions."""


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """One run's exact against the first run's, over the questions both asked."""

    subset: str
    """`all` questions or `HasAns` (the answerable ones)."""
    n: int
    gained: int
    """Questions this run answers exactly and the first does not."""
    lost: int
    """Questions the first run answers exactly and this one does not."""

    @property
    def delta(self) -> float:
        return (self.gained - self.lost) / self.n

    @property
    def standard_error(self) -> float:
        """Of `delta`: the per-question differences (−1, 0, 1) have variance (gained + lost) / n − delta²."""
        return math.sqrt(max((self.gained + self.lost) / self.n - self.delta**2, 0.0) / self.n)


@dataclass(frozen=True, slots=True)
class ScoredQuestion:
    answerable: bool
    exact: bool


def load_scores(run: Path) -> dict[str, ScoredQuestion]:
    """Each question's exact in a run directory (or beside its `metrics.json`), keyed by qid."""
    file = (run if run.is_dir() else run.parent) / PREDICTIONS_FILE
    if not file.is_file():
        raise InputError(file, None, "no predictions to compare question by question")
    return {
        row.qid: ScoredQuestion(answerable=row.answerable, exact=row.exact)
        for _, row in read_rows(file, PredictionRow)
    }


def paired_differences(
    first: dict[str, ScoredQuestion], other: dict[str, ScoredQuestion]
) -> list[PairedDifference]:
    """`other` against `first` over all questions and, when some are NoAns, over the answerable ones.

    Raises ValueError when the runs did not ask the same questions."""
    if first.keys() != other.keys():
        raise ValueError(
            f"the runs asked different questions ({len(first.keys() ^ other.keys())} in one only)"
        )
    subsets = [(ALL, list(first))]
    answerable = [qid for qid, score in first.items() if score.answerable]
    if len(answerable) < len(first):
        subsets.append((HAS_ANS, answerable))
    return [
        PairedDifference(
            subset=name,
            n=len(qids),
            gained=sum(other[qid].exact and not first[qid].exact for qid in qids),
            lost=sum(first[qid].exact and not other[qid].exact for qid in qids),
        )
        for name, qids in subsets
        if qids
    ]


COLUMNS = ("run", "questions", "n", "exact Δ", "gained", "lost", "SE")
TEXT_COLUMNS = 2
"""`run` and `questions` are text; the rest are figures."""


def cells(name: str, difference: PairedDifference) -> list[str]:
    """One row as text, in `COLUMNS` order; Δ and SE in points (hundredths of exact)."""
    return [
        name,
        difference.subset,
        str(difference.n),
        f"{100 * difference.delta:+.1f}",
        str(difference.gained),
        str(difference.lost),
        f"{100 * difference.standard_error:.1f}",
    ]


def paired_rows(runs: Sequence[Path], names: Sequence[str]) -> list[list[str]]:
    """Every run after the first against the first, as table rows."""
    first = load_scores(runs[0])
    rows = []
    for run, name in zip(runs[1:], names[1:], strict=True):
        try:
            differences = paired_differences(first, load_scores(run))
        except ValueError as error:
            raise InputError(run, None, f"cannot be paired with {runs[0]}: {error}") from error
        rows.extend(cells(name, difference) for difference in differences)
    return rows
