"""Question → retrieved passages → prompt → answer: the one path that both the server and evals run."""

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kotae.core.config import RetrievalMode, Settings
from kotae.core.passage import Hit, Passage
from kotae.rag.abstention import NO_ANSWER, gate_completion, is_no_answer, passes_gate
from kotae.rag.collections import Collections
from kotae.rag.conversation import Conversation
from kotae.rag.engine_protocol import Completion, Engine, OnDone, Sampling
from kotae.rag.prompt import (
    DEFAULT_PROMPT_FORMAT,
    FittedPrompt,
    Prompter,
    PromptFormat,
    clean_answer,
    context_line,
    fit_conversation,
    fit_prompt,
)
from kotae.rag.retrieval_batcher import OnBatch, RetrievalBatcher
from kotae.rag.retriever import Retrieval, Retriever
from kotae.rag.search_process import SearchProcess
from kotae.rag.stage_times import StageTimes

PromptFormatOf = Callable[[str | None], PromptFormat]
"""The prompt format an adapter was trained in (None: the base model)."""

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
    """The cleaned answer; `NO_ANSWER` when not `answerable`."""
    answerable: bool
    """False when kotae abstained: the model answered `NO_ANSWER`, or the gate kept it from being asked."""
    sources: list[Hit]
    """The passages the prompt held, in rank order."""
    last_cut: bool
    """The prompt held only the beginning of the last source."""
    completion: Completion
    timings: Timings


@dataclass(frozen=True, slots=True)
class Reply:
    """A model's answer as users get it."""

    text: str
    """Cleaned (`clean_answer`); `NO_ANSWER` when not `answerable`."""
    answerable: bool


def reply_of(raw: str) -> Reply:
    """The answer as `/v1/qa`, chat and the evals give it: up to the first blank line or `###`, without
    loops or surrounding blanks, and any spelling of the no-answer text as `NO_ANSWER`."""
    text = clean_answer(raw)
    answerable = not is_no_answer(text)
    return Reply(text if answerable else NO_ANSWER, answerable)


@dataclass(frozen=True, slots=True)
class PreparedQuestion:
    """A question with its passages and the exact prompt the engine will see."""

    question: str
    sources: list[Hit]
    """The passages the prompt holds, in rank order (retrieved ones the budget left out are not here)."""
    last_cut: bool
    """The prompt holds only the beginning of the last source."""
    prompt: str
    retrieve_ms: float
    best_cosine: float | None
    """The collection's best cosine for the question (`Retrieval.best_cosine`); None for given passages."""


