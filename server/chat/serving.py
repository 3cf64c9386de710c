"""Chat completions on the RAG pipeline: the last user message is the question, asked with the
conversation before it.

- Retrieval (the default) searches for the last question made standalone from the earlier turns
  (`kotae.rag.standalone_query`); `kotae_query` in the reply says what was searched.
- The prompt holds the system messages and earlier turns in the adapter's prompt format
  (`Prompter.conversation`); they take their tokens from the passages' budget, and a history longer than
  that budget is answered 413. A chat of one user message (and no system message) gets exactly /v1/qa's
  prompt; without retrieval, the same template with no passages.
- When /v1/qa's abstention gate stops the question, the reply is 「資料には答えが見つかりません。」 without
  asking the model (`kotae.rag.abstention`).
- Replies are cleaned as /v1/qa's are (`kotae.rag.pipeline.reply_of`). A streamed reply is cleaned as
  far as a stream can be: the engine already stops at a blank line or `###` and cuts loops, and the
  blanks at both ends are not sent (`EdgeBlanks`); what was sent cannot be rewritten, so a model's
  variant of the no-answer text streams as the model wrote it.
"""

import dataclasses
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
from kotae.rag.pipeline import reply_of
from kotae.rag.prompt import HistoryTooLong
from kotae.rag.qa_reply import Source, Usage
from kotae.rag.standalone_query import standalone_query
from kotae.server.chat.edge_blanks import EdgeBlanks
from kotae.server.chat.history import conversation_of
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
    query: str | None
    """What retrieval searched for; None without retrieval."""
    asks_model: bool
    """False when the abstention gate answers instead of the model."""


def openai_finish_reason(reason: str) -> FinishReason:
    """OpenAI knows `stop` and `length`; kotae's loop guard (`repetition`) stopped a finished answer."""
    return "length" if reason == "length" else "stop"


async def prepare_turn(service: Service, request: ChatCompletionRequest, scope: ReaderScope) -> ChatTurn:
    options = request.kotae
    collection = service.collection_for(options.collection, scope) if options.retrieval else None
    adapter = service.adapter_for(request.model)
    conversation = conversation_of(request.messages)
    conversation = dataclasses.replace(conversation, question=service.check_question(conversation.question))
    sampling = service.sampling(
        request.max_completion_tokens or request.max_tokens,
        request.temperature,
        request.top_p,
        request.stop_sequences(),
        request.seed,
    )
    sources: list[Source] | None = None
    query: str | None = None
    asks_model = True
    pipeline = service.pipeline
    prompt_format = pipeline.prompt_format_of(adapter)
    try:
        if options.retrieval:
            query = standalone_query(conversation)
            found = await pipeline.prepare_batched(
                query, options.top_k, options.mode, collection, prompt_format
            )
            service.metrics.retrieval_seconds.observe(found.retrieve_ms / 1000)
            prepared = pipeline.for_conversation(found, conversation, prompt_format)
            prompt = prepared.prompt
            sources = Source.list_of(prepared.sources, options.include_text, prepared.last_cut)
            asks_model = pipeline.asks_model(prepared)
        else:
            prompt = pipeline.conversation_prompt(conversation, [], prompt_format).text
    except HistoryTooLong as error:
        raise APIError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"messages: {error}", "history_too_long"
        ) from error
    return ChatTurn(prompt, sampling, adapter, adapter or service.base_model, sources, query, asks_model)


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
                message=AssistantMessage(content=reply_of(completion.text).text),
                finish_reason=openai_finish_reason(completion.finish_reason),
            )
        ],
        usage=Usage.of(completion),
        kotae_sources=turn.sources,
        kotae_query=turn.query,
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
        yield event([opening], kotae_sources=turn.sources, kotae_query=turn.query)
        blanks = EdgeBlanks()
        delta: Delta | None = first
        while delta is not None:
            if text := blanks.feed(delta.text):
                yield event([ChunkChoice(delta=DeltaMessage(content=text))])
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
