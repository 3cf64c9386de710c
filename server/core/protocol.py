"""Schemas shared by several routes: the error body, token usage and retrieved sources."""

from collections.abc import Sequence

from pydantic import BaseModel

from kotae.core.passage import Hit
from kotae.rag.engine_protocol import Completion


class ErrorDetail(BaseModel):
    message: str
    """What was wrong, for people."""
    type: str
    """OpenAI's error class (`invalid_request_error`, `authentication_error`, ...)."""
    code: str
    """Stable, machine-readable reason (`invalid_json`, `model_not_found`, `not_ready`, ...)."""


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, completion: Completion) -> "Usage":
        return cls(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
        )


class Source(BaseModel):
    """A retrieved passage the answer was written from: one the prompt held."""

    id: str
    title: str
    score: float
    text: str | None = None
    """The passage text, unless the request asked to leave it out."""
    cut: bool = False
    """The prompt held only the beginning of this passage: the context budget ran out inside it."""

    @classmethod
    def list_of(cls, hits: Sequence[Hit], with_text: bool, last_cut: bool) -> list["Source"]:
        """The sources of a prompt's passages, in rank order; `last_cut` marks the last."""
        return [
            cls(
                id=hit.passage.id,
                title=hit.passage.title,
                score=hit.score,
                text=hit.passage.text if with_text else None,
                cut=last_cut and rank == len(hits) - 1,
            )
            for rank, hit in enumerate(hits)
        ]
