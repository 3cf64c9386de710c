"""Negative SFT examples: prompts whose passages lack the answer, with 「資料には答えが見つかりません。」
(`kotae.rag.abstention.NO_ANSWER`) as the completion, so that an adapter learns to abstain.

A seeded random share of the SFT questions is asked again without its gold article
(`kotae.rag.unanswerable`): the `contexts` passages retrieved then, in the serving prompt, are what
the model reads when a collection does not hold the answer.
"""

import random
from collections.abc import Callable, Sequence

from rich.progress import track

from kotae.adapters.rows import ExampleRow
from kotae.adapters.sft_examples import BuiltExamples, completion_for
from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import QAItem
from kotae.rag.abstention import NO_ANSWER
from kotae.rag.pipeline import make_prompt
from kotae.rag.prompt import Prompter
from kotae.rag.retriever import Retriever
from kotae.rag.unanswerable import NOANS_SUFFIX, search_without_gold

RETRIEVAL_BATCH = 256
"""Questions per retrieval call: one embedding batch each, with a progress update between."""


def negative_examples(
    items: Sequence[QAItem],
    retriever: Retriever,
    count_tokens: Callable[[str], int],
    prompter: Prompter,
    contexts: int,
    budget: int,
    share: float,
    seed: int,
) -> list[ExampleRow]:
    """Negatives for a seeded random `share` (0–1) of the answerable `items` that have gold passages, in
    `prompter`'s format."""
    if not 0 <= share <= 1:
        raise KotaeError(f"the share of negatives must be between 0 and 1, not {share}")
    eligible = [item for item in items if item.answerable and item.gold_passage_ids]
    chosen = random.Random(seed).sample(eligible, round(share * len(eligible)))
    examples = []
    batches = range(0, len(chosen), RETRIEVAL_BATCH)
    for start in track(batches, description="retrieving negatives", transient=True):
        batch = chosen[start : start + RETRIEVAL_BATCH]
        for item, found in zip(batch, search_without_gold(retriever, batch, contexts), strict=True):
            passages = [hit.passage for hit in found.hits]
            examples.append(
                ExampleRow(
                    prompt=make_prompt(item.question, passages, count_tokens, budget, prompter),
                    completion=completion_for(NO_ANSWER),
                    question=item.question,
                    answers=[NO_ANSWER],
                    qid=item.qid + NOANS_SUFFIX,
                    passage_ids=[passage.id for passage in passages],
                )
            )
    return examples


def with_negatives(built: BuiltExamples, negatives: list[ExampleRow], share: float) -> BuiltExamples:
    """The examples with the negatives after them (training shuffles them together), made for `share` of
    the questions."""
    rows = built.rows + negatives
    return BuiltExamples(rows, built.info.model_copy(update={"examples": len(rows), "negatives": share}))
