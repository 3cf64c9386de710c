"""Counting the tokenizers a test's code deep-copies: vLLM's tokenizer pool copies the whole tokenizer
(seconds with Gemma 3's vocabulary), and kotae has it copy once, off the event loop
(`kotae.rag.tokenizer_pool`)."""

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kotae.rag.tokenizer_pool import COPYING_THREAD


@contextmanager
def counting_tokenizer_copies() -> Iterator[list[tuple[str, str]]]:
    """The tokenizers `copy.deepcopy` copies meanwhile, in this process: each one's class name and the name
    of the thread that copied it."""
    copied: list[tuple[str, str]] = []
    deepcopy = copy.deepcopy

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(value, "backend_tokenizer"):
            copied.append((type(value).__name__, threading.current_thread().name))
        return deepcopy(value, *args, **kwargs)

    copy.deepcopy = counting
    try:
        yield copied
    finally:
        copy.deepcopy = deepcopy


def wait_for_the_pools_copy() -> None:
    """Until the threads that fill vLLM's tokenizer pools have made their copies."""
    for thread in threading.enumerate():
        if thread.name == COPYING_THREAD:
            thread.join()
