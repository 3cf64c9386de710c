"""An index directory opened for serving: validated, searched densely or by BM25, passages looked up;
with the documents written through the API since it was built (`overlay.py`) searched beside it."""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from kotae.core.errors import InputError, KotaeError
from kotae.core.passage import Hit, Passage
from kotae.indexer.bm25 import Bm25Index
from kotae.indexer.dense import DenseIndex
from kotae.indexer.layout import BM25_DIR, DENSE_FILE, STORE_FILE
from kotae.indexer.manifest import Manifest, read_manifest
from kotae.indexer.overlay import DocumentOverlay, OverlayDocument, OverlaySnapshot
from kotae.indexer.store import PassageStore
from kotae.indexer.tokenizer import SudachiTokenizer

KeyRanking = list[tuple[int, float]]
"""(passage key, score) pairs, best first: a ranking before its passages are read."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IndexedDocument:
    """A document as served: from the built index, or written through the API (`overlay`)."""

    id: str
    title: str
    passages: list[Passage]
    written: OverlayDocument | None
    """Set when the API wrote it (with its metadata and time); None for a document of the built index."""


class Index:
    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        store: PassageStore,
        dense: DenseIndex,
        bm25: Bm25Index | None,
        overlay: DocumentOverlay | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.overlay = overlay
        self._store = store
        self._dense = dense
        self._bm25 = bm25
        # Queries are cut into words exactly as the passages were when the index was built.
        self._tokenizer = SudachiTokenizer(manifest.bm25.tokenizer) if manifest.bm25 else None
        self._hidden: tuple[int, frozenset[int], int] = (0, frozenset(), 0)
        self._hidden_lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path, gpu: bool = True, overlay: DocumentOverlay | None = None) -> "Index":
        """Raises KotaeError naming the file when the index is missing, incomplete or damaged.
        `gpu`: serve the faiss index from a GPU when faiss has CUDA support and sees one. `overlay`: the
        documents written through the API, searched with the index and overriding its documents; unset,
        the overlay file beside the index is opened if there is one."""
        manifest = read_manifest(directory)
        store = PassageStore.open(directory / STORE_FILE)
        try:
            # Mapped: the search process (`kotae.rag.search_process`) and the server share its vectors.
            dense = DenseIndex.load(directory / DENSE_FILE, manifest.dense, gpu, mapped=True)
            bm25 = Bm25Index.load(directory / BM25_DIR) if manifest.bm25 else None
            _check_consistent(directory, manifest, store, dense, bm25)
            overlay = overlay or DocumentOverlay.beside(directory, manifest.embedder.dimension)
        except BaseException:
            store.close()
            raise
        return cls(directory, manifest, store, dense, bm25, overlay)

    def close(self) -> None:
        self._store.close()

    def __len__(self) -> int:
        return self.counts()[0]

    def counts(self) -> tuple[int, int]:
        """(passages, documents) served: the built index's, less those the overlay overrides, plus the
        overlay's."""
        view = self.view()
        if view.snapshot is None:
            return self.manifest.count, self.manifest.documents
        hidden_documents = self._hidden[2]
        return (
            self.manifest.count - len(view.hidden) + len(view.snapshot.keys),
            self.manifest.documents - hidden_documents + len(view.snapshot.documents),
        )

    def tune_dense_search(self, **params: int) -> None:
        """Sets the dense index's search-time parameters (nprobe, rerank, ef_search) in place, for
        recall/latency sweeps; build parameters need a rebuild (`DenseIndex.tune_search`)."""
        self._dense.tune_search(self._dense.spec.model_copy(update=params))

    @property
    def has_bm25(self) -> bool:
        return self._bm25 is not None

    @property
    def tokenizer(self) -> SudachiTokenizer | None:
        """How this index cuts text into BM25 words (None without BM25)."""
        return self._tokenizer

    def view(self) -> "IndexView":
        """The index with the overlay as it is now: a query batch reads one view throughout, so a write
        that lands meanwhile is seen entirely or not at all."""
        snapshot = self.overlay.snapshot if self.overlay is not None else None
        return IndexView(self, snapshot, self._hidden_keys(snapshot))

    def search_dense(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Per query vector: the k passages of highest cosine similarity, best first."""
        view = self.view()
        return view.hits(view.rank_dense(query_vectors, k))

    def search_bm25(self, questions: Sequence[str], k: int) -> list[list[Hit]]:
        """Per question: up to k passages by BM25 score, best first (only passages sharing a word)."""
        view = self.view()
        return view.hits(view.rank_bm25(questions, k))

    def passage(self, passage_id: str) -> Passage | None:
        return self._store.passage(passage_id)

    def document(self, doc_id: str) -> IndexedDocument | None:
        """The document as served now; None when there is none of this id (or it was deleted)."""
        snapshot = self.overlay.snapshot if self.overlay is not None else None
        if snapshot is not None and doc_id in snapshot.decided:
            written = snapshot.documents.get(doc_id)
            if written is None:
                return None
            return IndexedDocument(doc_id, written.title, written.passages, written)
        keys = self._store.keys_by_document([doc_id]).get(doc_id)
        if not keys:
            return None
        passages = self._store.passages(keys)
        return IndexedDocument(doc_id, passages[0].title, passages, None)

    def _hidden_keys(self, snapshot: OverlaySnapshot | None) -> frozenset[int]:
        """Keys of the built index's passages whose documents the overlay overrides (looked up once per
        overlay version)."""
        if snapshot is None or not snapshot.decided:
            return frozenset()
        with self._hidden_lock:
            version, hidden, _ = self._hidden
            if version != snapshot.version:
                found = self._store.keys_by_document(sorted(snapshot.decided))
                hidden = frozenset(key for keys in found.values() for key in keys)
                self._hidden = (snapshot.version, hidden, len(found))
            return hidden


@dataclass(frozen=True, slots=True)
class IndexView:
    """One consistent reading of an index and its overlay. Overlay passages have negative keys."""

    index: Index
    snapshot: OverlaySnapshot | None
    hidden: frozenset[int]

    def rank_dense(self, query_vectors: np.ndarray, k: int, exhaustive: bool = False) -> list[KeyRanking]:
        """Per query vector: (key, cosine) of the k nearest passages, best first, no passage read.
        `exhaustive`: IVF-PQ scans every exact vector instead of its probed lists (the recall reference
        for benchmarks; slow)."""
        dense = self.index._dense
        wanted = k + len(self.hidden)
        built = (
            dense.search_exhaustively(query_vectors, wanted)
            if exhaustive
            else dense.search(query_vectors, wanted)
        )
        if self.snapshot is None:
            return built
        written = self.snapshot.search_dense(query_vectors, k)
        return [self._merged(b, w, k) for b, w in zip(built, written, strict=True)]

    def rank_bm25(self, questions: Sequence[str], k: int) -> list[KeyRanking]:
        """Per question: (key, BM25 score) best first, no passage read."""
        return self.rank_words(self.query_words(questions), k)

    def query_words(self, questions: Sequence[str]) -> list[list[str]]:
        """Each question's BM25 words, tokenized as the index's passages were (the batch in parallel)."""
        return self._bm25_parts()[1].tokenize_many(questions)

    def rank_words(self, queries: Sequence[list[str]], k: int) -> list[KeyRanking]:
        """`rank_bm25` of questions already turned into words (`query_words`), searched in one batch."""
        bm25 = self._bm25_parts()[0]
        built_rankings = bm25.search_many(queries, k + len(self.hidden))
        if self.snapshot is None:
            return built_rankings
        rankings = []
        for words, built in zip(queries, built_rankings, strict=True):
            written = self.snapshot.search_bm25(
                words,
                k,
                bm25.document_frequencies(words),
                len(bm25),
                bm25.average_length,
                bm25.params.k1,
                bm25.params.b,
            )
            rankings.append(self._merged(built, written, k))
        return rankings

    def _bm25_parts(self) -> tuple[Bm25Index, SudachiTokenizer]:
        bm25, tokenizer = self.index._bm25, self.index._tokenizer
        if bm25 is None or tokenizer is None:
            raise KotaeError(
                f"index {self.index.directory} has no BM25 index (built with --no-bm25): use dense retrieval"
            )
        return bm25, tokenizer

    def hits(self, rankings: Sequence[KeyRanking]) -> list[list[Hit]]:
        """The passages of (key, score) rankings; the built index's are read in one query for all."""
        passages = self._by_key(rankings, self.index._store.passages, lambda passage: passage)
        return [[Hit(passages[key], score) for key, score in ranking] for ranking in rankings]

    def passage_ids(self, rankings: Sequence[KeyRanking]) -> list[list[str]]:
        """The passage ids of (key, score) rankings, read in one query for all, without their text."""
        ids = self._by_key(rankings, self.index._store.ids, lambda passage: passage.id)
        return [[ids[key] for key, _ in ranking] for ranking in rankings]

    def _by_key(
        self,
        rankings: Sequence[KeyRanking],
        read_built: Callable[[list[int]], list[T]],
        of_written: Callable[[Passage], T],
    ) -> dict[int, T]:
        """Each key of `rankings` mapped to what `read_built` reads for the built index's keys (in one call)
        or `of_written` makes of the overlay's passage (negative keys)."""
        keys = [key for ranking in rankings for key, _ in ranking]
        built = [key for key in keys if key >= 0]
        found = dict(zip(built, read_built(built), strict=True))
        if self.snapshot is not None:
            found.update((key, of_written(self.snapshot.passages[key])) for key in keys if key < 0)
        return found

    def _merged(self, built: KeyRanking, written: KeyRanking, k: int) -> KeyRanking:
        kept = [(key, score) for key, score in built if key not in self.hidden]
        return sorted(kept + written, key=lambda pair: -pair[1])[:k]


def _check_consistent(
    directory: Path, manifest: Manifest, store: PassageStore, dense: DenseIndex, bm25: Bm25Index | None
) -> None:
    """The three stores must hold the same passages; a mismatch means files from different builds."""
    counts = {DENSE_FILE: len(dense), STORE_FILE: store.count()}
    if bm25 is not None:
        counts[BM25_DIR] = len(bm25)
    for name, count in counts.items():
        if count != manifest.count:
            raise InputError(
                directory / name,
                None,
                f"holds {count} passages, the manifest says {manifest.count}: rebuild the index",
            )
    if dense.dimension != manifest.embedder.dimension:
        raise InputError(
            directory / DENSE_FILE,
            None,
            f"vectors of dimension {dense.dimension}, the manifest says {manifest.embedder.dimension}",
        )
