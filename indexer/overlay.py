"""Documents written while kotae serves, kept beside a collection's built index and searched with it.

A built index is immutable; the documents API writes here instead: a SQLite file beside the index folder
(`<index>.documents.sqlite`), so a rebuild of the index from its sources keeps them. Each document here
overrides the built index's document of the same id: an upsert replaces it, a delete hides it.

Every write is one SQLite transaction, committed to disk (WAL, `synchronous=FULL`) before it returns.
Searches read an immutable `OverlaySnapshot`; a write builds the next snapshot and swaps it in whole, so a
query sees a document entirely before or entirely after a write, never half of it. The snapshot is
searched exhaustively (vectors by one matrix product, words through an in-memory inverted index), which
suits the thousands of documents a team changes between rebuilds.
"""

import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kotae.core.errors import InputError
from kotae.core.passage import Passage

OVERLAY_SUFFIX = ".documents.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    metadata TEXT NOT NULL,          -- JSON object
    deleted INTEGER NOT NULL,        -- 1: hides the built index's document of this id
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS passages (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused; searched as -key beside the index's keys
    doc_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,            -- JSON list of BM25 words
    vector BLOB NOT NULL             -- float32, the embedder's dimension
);
CREATE INDEX IF NOT EXISTS passages_doc_id ON passages (doc_id);
"""


def overlay_path(index_dir: Path) -> Path:
    return index_dir.with_name(index_dir.name + OVERLAY_SUFFIX)


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document ready to store: chunked, embedded and tokenized."""

    id: str
    title: str
    metadata: dict[str, object]
    passages: list[Passage]
    tokens: list[list[str]]
    """Per passage, its BM25 words."""
    vectors: np.ndarray
    """Per passage, its embedding."""


@dataclass(frozen=True, slots=True)
class OverlayDocument:
    id: str
    title: str
    metadata: dict[str, object]
    updated_at: datetime
    passages: list[Passage]


