"""Recording how many prompt tokens prime each `DecodeStream` vLLM's detokenizer makes: vLLM primes it with
the whole prompt, kotae with its tail (`kotae.rag.detokenizer_prime`)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tokenizers.decoders


@contextmanager
def recording_decode_streams() -> Iterator[list[int]]:
    """The number of ids each `DecodeStream` made meanwhile was primed with, in order (vLLM's detokenizer
    looks the class up on its module as it makes one)."""
    primed_with: list[int] = []
    stream = tokenizers.decoders.DecodeStream

    def recording_stream(ids: list[int] | None = None, **kwargs: Any) -> Any:
        primed_with.append(len(ids or ()))
        return stream(ids=ids, **kwargs)

    tokenizers.decoders.DecodeStream = recording_stream
    try:
        yield primed_with
    finally:
        tokenizers.decoders.DecodeStream = stream
