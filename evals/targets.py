"""Where answers come from: the pipeline in this process, or a running kotae server over HTTP.

Both answer every question of a run and return per-question answers plus the stage times the
runner turns into speed figures. `InProcessTarget` submits each retrieval batch's prompts to vLLM at once
(its scheduler batches them) while the next batch is retrieved; `HttpTarget` keeps `concurrency` requests
to `POST /v1/qa` in flight. The third target, an OpenAI-compatible endpoint, is
`kotae.evals.openai_target`.
"""

import asyncio
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field

import httpx
from pydantic import ValidationError

from kotae.core.errors import KotaeError
from kotae.core.passage import Hit, Passage
from kotae.core.qa_jsonl import QAItem
from kotae.core.switch_interval import switch_interval
from kotae.evals.retrieval_process import RetrievalJob, RetrievalProcess, RetrievedBatch, search_job
from kotae.evals.schema import ContextsMode
from kotae.models.weights import weights_format
from kotae.rag.engine_protocol import Sampling
from kotae.rag.pipeline import Answer, Pipeline, PreparedQuestion
from kotae.rag.prompt import PromptFormat
from kotae.rag.qa_reply import QAResponse
from kotae.rag.stage_times import StageTimes

BATCH_STAGE_PREFIX = "batch."
"""`TargetRun.stage_ms` keys of per-batch stages (`batch.embed`, `batch.bm25`, `batch.prompt`, …): one
sample per batch, not per question."""
HTTP_TIMEOUT_S = 600.0
"""Per request: under load a request may wait for the whole queue ahead of it."""


@dataclass(frozen=True, slots=True)
class AskOptions:
    """How every question of a run is asked."""

    top_k: int
    """Passages in the prompt."""
    retrieval_depth: int
    """Passages ranked per question for recall; only the first `top_k` reach the prompt."""
    contexts: ContextsMode
    adapter: str | None
    """As the user named it; "" is the base model; None lets the target choose its default."""
    sampling: Sampling


@dataclass(slots=True)
class TargetAnswer:
    text: str
    answerable: bool
    """False when the target abstained."""
    sources: list[Hit]
    """Passages in the prompt, in rank order."""
    ranked_ids: list[str] | None
    """The ranking recall is measured on; None when the contexts were given."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None


@dataclass(slots=True)
class TargetRun:
    answers: list[TargetAnswer]
    wall_s: float
    """First question submitted to last answer received."""
    model: str
    adapter: str | None
    quantization: str | None
    device: str
    retrieval_mode: str | None
    retrieval_depth: int | None
    retrieved_s: float | None = None
    """First question submitted to the last retrieval batch's prompts reaching the engine (in process)."""
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    """Samples per stage (`retrieve`, `generate`, `first_token`, `request`), not tied to questions."""
    stage_notes: dict[str, str] = field(default_factory=dict)


