"""Passage store: SQLite, one row per passage (text, document id, BM25 tokens), keyed like the faiss index.

SQLite gives lookups by key or id without loading the corpus into memory, and upserts/removals by id.
A served store is opened read-only and immutable: index directories are never changed in place (updates
write a new directory and swap it in), so no locking is needed while reading."""

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kotae.core.errors import InputError, KotaeError
from kotae.core.passage import Passage

if TYPE_CHECKING:
    from kotae.indexer.shards import PreparedDocument

_SCHEMA = """
CREATE TABLE passages (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- the faiss id; never reused, so a stale id cannot alias
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL                    -- JSON list of BM25 tokens, so BM25 rebuilds skip Sudachi
);
"""
_DOC_ID_INDEX = "CREATE INDEX IF NOT EXISTS passages_doc_id ON passages (doc_id)"
# While a build runs: which shards are stored (committed with their passages, so a resumed build knows
# exactly what it has) and where each document came from (to name both places of a duplicate id).
_BUILD_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_shards (
    number INTEGER PRIMARY KEY,
    source INTEGER NOT NULL,
    documents INTEGER NOT NULL,
    passages INTEGER NOT NULL,
    next_key INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS build_documents (id TEXT PRIMARY KEY, origin TEXT NOT NULL) WITHOUT ROWID;
"""
# SQLite caps the number of bound parameters per statement (32,766 in recent versions).
_BATCH = 10_000


class PassageStore:
    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path) -> "PassageStore":
        connection = sqlite3.connect(path)
        connection.executescript(_SCHEMA)
        connection.execute(_DOC_ID_INDEX)
        return cls(connection, path)

    @classmethod
    def open_build(cls, path: Path) -> "PassageStore":
        """The store of a build in progress, created or reopened to resume. Its document-id index is made
        once, at the end (`finish_build`): that is faster than keeping it up to date row by row."""
        fresh = not path.exists()
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages: bulk inserts touch many
        if fresh:
            connection.executescript(_SCHEMA)
        connection.executescript(_BUILD_SCHEMA)
        connection.commit()
        return cls(connection, path)

    def stored_shards(self) -> dict[int, int]:
        """Of a build in progress: each stored shard's number, with the key that follows its passages."""
        return dict(self._query("SELECT number, next_key FROM build_shards", []))

    def insert_shard(
        self, number: int, first_key: int, documents: Sequence["PreparedDocument"], source: int
    ) -> None:
        """Stores one shard of a build with keys from `first_key` on, and records it, in one transaction
        (durable once this returns). A document id already stored raises KotaeError naming both places."""
        key = first_key
        rows = []
        with self._lock:
            try:
                for document in documents:
                    try:
                        self._db.execute(
                            "INSERT INTO build_documents (id, origin) VALUES (?, ?)",
                            (document.id, document.origin),
                        )
                    except sqlite3.IntegrityError:
                        (earlier,) = self._db.execute(
                            "SELECT origin FROM build_documents WHERE id = ?", (document.id,)
                        ).fetchone()
                        raise KotaeError(
                            f"{document.origin}: document id {document.id!r} already came from {earlier}"
                        ) from None
                    tokens = _json_tokens(document.tokens, len(document.passages))
                    for passage, words in zip(document.passages, tokens, strict=True):
                        rows.append((key, passage.id, document.id, passage.title, passage.text, words))
                        key += 1
                try:
                    self._db.executemany(
                        "INSERT INTO passages (key, id, doc_id, title, text, tokens) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                except sqlite3.IntegrityError as error:
                    raise KotaeError(f"shard {number}: a passage id is taken twice ({error})") from error
                self._db.execute(
                    "INSERT INTO build_shards (number, source, documents, passages, next_key) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (number, source, sum(1 for d in documents if d.passages), key - first_key, key),
                )
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def source_counts(self, sources: int) -> list[tuple[int, int]]:
        """Of a build in progress: (documents, passages) stored from each of its `sources` source files."""
        counts = [(0, 0)] * sources
        for source, documents, passages in self._query(
            "SELECT source, sum(documents), sum(passages) FROM build_shards GROUP BY source", []
        ):
            counts[source] = (documents, passages)
        return counts

    def finish_build(self) -> None:
        """Indexes document ids and drops the build's bookkeeping: the store is then like any other."""
        with self._lock:
            self._db.execute(_DOC_ID_INDEX)
            self._db.executescript("DROP TABLE IF EXISTS build_shards; DROP TABLE IF EXISTS build_documents;")
            self._db.commit()

    @classmethod
    def open(cls, path: Path, writable: bool = False) -> "PassageStore":
        if not path.is_file():
            raise InputError(path, None, "passage store missing: the index is incomplete; rebuild it")
        mode = "rw" if writable else "ro&immutable=1"
        try:
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode={mode}", uri=True, check_same_thread=False
            )
            connection.execute("SELECT key, id, doc_id, title, text, tokens FROM passages LIMIT 1").fetchall()
        except sqlite3.DatabaseError as error:
            raise InputError(path, None, f"passage store unreadable ({error}); rebuild the index") from error
        return cls(connection, path)

    def close(self) -> None:
        self._db.close()

    def insert(self, doc_id: str, passages: Sequence[Passage], tokens: Sequence[str]) -> list[int]:
        """Adds a document's passages with their BM25 tokens (JSON lists); returns their keys. Raises KeyError
        on a passage id already stored."""
        keys = []
        with self._lock:
            for passage, words in zip(passages, _json_tokens(tokens, len(passages)), strict=True):
                try:
                    cursor = self._db.execute(
                        "INSERT INTO passages (id, doc_id, title, text, tokens) VALUES (?, ?, ?, ?, ?)",
                        (
                            passage.id,
                            doc_id,
                            passage.title,
                            passage.text,
                            words,
                        ),
                    )
                except sqlite3.IntegrityError as error:
                    raise KeyError(passage.id) from error
                keys.append(int(cursor.lastrowid))
        return keys

    def keys_of(self, ids: Iterable[str]) -> dict[str, list[int]]:
        """Keys of the passages each id names: a passage id, or a document id (all its chunks)."""
        found: dict[str, list[int]] = {}
        for batch in _batches(list(ids)):
            marks = ",".join("?" * len(batch))
            sql = f"SELECT key, id, doc_id FROM passages WHERE id IN ({marks}) OR doc_id IN ({marks})"
            rows = self._query(f"{sql} ORDER BY key", batch * 2)
            wanted = set(batch)
            for key, passage_id, doc_id in rows:
                for name in {passage_id, doc_id} & wanted:
                    found.setdefault(name, []).append(key)
        return found

    def keys_of_documents(self, doc_ids: Sequence[str]) -> list[int]:
        return sorted(key for keys in self.keys_by_document(doc_ids).values() for key in keys)

    def keys_by_document(self, doc_ids: Sequence[str]) -> dict[str, list[int]]:
        """The passage keys of each document stored, in key order; documents not stored are left out."""
        found: dict[str, list[int]] = {}
        for batch in _batches(list(doc_ids)):
            marks = ",".join("?" * len(batch))
            sql = f"SELECT doc_id, key FROM passages WHERE doc_id IN ({marks}) ORDER BY key"
            for doc_id, key in self._query(sql, batch):
                found.setdefault(doc_id, []).append(key)
        return found

    def delete(self, keys: Sequence[int]) -> None:
        with self._lock:
            for batch in _batches([int(key) for key in keys]):
                self._db.execute(f"DELETE FROM passages WHERE key IN ({','.join('?' * len(batch))})", batch)

    def commit(self) -> None:
        with self._lock:
            self._db.commit()

    def passages(self, keys: Sequence[int]) -> list[Passage]:
        """In the order of `keys`; a key not stored raises KeyError."""
        return [Passage(*row) for row in self._rows("id, title, text", keys)]

    def ids(self, keys: Sequence[int]) -> list[str]:
        """The passage ids of `keys`, in their order, without reading the passages; a key not stored
        raises KeyError."""
        return [passage_id for (passage_id,) in self._rows("id", keys)]

    def passage(self, passage_id: str) -> Passage | None:
        rows = self._query("SELECT id, title, text FROM passages WHERE id = ?", [passage_id])
        return Passage(*rows[0]) if rows else None

    def count(self) -> int:
        return self._query("SELECT count(*) FROM passages", [])[0][0]

    def document_count(self) -> int:
        return self._query("SELECT count(DISTINCT doc_id) FROM passages", [])[0][0]

    def keys(self) -> np.ndarray:
        return np.array(
            [key for (key,) in self._query("SELECT key FROM passages ORDER BY key", [])], np.int64
        )

    def iter_passages(self, keys: Sequence[int], batch: int) -> Iterator[list[Passage]]:
        """The passages `keys` in blocks of `batch`, for embedding without holding the corpus in memory."""
        for start in range(0, len(keys), batch):
            yield self.passages(keys[start : start + batch])

    def tokens_in_range(self, first_key: int, end_key: int) -> tuple[np.ndarray, list[list[str]]]:
        """(keys, BM25 token lists) of the passages with first_key ≤ key < end_key, in key order."""
        rows = self._query(
            "SELECT key, tokens FROM passages WHERE key >= ? AND key < ? ORDER BY key", [first_key, end_key]
        )
        return np.array([key for key, _ in rows], np.int64), [json.loads(tokens) for _, tokens in rows]

    def max_key(self) -> int:
        """The largest passage key (0 when empty)."""
        [(largest,)] = self._query("SELECT COALESCE(MAX(key), 0) FROM passages", [])
        return int(largest)

    def _rows(self, columns: str, keys: Sequence[int]) -> list[list]:
        """The `columns` of the passages `keys`, in their order; a key not stored raises KeyError. Each
        batch comes back as one JSON row: Python's sqlite3 lets go of the GIL and takes it back for every
        row it steps, and while another thread runs Python (vLLM's output handling beside an eval's
        retrieval) each retake can wait out the interpreter's switch interval, so a batch's thousands of
        rows took seconds where one row takes one wait."""
        keys = [int(key) for key in keys]  # numpy integers do not bind as SQLite parameters
        by_key: dict[int, list] = {}
        for batch in _batches(keys):
            marks = ",".join("?" * len(batch))
            sql = f"SELECT json_group_array(json_array(key, {columns})) FROM passages WHERE key IN ({marks})"
            [(rows,)] = self._query(sql, batch)
            by_key.update((row[0], row[1:]) for row in json.loads(rows))
        return [by_key[key] for key in keys]

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _json_tokens(tokens: Sequence[str], passages: int) -> Sequence[str]:
    """A passage's BM25 tokens as stored; an index without BM25 stores empty lists."""
    return tokens or ["[]"] * passages