class Pipeline:
    def __init__(self, collections: Collections, engine: Engine, settings: Settings) -> None:
        self.collections = collections
        self.engine = engine
        self.settings = settings
        self.search_process: SearchProcess | None = None
        """Where `prepare_many` ranks, when not here: a process holding its own copy of the collections,
        which follows their writes (`kotae.runtime.searching`)."""
        self._batcher = RetrievalBatcher(self.prepare_many, RETRIEVAL_BATCH)
        self.prompt_format_of: PromptFormatOf = lambda adapter: DEFAULT_PROMPT_FORMAT
        """Set from the adapter catalog once adapters are loaded (`kotae.runtime.load_adapters`)."""

    def shutdown(self) -> None:
        """Stop the engine and the search process, if any."""
        if self.search_process is not None:
            self.search_process.close()
        self.engine.shutdown()

    def observe_retrieval_batches(self, on_batch: OnBatch) -> None:
        """Call `on_batch` with what each shared retrieval batch of `prepare_batched` cost."""
        self._batcher.on_batch = on_batch

    @property
    def retriever(self) -> Retriever:
        """The default collection's retriever."""
        return self.collections.default

    def prompt_for(
        self,
        question: str,
        passages: Sequence[Passage],
        count_tokens: Callable[[str], int] | None = None,
        prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT,
    ) -> FittedPrompt:
        budget = self.settings.context_token_budget
        prompter = Prompter(prompt_format, self.engine.count_tokens.tokenizer)
        return fit_prompt(question, passages, count_tokens or self.engine.count_tokens, budget, prompter)

    def conversation_prompt(
        self, conversation: Conversation, passages: Sequence[Passage], prompt_format: PromptFormat
    ) -> FittedPrompt:
        """`prompt_for` a chat: its system text and earlier turns too (`fit_conversation`)."""
        budget = self.settings.context_token_budget
        prompter = Prompter(prompt_format, self.engine.count_tokens.tokenizer)
        return fit_conversation(conversation, passages, self.engine.count_tokens, budget, prompter)

    def for_conversation(
        self, prepared: PreparedQuestion, conversation: Conversation, prompt_format: PromptFormat
    ) -> PreparedQuestion:
        """`prepared` (retrieved for the conversation's standalone query) with the prompt of the whole
        conversation: its history takes tokens from the passages, so the prompt may hold fewer of them.
        Raises `HistoryTooLong` when the history alone exceeds the passages' budget."""
        if conversation.single_turn:
            return prepared
        fitted = self.conversation_prompt(
            conversation, [hit.passage for hit in prepared.sources], prompt_format
        )
        # The sources hold whole passages (only the prompt cut the last one): the smaller budget refits them.
        return dataclasses.replace(
            prepared,
            sources=prepared.sources[: fitted.passages],
            last_cut=fitted.last_cut,
            prompt=fitted.text,
        )

    async def prepare_batched(
        self,
        question: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        collection: str | None = None,
        prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT,
    ) -> PreparedQuestion:
        """`prepare_many` for one question among concurrent requests: retrieved in a batch with the
        questions that arrived while the previous batch ran; `retrieve_ms` includes that wait."""
        return await self._batcher.prepare(question, top_k, mode, collection, prompt_format)

    def prepare_many(
        self,
        questions: Sequence[str],
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        collection: str | None = None,
        prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT,
        times: StageTimes | None = None,
        given: Sequence[Sequence[Passage]] | None = None,
    ) -> list[PreparedQuestion]:
        """Batched retrieval from `collection` (None: the default one; one embedding batch for all
        questions), or the given passages as they are; prompts in `prompt_format`. Each stage is timed
        into `times` when given (`Retriever.search_many`'s, then `prompt`)."""
        clock = times or StageTimes()
        started = time.perf_counter()
        if given is not None:
            found = [Retrieval([Hit(p, 1.0) for p in passages], None) for passages in given]
        elif self.search_process is not None:
            found = self.search_process.search_many(
                collection, questions, top_k or self.settings.top_k, mode, clock
            )
        else:
            retriever = self.collections.get(collection)
            found = retriever.search_many(list(questions), top_k or self.settings.top_k, mode, times=clock)
        retrieve_ms = (time.perf_counter() - started) * 1000 / max(len(questions), 1)
        with clock.stage("prompt"):
            return self.prepared(questions, found, retrieve_ms, prompt_format)

    def prepared(
        self,
        questions: Sequence[str],
        found: Sequence[Retrieval],
        retrieve_ms: float,
        prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT,
    ) -> list[PreparedQuestion]:
        """The prompts of questions whose passages are already retrieved."""
        # Every context line counted in one batch, not one tokenizer call per line under the GIL.
        count = self.engine.count_tokens.knowing(
            [context_line(hit.passage) for retrieval in found for hit in retrieval.hits]
        )
        prepared = []
        for question, retrieval in zip(questions, found, strict=True):
            hits = retrieval.hits
            prompt = self.prompt_for(question, [hit.passage for hit in hits], count, prompt_format)
            prepared.append(
                PreparedQuestion(
                    question,
                    hits[: prompt.passages],
                    prompt.last_cut,
                    prompt.text,
                    retrieve_ms,
                    retrieval.best_cosine,
                )
            )
        return prepared

    def asks_model(self, prepared: PreparedQuestion) -> bool:
        """Whether the abstention gate lets the question reach the model (`kotae.rag.abstention`)."""
        return passes_gate(prepared.best_cosine, self.settings.abstain_min_cosine)

    async def answer(
        self,
        question: str,
        sampling: Sampling,
        adapter: str | None = None,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        collection: str | None = None,
    ) -> Answer:
        prompt_format = self.prompt_format_of(adapter)
        prepared = await self.prepare_batched(question, top_k, mode, collection, prompt_format)
        if not self.asks_model(prepared):
            return _answer(prepared, gate_completion(), 0.0)
        started = time.perf_counter()
        completion = await self.engine.complete(prepared.prompt, sampling, adapter)
        return _answer(prepared, completion, (time.perf_counter() - started) * 1000)

    async def answer_prepared(
        self,
        prepared: Sequence[PreparedQuestion],
        sampling: Sampling,
        adapter: str | None = None,
        on_done: OnDone = None,
    ) -> list[Answer]:
        """All prompts at once into vLLM's batch (evals); generate_ms is the batch's wall time. The
        questions the abstention gate stops get `NO_ANSWER` without reaching the engine."""
        started = time.perf_counter()
        asked = [p for p in prepared if self.asks_model(p)]
        if on_done is not None:
            for _ in range(len(prepared) - len(asked)):
                on_done()
        completions = iter(
            await self.engine.complete_many([p.prompt for p in asked], sampling, adapter, on_done)
            if asked
            else []
        )
        batch_ms = (time.perf_counter() - started) * 1000
        return [
            _answer(p, next(completions), batch_ms)
            if self.asks_model(p)
            else _answer(p, gate_completion(), 0.0)
            for p in prepared
        ]


def make_prompt(
    question: str,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    budget: int,
    prompter: Prompter,
) -> str:
    """The serving prompt; training builds its examples with this same function."""
    return fit_prompt(question, passages, count_tokens, budget, prompter).text


def _answer(prepared: PreparedQuestion, completion: Completion, generate_ms: float) -> Answer:
    reply = reply_of(completion.text)
    return Answer(
        question=prepared.question,
        text=reply.text,
        answerable=reply.answerable,
        sources=prepared.sources,
        last_cut=prepared.last_cut,
        completion=completion,
        timings=Timings(prepared.retrieve_ms, generate_ms),
    )
