"""A build's unit of work: a shard of records, cleaned, chunked and tokenized in a worker process.

Shards are cut deterministically from the sources (a fixed number of records, or a fixed run of a multistream
dump's bz2 streams), so a build run again with the same arguments cuts the same shards and can skip the
ones it has already finished."""

import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kotae.core.jsonl import ReadPosition
from kotae.core.passage import Passage
from kotae.indexer.batching import TokenIds
from kotae.indexer.chunking import chunk_document, indexed_text
from kotae.indexer.embedder import TextTokenizer
from kotae.indexer.sources import Record, bz2_streams, read_records, read_stream_records, to_document
from kotae.indexer.tokenizer import SudachiTokenizer, TokenizerSettings

SHARD_RECORDS = 4000
"""Records per shard of a source read in order: enough to keep the embedder's batches full, few enough
that a killed build loses little."""
SHARD_STREAM_BYTES = 2 << 20
"""Compressed bytes per shard of a multistream dump (a few thousand articles)."""


@dataclass(frozen=True, slots=True)
class ShardTask:
    """What a worker needs to prepare one shard: its records, or where its bz2 streams lie."""

    number: int
    """Position among all shards of the build: shards are stored in this order."""
    source: int
    """Index of the source file in the build's list."""
    end_fraction: float
    """How far through its source this shard ends (0–1), for progress."""
    records: tuple[Record, ...] = ()
    stream_range: tuple[Path, int, int] | None = None
    """(dump, first byte, end byte) of whole bz2 streams, read and parsed by the worker itself."""


@dataclass(slots=True)
class PreparedDocument:
    id: str
    origin: str
    passages: list[Passage]
    tokens: list[str] = field(default_factory=list)
    """Per passage, its BM25 tokens as a JSON list (what the store keeps); empty without BM25."""


@dataclass(slots=True)
class PreparedShard:
    number: int
    source: int
    end_fraction: float
    documents: list[PreparedDocument]
    token_ids: TokenIds | None = None
    """The embedder's token ids of `texts()`, when the worker was given its tokenizer."""

    def texts(self) -> list[str]:
        """What the embedder reads, passage by passage in store order."""
        return [indexed_text(p) for document in self.documents for p in document.passages]


def plan_shards(
    sources: Sequence[Path], shard_records: int = SHARD_RECORDS, stream_bytes: int = SHARD_STREAM_BYTES
) -> Iterator[ShardTask]:
    """The shards of `sources`, in order. A multistream dump is planned from its stream offsets alone; other
    files are read here, record by record (cleaning is left to the workers)."""
    number = 0
    for source, path in enumerate(sources):
        streams = bz2_streams(path)
        if streams is not None:
            size = streams[-1]
            start = 0
            for offset in streams[1:]:
                if offset - start >= stream_bytes or offset == size:
                    yield ShardTask(number, source, offset / size, stream_range=(path, start, offset))
                    number, start = number + 1, offset
            continue
        position = ReadPosition()
        batch: list[Record] = []
        for record in read_records(path, position):
            batch.append(record)
            if len(batch) == shard_records:
                yield ShardTask(number, source, position.fraction, records=tuple(batch))
                number, batch = number + 1, []
        if batch:
            yield ShardTask(number, source, 1.0, records=tuple(batch))
            number += 1


_tokenizer: SudachiTokenizer | None = None
_passage_tokenizer: TextTokenizer | None = None


def start_worker(
    tokenizer_settings: TokenizerSettings | None, passage_tokenizer: TextTokenizer | None = None
) -> None:
    """Loads what preparing shards needs: one Sudachi dictionary per process for BM25, and the embedder's
    tokenizer, whose work is then done here rather than in the process that runs the model."""
    global _tokenizer, _passage_tokenizer
    _tokenizer = SudachiTokenizer(tokenizer_settings) if tokenizer_settings else None
    _passage_tokenizer = passage_tokenizer


def start_worker_process(
    tokenizer_settings: TokenizerSettings | None, passage_tokenizer: TextTokenizer | None = None
) -> None:
    """`start_worker` in a worker process of its own."""
    # One thread per worker: the tokenizers library would otherwise start a pool of every core's threads
    # in each of the (one per core) workers, which then spin against each other.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    start_worker(tokenizer_settings, passage_tokenizer)
    _end_with_parent()
    # Ctrl-C is the parent's to handle: it keeps the stored shards so that the same command resumes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's embedder uses every core too; the workers yield to it.
    os.nice(5)


def prepare_shard(task: ShardTask, chunk_chars: int) -> PreparedShard:
    """Cleans, chunks and tokenizes one shard (in a worker process)."""
    records = read_stream_records(*task.stream_range) if task.stream_range else task.records
    documents = prepare_documents(records, chunk_chars, _tokenizer)
    shard = PreparedShard(task.number, task.source, task.end_fraction, documents)
    if _passage_tokenizer is not None:
        shard.token_ids = _passage_tokenizer(shard.texts())
    return shard


def prepare_documents(
    records: Iterator[Record] | Sequence[Record], chunk_chars: int, tokenizer: SudachiTokenizer | None
) -> list[PreparedDocument]:
    """Records as chunked passages with their BM25 tokens. A document left with no text keeps its entry
    (with no passages): an update must still drop its old passages."""
    prepared = []
    for record in records:
        document = to_document(record)
        passages = chunk_document(document, chunk_chars)
        tokens = (
            [json.dumps(tokenizer.tokenize(indexed_text(p)), ensure_ascii=False) for p in passages]
            if tokenizer
            else []
        )
        prepared.append(PreparedDocument(document.id, document.origin, passages, tokens))
    return prepared


def _end_with_parent() -> None:
    """Ends this worker once the build process is gone, even killed by SIGKILL: a worker blocked on its task
    queue would otherwise wait forever. (Linux's parent-death signal would follow the thread that started
    the worker, not the process.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="kotae-parent-watch", daemon=True).start()
