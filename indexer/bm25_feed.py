"""The passage store's BM25 tokens as `NumberedTokens` batches in key order, for `Bm25Index.build`. A large
store is read and numbered by worker processes, each with its own read-only connection: decoding millions
of JSON token lists and numbering their words is the bulk of a BM25 build, and one process would spend
minutes on it."""

import concurrent.futures
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from kotae.indexer.bm25 import NumberedTokens
from kotae.indexer.store import PassageStore

BATCH_PASSAGES = 50_000
"""Passages per batch (a key range): a few MB of numbers to hand back."""
PARALLEL_FROM = 200_000
"""Stores of fewer passages are read here: starting worker processes would take longer."""

_store: PassageStore | None = None


def numbered_batches(store: PassageStore, workers: int | None = None) -> Iterator[NumberedTokens]:
    """Every stored passage's tokens, in key order. `workers`: processes reading the store (None: one per
    core for a large store, none for a small one). The store must not change meanwhile."""
    end = store.max_key() + 1
    ranges = [(start, min(start + BATCH_PASSAGES, end)) for start in range(1, end, BATCH_PASSAGES)]
    if workers is None:
        workers = (os.cpu_count() or 1) if store.count() >= PARALLEL_FROM else 0
    if workers == 0:
        for first_key, end_key in ranges:
            yield NumberedTokens.of(*store.tokens_in_range(first_key, end_key))
        return
    with concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # never fork a process that holds torch
        initializer=_open_store,
        initargs=(store.path,),
    ) as pool:
        # A bounded window of batches in flight, handed back in order: memory holds a few, not all.
        pending: deque[concurrent.futures.Future] = deque()
        for first_key, end_key in ranges:
            pending.append(pool.submit(_read_numbered, first_key, end_key))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _open_store(path: Path) -> None:
    global _store
    _store = PassageStore.open(path)


def _read_numbered(first_key: int, end_key: int) -> NumberedTokens:
    assert _store is not None
    return NumberedTokens.of(*_store.tokens_in_range(first_key, end_key))
