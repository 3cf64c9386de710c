"""Python's thread switch interval for a block: how long a thread that waits for the interpreter lets the
one holding it run first. kotae's retrieval shares the interpreter with the event loop that carries the
engine's outputs; faiss, BM25, SQLite and Sudachi hand the lock back inside their calls, and at Python's
default (5 ms) each return can wait that long behind the loop."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def switch_interval(ms: float) -> Iterator[None]:
    """Python's thread switch interval set to `ms` inside the block (0: left as it is), restored after."""
    before = sys.getswitchinterval()
    if ms:
        sys.setswitchinterval(ms / 1000)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
