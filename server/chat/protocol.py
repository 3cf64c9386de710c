"""`POST /v1/chat/completions` in OpenAI's schema, plus kotae's retrieval options and sources.

Fields of OpenAI's schema that kotae has no use for (tools, logprobs, response_format, ...) are accepted
and ignored, so stock OpenAI clients work unchanged. kotae's additions: the request's `kotae` object
(retrieval on/off, top_k, mode; OpenAI clients send it via `extra_body`), and `kotae_sources` and
`kotae_query` in the response (the first chunk when streaming), which OpenAI clients ignore.
"""

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kotae.core.config import RetrievalMode
from kotae.rag.qa_reply import Source, Usage
from kotae.server.core.protocol import SamplingSeed

StopString = Annotated[str, Field(min_length=1, max_length=200)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    """Text, or OpenAI content parts of type text (images and audio are not supported)."""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False
    """Send a last chunk with empty `choices` and the request's token usage."""


class KotaeOptions(BaseModel):
    """kotae's own request options (OpenAI clients: `extra_body={"kotae": {...}}`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retrieval: bool = True
    """Answer from retrieved passages (the /v1/qa prompt); false: the question alone, empty 入力."""
    top_k: int | None = Field(None, ge=1, le=50)
    mode: RetrievalMode | None = None
    include_text: bool = False
    """Include each source's text in `kotae_sources`."""
    collection: str | None = Field(None, max_length=64)
    """The collection to retrieve from (GET /v1/collections); unset: `default`."""


class ChatCompletionRequest(BaseModel):
    """The question is the last user message; the system messages and earlier turns before it reach the
    model in the adapter's prompt format, and retrieval searches for the question made standalone from
    them (`kotae.server.chat.serving`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(None, max_length=128)
    """The base model's id or a loaded adapter (GET /v1/models); unset: the default adapter."""
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    """OpenAI's newer name for max_tokens; wins when both are given."""
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    """A stop string or up to four (as OpenAI allows), none empty."""
    seed: SamplingSeed | None = None
    """Seed of the sampling at a temperature above 0 (a 64-bit integer)."""
    n: int = Field(1, ge=1, le=1)
    """One choice per request."""
    stream: bool = False
    stream_options: StreamOptions | None = None
    kotae: KotaeOptions = Field(default_factory=KotaeOptions)

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


FinishReason = Literal["stop", "length"]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    kotae_sources: list[Source] | None = None
    """The passages the prompt held; null when retrieval was off."""
    kotae_query: str | None = None
    """What retrieval searched for: the last question made standalone from the earlier turns; null when
    retrieval was off."""


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    """Only on the last chunk, and only with `stream_options.include_usage`."""
    kotae_sources: list[Source] | None = None
    """On the first chunk, when retrieval was on."""
    kotae_query: str | None = None
    """On the first chunk, when retrieval was on: what retrieval searched for."""
