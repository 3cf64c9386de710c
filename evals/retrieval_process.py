"""The in-process eval's retrieval in a process of its own.

Beside a vLLM engine, the eval's retrieval shares this process's interpreter with the event loop that
submits the engine's requests and takes its outputs: each waits for the other, and both the retrieval and
the engine's feed slow down. `RetrievalProcess` opens the default collection's retriever in a spawned
process (`kotae.runtime.open_retriever`, as the eval's own pipeline opens it) and runs a run's whole
retrieval there, batch after batch, sending each batch's retrievals back as soon as they are ranked. The
prompts are still written here, by the pipeline that asks the engine.
"""

import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.rag.child_process import spawn, stop
from kotae.rag.retriever import Retrieval, Retriever
from kotae.rag.stage_times import StageTimes


@dataclass(frozen=True, slots=True)
class RetrievalJob:
    """A run's retrieval: `questions` ranked `depth` deep, their `top_k` read, in `batches`."""

    questions: Sequence[str]
    excluded_titles: Sequence[Collection[str]] | None
    """Per question, the titles searched as if absent (an unanswerable question's gold article)."""
    top_k: int
    depth: int
    batches: Sequence[slice]


@dataclass(frozen=True, slots=True)
class RetrievedBatch:
    retrievals: list[Retrieval]
    retrieve_ms: float
    """The batch's ranking time per question."""
    stage_ms: dict[str, list[float]]
    """The batch's `Retriever.search_many` stages (and `embed` with the first: every question at once)."""


class RetrievalProcess:
    """A spawned process holding the default collection's retriever: one job at a time."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self._process = process
        self._connection = connection
        self._ready = False

    @classmethod
    def start(cls, settings: Settings) -> "RetrievalProcess":
        """Spawn the process; it opens the retriever while the caller goes on (`wait_ready`)."""
        return cls(*spawn(_serve, (settings,), "kotae-retrieval"))

    def wait_ready(self) -> None:
        """Block until the retriever is open; raises the process's error if it could not open it."""
        if not self._ready:
            self._receive()
            self._ready = True

    def search_batches(self, job: RetrievalJob) -> Iterator[RetrievedBatch]:
        """Each batch's retrievals in order, as the process ranks them. A job left part-way leaves the
        process with replies no later job may read: `close` it."""
        self.wait_ready()
        self._connection.send(job)
        for _ in job.batches:
            yield self._receive()

    @property
    def exitcode(self) -> int | None:
        """The process's exit code once it has ended; None while it runs."""
        return self._process.exitcode

    def close(self) -> None:
        """Stop the process (`child_process.stop`)."""
        stop(self._process, self._connection)

    def _receive(self) -> RetrievedBatch:
        try:
            kind, value = self._connection.recv()
        except EOFError:
            raise KotaeError(f"the eval's retrieval process ended (exit code {self.exitcode})") from None
        if kind == "error":
            raise KotaeError(f"the eval's retrieval process failed: {value}")
        return value


def _serve(settings: Settings, connection: Connection) -> None:
    """The process's main: open the retriever, then answer jobs until the connection closes."""
    from kotae.runtime import open_retriever

    try:
        retriever = open_retriever(settings)
        if retriever.embeds_questions():  # its first call loads the kernels: at start, not in a job
            retriever.embedder.embed_queries(["質問"])
    except Exception as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", None))
    while True:
        try:
            job: RetrievalJob = connection.recv()
        except EOFError:
            return
        try:
            for batch in search_job(retriever, job):
                connection.send(("batch", batch))
        except Exception as error:
            try:
                connection.send(("error", f"{type(error).__name__}: {error}"))
            except OSError:  # the eval closed its end part-way through the job
                return


def search_job(retriever: Retriever, job: RetrievalJob) -> Iterator[RetrievedBatch]:
    """`job` on `retriever`, wherever it runs: every question embedded first, in one call, while the GPU is
    still idle (each batch's embedding would wait for the engine's steps), then the batches' rankings one
    after another."""
    times = StageTimes()
    vectors = None
    if retriever.embeds_questions():
        with times.stage("embed"):
            vectors = retriever.embedder.embed_queries(list(job.questions))
    for batch in job.batches:
        started = time.perf_counter()
        questions = job.questions[batch]
        found = retriever.search_many(
            questions,
            job.top_k,
            excluded_titles=None if job.excluded_titles is None else job.excluded_titles[batch],
            times=times,
            query_vectors=None if vectors is None else vectors[batch],
            ranked_depth=job.depth,
        )
        retrieve_ms = (time.perf_counter() - started) * 1000 / len(questions)
        yield RetrievedBatch(found, retrieve_ms, times.ms)
        times = StageTimes()