@dataclass(frozen=True, slots=True)
class OverlaySnapshot:
    """The overlay at one moment; never changed once made."""

    version: int
    decided: frozenset[str]
    """Ids of every document the overlay holds or deleted: the built index's documents of these ids are
    not served."""
    keys: np.ndarray
    """Search key (negative) of each stored passage, in the order of `vectors`."""
    vectors: np.ndarray
    passages: dict[int, Passage]
    words: dict[int, list[str]]
    """BM25 words of each passage."""
    postings: dict[str, dict[int, int]]
    """Word → {key: occurrences}."""
    document_keys: dict[str, tuple[int, ...]]
    """Keys of each stored document's passages."""
    documents: dict[str, OverlayDocument]
    """Stored (not deleted) documents by id."""
    updated_at: datetime | None
    """The last write."""

    def search_dense(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Per query vector: (key, cosine) of the k nearest stored passages, best first."""
        if not len(self.keys) or k <= 0:
            return [[] for _ in queries]
        scores = queries @ self.vectors.T
        rankings = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:k]
            rankings.append([(int(self.keys[i]), float(row[i])) for i in best])
        return rankings

    def search_bm25(
        self,
        words: list[str],
        k: int,
        frequencies: dict[str, int],
        documents: int,
        average_length: float,
        k1: float,
        b: float,
    ) -> list[tuple[int, float]]:
        """(key, score) best first, scored as if the passages had been in the built index when it was built
        (Lucene's formula with the index's passage count, average length and document frequencies), so
        that a copy of a built passage scores as the original. A word the index does not know counts its
        passages here among all."""
        scores: dict[int, float] = {}
        for word in words:  # a repeated query word counts once per repetition, as in the index
            postings = self.postings.get(word)
            if not postings:
                continue
            total, frequency = documents, frequencies.get(word, 0)
            if not frequency:
                total, frequency = documents + len(self.keys), len(postings)
            idf = math.log(1 + (total - frequency + 0.5) / (frequency + 0.5))
            for key, occurrences in postings.items():
                norm = k1 * (1 - b + b * len(self.words[key]) / max(average_length, 1e-9))
                scores[key] = scores.get(key, 0.0) + idf * occurrences / (occurrences + norm)
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


class DocumentOverlay:
    """The overlay file of one collection, opened for reading and writing. Thread-safe: writes are
    serialized, reads take `snapshot` once and use only it."""

    @classmethod
    def beside(cls, index_dir: Path, dimension: int) -> "DocumentOverlay | None":
        """The overlay of the index in `index_dir`, if documents were ever written to it."""
        path = overlay_path(index_dir)
        return cls(path, dimension) if path.is_file() else None

    def __init__(self, path: Path, dimension: int) -> None:
        """Opens the file, creating it if needed."""
        self.path = path
        self.dimension = dimension
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise InputError(path, None, f"document store unreadable ({error})") from error
        self._lock = threading.Lock()
        self.snapshot = self._load()

    def close(self) -> None:
        self._db.close()

    def upsert(self, documents: Sequence[NewDocument]) -> None:
        """Store the documents, each replacing any earlier version; on return they are on disk and
        searched."""
        now = datetime.now(UTC)
        with self._lock:
            rows: list[tuple[int, str, Passage, list[str], np.ndarray]] = []
            with self._transaction():
                for document in documents:
                    self._db.execute("DELETE FROM passages WHERE doc_id = ?", (document.id,))
                    self._db.execute(
                        "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, 0, ?)",
                        (
                            document.id,
                            document.title,
                            json.dumps(document.metadata, ensure_ascii=False),
                            now.isoformat(),
                        ),
                    )
                    for passage, words, vector in zip(
                        document.passages, document.tokens, document.vectors, strict=True
                    ):
                        cursor = self._db.execute(
                            "INSERT INTO passages (doc_id, id, title, text, tokens, vector) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                document.id,
                                passage.id,
                                passage.title,
                                passage.text,
                                json.dumps(words, ensure_ascii=False),
                                np.asarray(vector, np.float32).tobytes(),
                            ),
                        )
                        rows.append((-int(cursor.lastrowid), document.id, passage, words, vector))
            stored = {
                d.id: OverlayDocument(d.id, d.title, d.metadata, now, list(d.passages)) for d in documents
            }
            self.snapshot = _next(self.snapshot, {d.id for d in documents}, rows, stored, now)

    def delete(self, doc_id: str) -> None:
        """Hide the document: its passages here go, and the built index's document of this id is no
        longer served."""
        now = datetime.now(UTC)
        with self._lock:
            with self._transaction():
                self._db.execute("DELETE FROM passages WHERE doc_id = ?", (doc_id,))
                self._db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, '', '{}', 1, ?)", (doc_id, now.isoformat())
                )
            self.snapshot = _next(self.snapshot, {doc_id}, [], {}, now)

    def reread(self) -> None:
        """`snapshot` as the file holds it now, with what another process wrote since this one opened it
        (a new version: views cached by version are made again)."""
        with self._lock:
            self.snapshot = replace(self._load(), version=self.snapshot.version + 1)

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    def _load(self) -> OverlaySnapshot:
        documents = self._db.execute("SELECT doc_id, title, metadata, deleted, updated_at FROM documents")
        decided, stored, last = set(), {}, None
        for doc_id, title, metadata, deleted, updated_at in documents.fetchall():
            decided.add(doc_id)
            last = max(last or updated_at, updated_at)
            if not deleted:
                stored[doc_id] = OverlayDocument(
                    doc_id, title, json.loads(metadata), datetime.fromisoformat(updated_at), []
                )
        rows = []
        for key, doc_id, passage_id, title, text, tokens, vector in self._db.execute(
            "SELECT key, doc_id, id, title, text, tokens, vector FROM passages ORDER BY key"
        ).fetchall():
            passage = Passage(passage_id, title, text)
            stored[doc_id].passages.append(passage)
            rows.append((-key, doc_id, passage, json.loads(tokens), np.frombuffer(vector, np.float32)))
        empty = OverlaySnapshot(
            version=0,
            decided=frozenset(),
            keys=np.zeros(0, np.int64),
            vectors=np.zeros((0, self.dimension), np.float32),
            passages={},
            words={},
            postings={},
            document_keys={},
            documents={},
            updated_at=None,
        )
        return _next(empty, decided, rows, stored, datetime.fromisoformat(last) if last else None)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error: all of a write reaches the file, or none."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if kind else "COMMIT")


def _next(
    previous: OverlaySnapshot,
    changed: set[str],
    rows: list[tuple[int, str, Passage, list[str], np.ndarray]],
    stored: dict[str, OverlayDocument],
    updated_at: datetime | None,
) -> OverlaySnapshot:
    """`previous` with the documents `changed` replaced by `rows` (their new passages) and `stored`. Only
    the words of removed or added passages are touched."""
    gone = {key for doc_id in changed for key in previous.document_keys.get(doc_id, ())}
    keep = ~np.isin(previous.keys, np.fromiter(gone, np.int64, len(gone)))
    dimension = previous.vectors.shape[1]
    words = {key: w for key, w in previous.words.items() if key not in gone}
    words.update({row[0]: row[3] for row in rows})
    touched = {word for key in gone for word in previous.words[key]} | {w for row in rows for w in row[3]}
    postings = dict(previous.postings)
    for word in touched:
        entry = {key: n for key, n in previous.postings.get(word, {}).items() if key not in gone}
        postings[word] = entry
    for key, _, _, passage_words, _ in rows:
        for word in passage_words:
            postings[word][key] = postings[word].get(key, 0) + 1
    for word in touched:
        if not postings[word]:
            del postings[word]
    document_keys = {d: keys for d, keys in previous.document_keys.items() if d not in changed}
    for key, doc_id, *_ in rows:
        document_keys[doc_id] = (*document_keys.get(doc_id, ()), key)
    documents = {d: doc for d, doc in previous.documents.items() if d not in changed}
    documents.update(stored)
    passages = {key: p for key, p in previous.passages.items() if key not in gone}
    passages.update({row[0]: row[2] for row in rows})
    return OverlaySnapshot(
        version=previous.version + 1,
        decided=previous.decided | changed,
        keys=np.concatenate([previous.keys[keep], np.array([row[0] for row in rows], np.int64)]),
        vectors=np.concatenate(
            [previous.vectors[keep], np.array([row[4] for row in rows], np.float32).reshape(-1, dimension)]
        ),
        passages=passages,
        words=words,
        postings=postings,
        document_keys=document_keys,
        documents=documents,
        updated_at=updated_at,
    )
