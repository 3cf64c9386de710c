"""`POST /v1/qa`: the request (its reply, `QAResponse`, is in `kotae.rag.qa_reply`)."""

from pydantic import BaseModel, ConfigDict, Field

from kotae.core.config import RetrievalMode
from kotae.server.core.protocol import SamplingSeed


class QARequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(max_length=100_000)
    """In Japanese. The server's own limit (`KOTAE_MAX_QUESTION_CHARS`) is usually lower; this bound only
    keeps absurd inputs out of the validator."""
    top_k: int | None = Field(None, ge=1, le=50)
    """Passages to retrieve; the server's `top_k` when unset."""
    adapter: str | None = Field(None, max_length=128)
    """A loaded adapter, or the base model's name (or "") for the base model; unset: the default adapter."""
    max_tokens: int | None = Field(None, ge=1)
    """Answer tokens; at most `KOTAE_MAX_TOKENS_CAP`."""
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    """0 (default) is greedy decoding."""
    seed: SamplingSeed | None = None
    """Seed of the sampling at a temperature above 0 (a 64-bit integer): the same seed, the same answer."""
    retrieval: RetrievalMode | None = None
    """dense, bm25 or hybrid; the server's mode when unset."""
    collection: str | None = Field(None, max_length=64)
    """The collection to answer from (GET /v1/collections); unset: `default`."""
    include_text: bool = True
    """Return each source's text (false: ids, titles and scores only)."""