class InProcessTarget:
    """The same pipeline `kotae serve` runs, in this process. Questions are retrieved in batches of
    `Settings.eval_retrieval_batch`, one after another, in one thread of this process or in `retrieval` (a
    process of its own); each batch's prompts are written in that thread and go to the engine as soon as the
    event loop takes them, so retrieval of the next batch overlaps generation of the ones before."""

    def __init__(self, pipeline: Pipeline, retrieval: RetrievalProcess | None = None) -> None:
        self.pipeline = pipeline
        self.retrieval = retrieval
        """Ranks the questions in a process of its own (the same retriever, opened there); None: here."""

    async def answer_all(
        self, items: Sequence[QAItem], ask: AskOptions, on_answer: Callable[[], None]
    ) -> TargetRun:
        adapter = await self._adapter(ask)
        prompt_format = self.pipeline.prompt_format_of(adapter)
        times = StageTimes()
        generate_ms: list[float] = []

        def submit(prepared: list[PreparedQuestion]) -> "asyncio.Task[list[Answer]]":
            submitted = time.perf_counter()

            def done() -> None:
                generate_ms.append((time.perf_counter() - submitted) * 1000)
                on_answer()

            return asyncio.create_task(self.pipeline.answer_prepared(prepared, ask.sampling, adapter, done))

        started = time.perf_counter()
        prepared: list[PreparedQuestion] = []
        ranked: list[list[str]] | None = None if ask.contexts == "given" else []
        generating: list[asyncio.Task[list[Answer]]] = []
        retrieved_s: float | None = None
        loop = asyncio.get_running_loop()
        stopped = threading.Event()  # the run failed or was cancelled: retrieve and submit nothing more
        failed: list[Exception] = []  # a batch the loop could not submit

        def take(batch_prepared: list[PreparedQuestion], batch_ranked: list[list[str]] | None) -> None:
            if stopped.is_set():
                return
            try:
                generating.append(submit(batch_prepared))
            except Exception as error:  # raised in the loop's callback, it would reach no caller
                failed.append(error)
                stopped.set()
                return
            prepared.extend(batch_prepared)
            if ranked is not None and batch_ranked is not None:
                ranked.extend(batch_ranked)

        def retrieve_all() -> None:
            # One thread retrieves batch after batch and hands each to the event loop, which submits it when
            # it next runs: the retrieval never waits for a loop that is busy with the engine's outputs.
            with closing(self._prepared_batches(items, ask, prompt_format, times)) as batches:
                for found in batches:
                    if stopped.is_set():
                        return
                    loop.call_soon_threadsafe(take, *found)

        try:
            with switch_interval(self.pipeline.settings.eval_switch_interval_ms):
                # Callbacks run in the order they were scheduled: every batch is taken before this resumes.
                await asyncio.to_thread(retrieve_all)
            if failed:
                raise failed[0]
            retrieved_s = time.perf_counter() - started
            answered = await asyncio.gather(*generating)
        except BaseException:
            stopped.set()
            for task in generating:  # a failed batch or retrieval: nothing else keeps generating
                task.cancel()
            raise
        results = [answer for batch_answers in answered for answer in batch_answers]
        wall_s = time.perf_counter() - started
        answers = [
            TargetAnswer(
                text=result.text,
                answerable=result.answerable,
                sources=result.sources,
                ranked_ids=None if ranked is None else ranked[i],
                prompt_tokens=result.completion.prompt_tokens,
                completion_tokens=result.completion.completion_tokens,
                finish_reason=result.completion.finish_reason,
            )
            for i, result in enumerate(results)
        ]
        first_tokens = [r.completion.first_token_s * 1000 for r in results if r.completion.first_token_s]
        return TargetRun(
            answers=answers,
            wall_s=wall_s,
            retrieved_s=retrieved_s,
            model=self.pipeline.engine.model_name,
            adapter=adapter,
            quantization=self._weights_format(),
            device=self._device(),
            retrieval_mode=None if ranked is None else self.pipeline.retriever.describe(),
            retrieval_depth=None if ranked is None else ask.retrieval_depth,
            stage_ms={
                "retrieve": [p.retrieve_ms for p in prepared] if ranked is not None else [],
                "generate": generate_ms,
                "first_token": first_tokens,
                **{f"{BATCH_STAGE_PREFIX}{name}": ms for name, ms in times.ms.items()},
            },
            stage_notes={
                "retrieve": (
                    f"retrieved in batches{' in a process of its own' if self.retrieval else ''}: each "
                    "question's share of its batch's time"
                ),
                "generate": "each batch submitted at once: time from its batch's submission to each answer",
                "first_token": "each batch submitted at once: time from submission to each first token",
            },
        )

    def _prepared_batches(
        self, items: Sequence[QAItem], ask: AskOptions, prompt_format: PromptFormat, times: StageTimes
    ) -> Iterator[tuple[list[PreparedQuestion], list[list[str]] | None]]:
        """Each batch's prompts, with the dataset's passages or retrieved ones, and the ids of each retrieved
        ranking (`retrieval_depth` passages, of which the first `top_k` are read for the prompt) for recall.
        An unanswerable question is asked without the article of its gold passages."""
        batches = retrieval_batches(len(items), self.pipeline.settings.eval_retrieval_batch)
        questions = [item.question for item in items]
        if ask.contexts == "given":
            for batch in batches:
                given = [_given(item, ask.top_k) for item in items[batch]]
                prepared = self.pipeline.prepare_many(
                    questions[batch], ask.top_k, prompt_format=prompt_format, times=times, given=given
                )
                yield prepared, None
            return
        job = RetrievalJob(questions, self._excluded_titles(items), ask.top_k, ask.retrieval_depth, batches)
        for batch, retrieved in zip(batches, self._search(job), strict=True):
            times.merge(retrieved.stage_ms)
            found, retrieve_ms = retrieved.retrievals, retrieved.retrieve_ms
            with times.stage("prompt"):
                prepared = self.pipeline.prepared(questions[batch], found, retrieve_ms, prompt_format)
            yield prepared, [r.ranked_ids or [] for r in found]

    def _search(self, job: RetrievalJob) -> Iterator[RetrievedBatch]:
        if self.retrieval is None:
            yield from search_job(self.pipeline.retriever, job)
            return
        finished = False
        try:
            yield from self.retrieval.search_batches(job)
            finished = True
        finally:
            if not finished:  # its remaining batches would reach the next job
                self.retrieval.close()

    def _excluded_titles(self, items: Sequence[QAItem]) -> list[frozenset[str]] | None:
        if all(item.answerable for item in items):
            return None
        retriever = self.pipeline.retriever
        return [
            frozenset() if item.answerable else retriever.titles_of(item.gold_passage_ids) for item in items
        ]

    async def _adapter(self, ask: AskOptions) -> str | None:
        """The adapter to answer with, loaded with the others of the adapter root."""
        from kotae.runtime import load_default_adapters

        return await load_default_adapters(self.pipeline, self.pipeline.settings, ask.adapter)

    def _device(self) -> str:
        return device_name()

    def _weights_format(self) -> str | None:
        engine, settings = self.pipeline.engine, self.pipeline.settings
        if engine.model_path is None:
            return None
        # Replicas quantize as their own command line says, not as kotae's settings do.
        return weights_format(engine.model_path, None if settings.replicas else settings.quantization)


