"""`kotae serve`'s retrieval in a process of its own.

In the server, the thread that ranks the shared retrieval batches shares the interpreter with the event loop
that carries every request and the engine's outputs, and each waits for the other. `SearchProcess` opens
the collections again in a spawned process and ranks each batch there; the prompts are still written here.
The server's own collections keep taking the writes (upserts, deletes, reloads) and serving documents;
after each write they tell the process, which reads that collection from disk again before the write
returns, so a question asked after it finds what it wrote.
"""

import pickle
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from kotae.core.config import RetrievalMode, Settings
from kotae.core.errors import KotaeError
from kotae.rag.child_process import spawn, stop
from kotae.rag.collections import Collections
from kotae.rag.retriever import Retrieval
from kotae.rag.stage_times import StageTimes

OpenCollections = Callable[[Settings], Collections]
"""What opens the collections in the process (`kotae.runtime.open_collections`): a module-level function,
passed by reference to the spawned process."""


class SearchProcess:
    """A spawned process holding its own copy of the collections: one request at a time, from any thread."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self._process = process
        self._connection = connection
        self._lock = threading.Lock()
        self._ready = False

    @classmethod
    def start(cls, open_collections: OpenCollections, settings: Settings) -> "SearchProcess":
        """Spawn the process; it opens the collections while the caller goes on (`wait_ready`)."""
        return cls(*spawn(_serve, (open_collections, settings), "kotae-search"))

    def wait_ready(self) -> None:
        """Block until the collections are open; raises the process's error if it could not open them."""
        with self._lock:
            if not self._ready:
                self._receive()
                self._ready = True

    def search_many(
        self,
        collection: str | None,
        questions: Sequence[str],
        top_k: int,
        mode: RetrievalMode | None,
        times: StageTimes,
    ) -> list[Retrieval]:
        """`Retriever.search_many` of `collection` (None: the default one), ranked in the process; its stages
        are added to `times`."""
        found, stage_ms = self._call("search", (collection, list(questions), top_k, mode))
        times.merge(stage_ms)
        return found

    def refresh(self, name: str) -> None:
        """Have the process read `name` from disk again (`Collections.refresh`) before its next search."""
        self._call("refresh", name)

    def close(self) -> None:
        """Stop the process (`child_process.stop`)."""
        stop(self._process, self._connection)

    def _call(self, kind: str, argument: object) -> Any:
        self.wait_ready()
        with self._lock:
            self._connection.send((kind, argument))
            return self._receive()

    def _receive(self) -> Any:
        try:
            kind, value = self._connection.recv()
        except (EOFError, OSError):
            raise KotaeError(f"the search process ended (exit code {self._process.exitcode})") from None
        if kind == "error":
            raise value
        return value


def _serve(open_collections: OpenCollections, settings: Settings, connection: Connection) -> None:
    """The process's main: open the collections, then answer requests until the connection closes."""
    try:
        collections = open_collections(settings)
        default = collections.default
        if default.embeds_questions():  # its first call loads the kernels: at start, not in a request
            default.embedder.embed_queries(["質問"])
    except Exception as error:
        connection.send(("error", KotaeError(f"the search process could not start: {error}")))
        return
    connection.send(("ready", None))
    while True:
        try:
            kind, argument = connection.recv()
        except EOFError:
            return
        try:
            reply = ("done", _answer(collections, kind, argument))
        except Exception as error:
            reply = ("error", _portable(error))
        try:
            connection.send(reply)
        except OSError:  # the server closed its end meanwhile
            return


def _answer(collections: Collections, kind: str, argument: Any) -> object:
    if kind == "refresh":
        collections.refresh(argument)
        return None
    collection, questions, top_k, mode = argument
    times = StageTimes()
    found = collections.get(collection).search_many(questions, top_k, mode, times=times)
    return found, times.ms


def _portable(error: Exception) -> Exception:
    """`error` itself when it survives pickling (the server maps kotae's errors to HTTP statuses by type),
    else a `KotaeError` that says what it was."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return KotaeError(f"{type(error).__name__}: {error}")
    return error
