"""A reranker's training pairs: each question with its gold passage (label 1) and with hard negatives
(label 0), the passages kotae's own hybrid retrieval ranks high for it that do not answer it: what a served
reranker must learn to put below the gold one."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import track

from kotae.adapters.sft_examples import RETRIEVAL_BATCH, gold_passage
from kotae.core.errors import InputError
from kotae.core.passage import Hit, Passage
from kotae.core.qa_jsonl import QAItem, read_qa_jsonl
from kotae.indexer.chunking import indexed_text
from kotae.indexer.index import Index
from kotae.rag.metrics import golds_found
from kotae.rag.retriever import FUSION_DEPTH, Retriever


@dataclass(frozen=True, slots=True)
class RerankPair:
    question: str
    passage: str
    """The passage as the embedder and the served reranker read it (`indexed_text`: title, newline, text)."""
    label: float
    """1 for the gold passage, 0 for a hard negative."""


def questions_with_golds(data: Path, index: Index) -> list[tuple[QAItem, Passage]]:
    """Each question of `data` with its gold passage as the index holds it (a question whose answer
    straddles two chunks is dropped); `InputError` naming the line of a question without one."""
    questions = list(read_qa_jsonl(data))
    if not questions:
        raise InputError(data, None, "no questions")
    golds = [gold_passage(index, item, data, line) for line, item in questions]
    return [(item, gold) for (_, item), gold in zip(questions, golds, strict=True) if gold is not None]


def rerank_pairs(
    questions: Sequence[tuple[QAItem, Passage]], retriever: Retriever, negatives: int
) -> list[RerankPair]:
    """Each question's gold pair and its negatives, from the retriever's hybrid top `FUSION_DEPTH`."""
    pairs: list[RerankPair] = []
    batches = range(0, len(questions), RETRIEVAL_BATCH)
    for start in track(batches, description="retrieving negatives", transient=True):
        batch = questions[start : start + RETRIEVAL_BATCH]
        hit_lists = retriever.retrieve_many([item.question for item, _ in batch], FUSION_DEPTH, mode="hybrid")
        for (item, gold), hits in zip(batch, hit_lists, strict=True):
            pairs.append(RerankPair(item.question, indexed_text(gold), 1.0))
            pairs.extend(
                RerankPair(item.question, indexed_text(passage), 0.0)
                for passage in hard_negatives(item, hits, negatives)
            )
    return pairs


def hard_negatives(item: QAItem, hits: Sequence[Hit], count: int) -> list[Passage]:
    """The best-ranked `count` passages of `hits` that are neither a gold passage of `item` nor a chunk of
    one (`golds_found`) and whose title or text holds none of its answers: a passage that holds the answer
    may well answer the question, and teaching that it does not would blur the gold signal."""
    golds = set(item.gold_passage_ids)
    chosen = [
        hit.passage
        for hit in hits
        if not golds_found([hit.passage.id], golds)
        and not any(answer in indexed_text(hit.passage) for answer in item.answers)
    ]
    return chosen[:count]
