"""Unanswerable questions made from answerable ones: each is asked of its index as if the article of its
gold passages were not there (the passages sharing their title), so the passages retrieved lack its
answer. Evals (NoAns questions) and SFT (negative examples) both build them here."""

from collections.abc import Sequence
from typing import Any

from kotae.core.config import RetrievalMode
from kotae.core.qa_jsonl import QAItem
from kotae.rag.retriever import Retrieval, Retriever

NOANS_SUFFIX = ":noans"
"""Appended to a question's id for its unanswerable twin, so that both fit in one QA file."""


def search_without_gold(
    retriever: Retriever, items: Sequence[QAItem], top_k: int, mode: RetrievalMode | None = None
) -> list[Retrieval]:
    """Each question's `top_k` passages and best cosine, its gold passages' article excluded."""
    excluded = [retriever.titles_of(item.gold_passage_ids) for item in items]
    questions = [item.question for item in items]
    return retriever.search_many(questions, top_k, mode, excluded_titles=excluded)


def noans_row(item: QAItem, retrieval: Retrieval) -> dict[str, Any]:
    """The QA JSONL row of `item`'s unanswerable twin, with the passages retrieved without its article."""
    return {
        "qid": item.qid + NOANS_SUFFIX,
        "question": item.question,
        "answers": [],
        "answerable": False,
        "gold_passage_ids": list(item.gold_passage_ids),
        "contexts": [
            {"id": h.passage.id, "title": h.passage.title, "text": h.passage.text} for h in retrieval.hits
        ],
    }
