"""Retrieval for concurrent requests in shared batches.

One question at a time, each request pays a whole embedding forward and holds the GIL through Sudachi and
BM25 in its own thread; under load those per-request costs cap the server's throughput below the engine's.
Here the questions that arrive while a batch is being retrieved wait for the next batch, which embeds them
in one forward (`Retriever.retrieve_many`). An idle server adds no delay: a lone question is a batch of one.
"""

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kotae.core.config import RetrievalMode
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PromptFormat
from kotae.rag.stage_times import StageTimes

if TYPE_CHECKING:
    from kotae.rag.pipeline import PreparedQuestion

PrepareMany = Callable[
    [Sequence[str], int | None, RetrievalMode | None, str | None, PromptFormat, StageTimes],
    list["PreparedQuestion"],
]
"""`Pipeline.prepare_many`: questions, top_k, mode, collection, prompt format, the stage clock."""
GroupKey = tuple[str | None, int | None, RetrievalMode | None, PromptFormat]
"""Questions are retrieved together when they ask the same collection, top_k and mode, and are written
into the same prompt format."""


@dataclass(frozen=True, slots=True)
class RetrievalBatch:
    """What one shared batch cost: where a server's retrieval time goes under load."""

    size: int
    """Questions retrieved together."""
    queued_ms: list[float]
    """Each question's wait, from its arrival to its batch's start."""
    stage_ms: dict[str, float]
    """Wall time of each retrieval stage (`Retriever.search_many`'s, and `prompt`); BM25's overlap the
    dense stages'."""


OnBatch = Callable[[RetrievalBatch], None]


@dataclass(slots=True)
class _Waiting:
    question: str
    top_k: int | None
    mode: RetrievalMode | None
    collection: str | None
    prompt_format: PromptFormat
    future: asyncio.Future
    queued_at: float


class RetrievalBatcher:
    """Batches run one after another in one thread, which hands each question's result to its event loop
    and goes straight on to the questions that arrived meanwhile: it never waits for a loop busy with
    requests and the engine's outputs."""

    def __init__(self, prepare_many: PrepareMany, max_batch: int) -> None:
        self._prepare_many = prepare_many
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._lock = threading.Lock()
        self._draining = False
        """Whether a thread is retrieving, or about to: it takes every question queued before it stops."""
        self._starting: asyncio.AbstractEventLoop | None = None
        """The loop that is to start the next thread, until the thread runs."""
        self.on_batch: OnBatch | None = None
        """Called with each finished batch (the server's metrics), in the retrieval thread."""

    async def prepare(
        self,
        question: str,
        top_k: int | None,
        mode: RetrievalMode | None,
        collection: str | None = None,
        prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT,
    ) -> "PreparedQuestion":
        """The question's `PreparedQuestion`; its `retrieve_ms` counts the wait for the batch too."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        waiting = _Waiting(question, top_k, mode, collection, prompt_format, future, time.perf_counter())
        with self._lock:
            self._waiting.append(waiting)
            # A start left to a loop that closed before it ran (one `asyncio.run` per command) never comes.
            start = not self._draining or (self._starting is not None and self._starting.is_closed())
            if start:
                self._draining, self._starting = True, loop
        if start:  # after this turn of the loop, so that the questions asked in it share the first batch
            loop.call_soon(threading.Thread(target=self._drain, name="kotae-retrieval", daemon=True).start)
        return await future

    def _drain(self) -> None:
        with self._lock:
            self._starting = None
        while batch := self._next_batch():
            groups: dict[GroupKey, list[_Waiting]] = defaultdict(list)
            for waiting in batch:
                # Its request was cancelled while it waited, or its loop is gone (one `asyncio.run` per
                # command or test): nobody would read the answer.
                if not waiting.future.done() and not waiting.future.get_loop().is_closed():
                    key = (waiting.collection, waiting.top_k, waiting.mode, waiting.prompt_format)
                    groups[key].append(waiting)
            for key, members in groups.items():
                self._prepare_group(members, key)

    def _next_batch(self) -> list[_Waiting]:
        """The next questions, `max_batch` at most; none when nothing waits, and the thread then stops."""
        with self._lock:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            self._draining = bool(batch)
            return batch

    def _prepare_group(self, members: list[_Waiting], key: GroupKey) -> None:
        collection, top_k, mode, prompt_format = key
        questions = [member.question for member in members]
        times = StageTimes()
        started = time.perf_counter()
        try:
            prepared = self._prepare_many(questions, top_k, mode, collection, prompt_format, times)
            done_at = time.perf_counter()
            if self.on_batch is not None:
                queued_ms = [(started - member.queued_at) * 1000 for member in members]
                stage_ms = {name: sum(samples) for name, samples in times.ms.items()}
                self.on_batch(RetrievalBatch(len(members), queued_ms, stage_ms))
            for member, result in zip(members, prepared, strict=True):
                waited_ms = (done_at - member.queued_at) * 1000
                _settle(member.future, dataclasses.replace(result, retrieve_ms=waited_ms))
        except Exception as error:  # every request of the batch gets the error (bad mode, broken index)
            for member in members:
                _settle(member.future, error=error)


def _settle(
    future: asyncio.Future, result: "PreparedQuestion | None" = None, error: Exception | None = None
) -> None:
    """From the retrieval thread: `future`'s result or error, set in its own event loop's thread unless its
    request was cancelled meanwhile."""

    def set_it() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    # The loop may have closed while its question was retrieved (one `asyncio.run` per command or test).
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(set_it)