def retrieval_batches(count: int, size: int) -> list[slice]:
    """The in-process eval's retrieval batches of `count` questions: `size` each, after a first of a quarter
    of that and a second of half, so that the engine gets its first prompts sooner. One batch when `size` is
    0."""
    if not size:
        return [slice(0, count)]
    batches, start, step = [], 0, max(1, size // 4)
    while start < count:
        batches.append(slice(start, start + step))
        start, step = start + step, min(2 * step, size)
    return batches


def _given(item: QAItem, top_k: int) -> list[Passage]:
    assert item.contexts is not None  # the runner refuses `given` on items without contexts
    return list(item.contexts[:top_k])


def device_name() -> str:
    """The accelerator vLLM runs on, or the CPU."""
    from vllm.platforms import current_platform

    if current_platform.device_type == "cpu":
        return f"cpu {platform.machine()} ({len(os.sched_getaffinity(0))} cores)"
    # vLLM asks NVML: torch.cuda.get_device_name would open a CUDA context in this process, and its
    # memory would count in the run's GPU peak.
    return current_platform.get_device_name()


# -- HTTP ---------------------------------------------------------------------------------------------


class HttpTarget:
    """A running kotae server: `concurrency` requests to `POST {url}/v1/qa` at a time."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url.rstrip("/")
        self.concurrency = concurrency

    async def answer_all(
        self, items: Sequence[QAItem], ask: AskOptions, on_answer: Callable[[], None]
    ) -> TargetRun:
        if ask.contexts == "given":
            raise KotaeError(
                "--contexts given is not supported over HTTP: /v1/qa retrieves its own passages. "
                "Run the eval in-process (--target inprocess) to use the dataset's contexts."
            )
        if any(not item.answerable and item.gold_passage_ids for item in items):
            raise KotaeError(
                "unanswerable questions with gold_passage_ids are asked without their gold article, which a "
                "server cannot do: run the eval in-process (--target inprocess)"
            )
        gate = asyncio.Semaphore(self.concurrency)
        replies: list[QAResponse | None] = [None] * len(items)
        request_ms: list[float] = []

        async def one(index: int, client: httpx.AsyncClient) -> TargetAnswer:
            async with gate:
                started = time.perf_counter()
                try:
                    reply = await self._post(client, items[index].question, ask)
                except KotaeError as error:
                    return TargetAnswer("", True, [], [], finish_reason="error", error=str(error))
                finally:
                    request_ms.append((time.perf_counter() - started) * 1000)
                    on_answer()
            replies[index] = reply
            return TargetAnswer(
                text=reply.answer,
                answerable=reply.answerable,
                sources=[Hit(Passage(s.id, s.title, s.text or ""), s.score) for s in reply.sources],
                ranked_ids=[s.id for s in reply.sources],
                prompt_tokens=reply.usage.prompt_tokens,
                completion_tokens=reply.usage.completion_tokens,
                finish_reason=reply.finish_reason,
            )

        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.url, timeout=HTTP_TIMEOUT_S) as client:
            answers = list(await asyncio.gather(*(one(i, client) for i in range(len(items)))))
        wall_s = time.perf_counter() - started
        answered = [reply for reply in replies if reply is not None]
        if not answered:
            raise KotaeError(f"every request to {self.url}/v1/qa failed; the first: {answers[0].error}")
        return TargetRun(
            answers=answers,
            wall_s=wall_s,
            model=answered[0].model,
            adapter=answered[0].adapter,
            quantization=None,
            device=f"remote ({self.url})",
            retrieval_mode=None,
            retrieval_depth=ask.top_k,
            stage_ms={
                "retrieve": [r.timings.retrieve_ms for r in answered],
                "generate": [r.timings.generate_ms for r in answered],
                "request": request_ms,
            },
            stage_notes={"retrieve": "as the server reports it", "generate": "as the server reports it"},
        )

    async def _post(self, client: httpx.AsyncClient, question: str, ask: AskOptions) -> QAResponse:
        body: dict[str, object] = {
            "question": question,
            "top_k": ask.top_k,
            "max_tokens": ask.sampling.max_tokens,
            "temperature": ask.sampling.temperature,
        }
        if ask.adapter is not None:
            body["adapter"] = ask.adapter
        try:
            response = await client.post("/v1/qa", json=body)
        except httpx.HTTPError as error:
            raise KotaeError(f"{type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise KotaeError(f"HTTP {response.status_code}: {response.text[:300]}")
        try:
            return QAResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise KotaeError(f"the reply does not follow the /v1/qa schema: {error}") from error
