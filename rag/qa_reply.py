"""The reply of `POST /v1/qa`, an API contract: the server answers with it and the eval client reads it
back. Its token usage and sources are also those of the chat replies."""

from collections.abc import Sequence

from pydantic import BaseModel

from kotae.core.passage import Hit
from kotae.rag.engine_protocol import Completion


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


class QATimings(BaseModel):
    retrieve_ms: float
    generate_ms: float


class QAResponse(BaseModel):
    answer: str
    """The answer; when not `answerable`, 「資料には答えが見つかりません。」 (`kotae.rag.abstention`)."""
    answerable: bool
    """False when the passages do not hold the answer: the model said so, or no passage of the collection
    was close enough to the question to ask it (`KOTAE_ABSTAIN_MIN_COSINE`)."""
    sources: list[Source]
    """The passages the prompt held, in its order (rank order); the last may be `cut` to fit. When the
    gate abstained, the closest passages found (the model was not asked)."""
    collection: str
    """The collection the passages came from."""
    model: str
    """The base model's name."""
    adapter: str | None
    """The adapter that answered; null for the base model."""
    finish_reason: str
    """`stop`, `length`, or `repetition` when the loop guard cut a repeating answer."""
    usage: Usage
    timings: QATimings
