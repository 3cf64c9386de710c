"""Question → retrieved passages → prompt → answer: the one path that both the server and evals run."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kotae.core.config import RetrievalMode, Settings
from kotae.rag.engine import Completion, Sampling
from kotae.rag.engine_protocol import Engine
from kotae.rag.passage import Hit, Passage
from kotae.rag.prompt import build_prompt, clean_answer, context_line, fit_contexts
from kotae.rag.retrieval_batcher import RetrievalBatcher
from kotae.rag.retriever import Retriever

RETRIEVAL_BATCH = 64
"""Most questions one shared retrieval batch embeds (concurrent requests beyond it wait for the next)."""


@dataclass(frozen=True, slots=True)
class Timings:
    retrieve_ms: float
    generate_ms: float


@dataclass(frozen=True, slots=True)
class Answer:
    question: str
    text: str
    sources: list[Hit]
    completion: Completion
    timings: Timings


@dataclass(frozen=True, slots=True)
class PreparedQuestion:
    """A question with its passages and the exact prompt the engine will see."""

    question: str
    sources: list[Hit]
    prompt: str
    retrieve_ms: float


class Pipeline:
    def __init__(self, retriever: Retriever, engine: Engine, settings: Settings) -> None:
        self.retriever = retriever
        self.engine = engine
        self.settings = settings
        self._batcher = RetrievalBatcher(self.prepare_many, RETRIEVAL_BATCH)

    def prompt_for(
        self, question: str, passages: Sequence[Passage], count_tokens: Callable[[str], int] | None = None
    ) -> str:
        budget = self.settings.context_token_budget
        return make_prompt(question, passages, count_tokens or self.engine.count_tokens, budget)

    def prepare(
        self, question: str, top_k: int | None = None, mode: RetrievalMode | None = None
    ) -> PreparedQuestion:
        return self.prepare_many([question], top_k, mode)[0]

    async def prepare_batched(
        self, question: str, top_k: int | None = None, mode: RetrievalMode | None = None
    ) -> PreparedQuestion:
        """`prepare` for a request among concurrent ones: retrieved in a batch with the questions that
        arrived while the previous batch ran; `retrieve_ms` includes that wait."""
        return await self._batcher.prepare(question, top_k, mode)

    def prepare_many(
        self,
        questions: Sequence[str],
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        given: Sequence[Sequence[Passage]] | None = None,
    ) -> list[PreparedQuestion]:
        """Batched retrieval (one embedding batch for all questions), or the given passages as they are."""
        started = time.perf_counter()
        if given is None:
            hit_lists = self.retriever.retrieve_many(list(questions), top_k or self.settings.top_k, mode)
        else:
            hit_lists = [[Hit(p, 1.0) for p in passages] for passages in given]
        retrieve_ms = (time.perf_counter() - started) * 1000 / max(len(questions), 1)
        return self.prepared(questions, hit_lists, retrieve_ms)

    def prepared(
        self, questions: Sequence[str], hit_lists: Sequence[list[Hit]], retrieve_ms: float
    ) -> list[PreparedQuestion]:
        """The prompts of questions whose passages are already retrieved."""
        # Every context line counted in one batch, not one tokenizer call per line under the GIL.
        count = self.engine.count_tokens.knowing(
            [context_line(hit.passage) for hits in hit_lists for hit in hits]
        )
        return [
            PreparedQuestion(q, hits, self.prompt_for(q, [h.passage for h in hits], count), retrieve_ms)
            for q, hits in zip(questions, hit_lists, strict=True)
        ]

    async def answer(
        self,
        question: str,
        sampling: Sampling,
        adapter: str | None = None,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
    ) -> Answer:
        prepared = await self.prepare_batched(question, top_k, mode)
        started = time.perf_counter()
        completion = await self.engine.complete(prepared.prompt, sampling, adapter)
        return _answer(prepared, completion, (time.perf_counter() - started) * 1000)

    async def answer_prepared(
        self,
        prepared: Sequence[PreparedQuestion],
        sampling: Sampling,
        adapter: str | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> list[Answer]:
        """All prompts at once into vLLM's batch (evals); generate_ms is the batch's wall time."""
        started = time.perf_counter()
        completions = await self.engine.complete_many(
            [p.prompt for p in prepared], sampling, adapter, on_done
        )
        batch_ms = (time.perf_counter() - started) * 1000
        return [_answer(p, c, batch_ms) for p, c in zip(prepared, completions, strict=True)]


def make_prompt(
    question: str, passages: Sequence[Passage], count_tokens: Callable[[str], int], budget: int
) -> str:
    """The serving prompt; training builds its examples with this same function."""
    return build_prompt(question, fit_contexts(passages, count_tokens, budget))


def _answer(prepared: PreparedQuestion, completion: Completion, generate_ms: float) -> Answer:
    return Answer(
        question=prepared.question,
        text=clean_answer(completion.text),
        sources=prepared.sources,
        completion=completion,
        timings=Timings(prepared.retrieve_ms, generate_ms),
    )
