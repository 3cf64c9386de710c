"""Fusing a dense and a lexical ranking into one: pure functions over (id, score) lists, best first.

An id is anything hashable: the retriever fuses the index's integer keys, so that only the passages that
survive fusion are read from the passage store."""

from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60
"""Reciprocal rank fusion's damping constant (Cormack et al., 2009): ranks beyond the first few count
little, so one list's top result cannot be buried by the other's."""

Id = TypeVar("Id", bound=Hashable)
Ranking = Sequence[tuple[Id, float]]


def reciprocal_rank_fusion(rankings: Sequence[Ranking[Id]], k: int = RRF_K) -> list[tuple[Id, float]]:
    """Score = Σ 1/(k + rank) over the rankings an id appears in (rank from 1). Scores are ignored, so
    cosines and BM25 scores need no common scale. Ties keep first-seen order."""
    fused: dict[Id, float] = {}
    for ranking in rankings:
        for rank, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return _best_first(fused)


def weighted_fusion(dense: Ranking[Id], lexical: Ranking[Id], dense_weight: float) -> list[tuple[Id, float]]:
    """Score = w·dense + (1−w)·lexical after min-max normalising each list to [0, 1]; an id missing from
    a list gets 0 from it. Ties keep first-seen order (dense first)."""
    fused: dict[Id, float] = {}
    for ranking, weight in ((dense, dense_weight), (lexical, 1.0 - dense_weight)):
        for (item, _score), normalised in zip(ranking, min_max([score for _, score in ranking]), strict=True):
            fused[item] = fused.get(item, 0.0) + weight * normalised
    return _best_first(fused)


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores mapped to [0, 1]; when all are equal each gets 1 (each is as good as the best)."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(score - low) / (high - low) for score in scores]


def _best_first(fused: dict[Id, float]) -> list[tuple[Id, float]]:
    # sorted() is stable and dicts keep insertion order, so equal scores stay in first-seen order.
    return sorted(fused.items(), key=lambda item: -item[1])
