"""Counting the tokenizers a test's code deep-copies: vLLM's tokenizer pool copies the whole tokenizer
(seconds with Gemma 3's vocabulary), and kotae keeps it from doing so (`kotae.rag.tokenizer_pool`)."""

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def counting_tokenizer_copies() -> Iterator[list[str]]:
    """The class names of the tokenizers `copy.deepcopy` copies meanwhile, in this process."""
    copied: list[str] = []
    deepcopy = copy.deepcopy

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(value, "backend_tokenizer"):
            copied.append(type(value).__name__)
        return deepcopy(value, *args, **kwargs)

    copy.deepcopy = counting
    try:
        yield copied
    finally:
        copy.deepcopy = deepcopy
