"""Chat completions on the RAG pipeline: the last user message is the question.

With retrieval (the default) the prompt is exactly /v1/qa's (`Pipeline.prepare`); without it, the
question goes into the same template with an empty 入力, so adapters always see the format they were
trained on. When /v1/qa's abstention gate stops the question, the reply is 「資料には答えが見つかりません。」
without asking the model (`kotae.rag.abstention`).
"""

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

from kotae.core.errors import KotaeError
from kotae.rag.abstention import gate_completion
from kotae.rag.engine_protocol import Completion, Delta, Sampling
from kotae.rag.qa_reply import Source, Usage
from kotae.server.chat.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    DeltaMessage,
    FinishReason,
    completion_id,
)
from kotae.server.core.api_keys import ReaderScope
from kotae.server.core.errors import APIError, error_body
from kotae.server.core.metrics import Outcome, outcome_of
from kotae.server.core.state import Service

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A request made ready for the engine."""

    prompt: str
    sampling: Sampling
    adapter: str | None
    model: str
    """What the response's `model` says: the adapter's name, or the base model's."""
    sources: list[Source] | None
    asks_model: bool
    """False when the abstention gate answers instead of the model."""


def openai_finish_reason(reason: str) -> FinishReason:
    """OpenAI knows `stop` and `length`; kotae's loop guard (`repetition`) stopped a finished answer."""
    return "length" if reason == "length" else "stop"


def question_of(request: ChatCompletionRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text()
    raise APIError(HTTPStatus.UNPROCESSABLE_ENTITY, "messages: no user message to answer", "no_user_message")


async def prepare_turn(service: Service, request: ChatCompletionRequest, scope: ReaderScope) -> ChatTurn:
    options = request.kotae
    collection = service.collection_for(options.collection, scope) if options.retrieval else None
    adapter = service.adapter_for(request.model)
    question = service.check_question(question_of(request))
    sampling = service.sampling(
        request.max_completion_tokens or request.max_tokens,
        request.temperature,
        request.top_p,
        request.stop_sequences(),
        request.seed,
    )
    sources: list[Source] | None = None
    asks_model = True
    prompt_format = service.pipeline.prompt_format_of(adapter)
    if options.retrieval:
        prepared = await service.pipeline.prepare_batched(
            question, options.top_k, options.mode, collection, prompt_format
        )
        service.metrics.retrieval_seconds.observe(prepared.retrieve_ms / 1000)
        prompt = prepared.prompt
        sources = Source.list_of(prepared.sources, options.include_text, prepared.last_cut)
        asks_model = service.pipeline.asks_model(prepared)
    else:
        prompt = service.pipeline.prompt_for(question, [], prompt_format=prompt_format).text
    return ChatTurn(prompt, sampling, adapter, adapter or service.base_model, sources, asks_model)


async def complete_chat(service: Service, turn: ChatTurn) -> ChatCompletion:
    started = time.perf_counter()
    with service.metrics.track_request(turn.adapter):
        if turn.asks_model:
            completion = await service.pipeline.engine.complete(turn.prompt, turn.sampling, turn.adapter)
        else:
            completion = gate_completion()
    service.metrics.record_generation(turn.adapter, completion, time.perf_counter() - started)
    return ChatCompletion(
        model=turn.model,
        choices=[
            Choice(
                message=AssistantMessage(content=completion.text),
                finish_reason=openai_finish_reason(completion.finish_reason),
            )
        ],
        usage=Usage.of(completion),
        kotae_sources=turn.sources,
    )


async def start_stream(service: Service, turn: ChatTurn, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events for the turn. The engine's first event is awaited before this returns, so an
    unknown adapter or a dead engine is still answered with an HTTP error rather than a broken stream."""
    started = time.perf_counter()
    stream = (
        service.pipeline.engine.stream(turn.prompt, turn.sampling, turn.adapter)
        if turn.asks_model
        else _gated()
    )
    deltas = cast(AsyncGenerator[Delta, None], stream)
    try:
        first = await anext(deltas)
    except BaseException as error:
        service.metrics.record_request(turn.adapter, time.perf_counter() - started, outcome_of(error))
        await deltas.aclose()
        raise
    return _events(service, turn, include_usage, started, first, deltas)


async def _gated() -> AsyncIterator[Delta]:
    """The stream of the gate's answer: its text in one piece."""
    completion = gate_completion()
    yield Delta(completion.text, completion)


async def _events(
    service: Service,
    turn: ChatTurn,
    include_usage: bool,
    started: float,
    first: Delta,
    deltas: AsyncGenerator[Delta, None],
) -> AsyncIterator[str]:
    ident, created = completion_id(), int(time.time())

    def event(choices: list[ChunkChoice], **extra: object) -> str:
        chunk = ChatCompletionChunk(id=ident, created=created, model=turn.model, choices=choices, **extra)
        return f"data: {chunk.model_dump_json()}\n\n"

    outcome: Outcome = "error"
    completion: Completion | None = None
    try:
        opening = ChunkChoice(delta=DeltaMessage(role="assistant", content=""))
        yield event([opening], kotae_sources=turn.sources)
        delta: Delta | None = first
        while delta is not None:
            if delta.text:
                yield event([ChunkChoice(delta=DeltaMessage(content=delta.text))])
            completion = delta.completion or completion
            delta = await anext(deltas, None)
        if completion is None:
            raise KotaeError("the engine ended the stream without a result")
        finish = openai_finish_reason(completion.finish_reason)
        yield event([ChunkChoice(delta=DeltaMessage(), finish_reason=finish)])
        if include_usage:
            yield event([], usage=Usage.of(completion))
        outcome = "ok"
    except KotaeError as error:
        # Headers are sent: report in-band, as OpenAI does, then end the stream normally.
        logger.warning("chat stream failed: %s", error)
        body = error_body(HTTPStatus.SERVICE_UNAVAILABLE, str(error), "stream_failed")
        yield f"data: {json.dumps(body)}\n\n"
    except BaseException as error:
        outcome = outcome_of(error)
        raise
    finally:
        await deltas.aclose()
        elapsed = time.perf_counter() - started
        service.metrics.record_request(turn.adapter, elapsed, outcome)
        if completion is not None:
            service.metrics.record_generation(turn.adapter, completion, elapsed)
    yield "data: [DONE]\n\n"
