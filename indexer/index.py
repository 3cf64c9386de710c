"""An index directory opened for serving: validated, searched densely or by BM25, passages looked up."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.bm25 import Bm25Index
from kotae.indexer.dense import DenseIndex
from kotae.indexer.layout import BM25_DIR, DENSE_FILE, STORE_FILE
from kotae.indexer.manifest import Manifest, read_manifest
from kotae.indexer.store import PassageStore
from kotae.indexer.tokenizer import SudachiTokenizer
from kotae.rag.passage import Hit, Passage

KeyRanking = list[tuple[int, float]]
"""(passage key, score) pairs, best first: a ranking before its passages are read."""


class Index:
    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        store: PassageStore,
        dense: DenseIndex,
        bm25: Bm25Index | None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self._store = store
        self._dense = dense
        self._bm25 = bm25
        # Queries are cut into words exactly as the passages were when the index was built.
        self._tokenizer = SudachiTokenizer(manifest.bm25.tokenizer) if manifest.bm25 else None

    @classmethod
    def open(cls, directory: Path, gpu: bool = True) -> "Index":
        """Raises KotaeError naming the file when the index is missing, incomplete or damaged.
        `gpu`: serve the faiss index from a GPU when faiss has CUDA support and sees one."""
        manifest = read_manifest(directory)
        store = PassageStore.open(directory / STORE_FILE)
        try:
            dense = DenseIndex.load(directory / DENSE_FILE, manifest.dense, gpu)
            bm25 = Bm25Index.load(directory / BM25_DIR) if manifest.bm25 else None
            _check_consistent(directory, manifest, store, dense, bm25)
        except BaseException:
            store.close()
            raise
        return cls(directory, manifest, store, dense, bm25)

    def close(self) -> None:
        self._store.close()

    def __len__(self) -> int:
        return self.manifest.count

    @property
    def has_bm25(self) -> bool:
        return self._bm25 is not None

    def search_dense(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """Per query vector: the k passages of highest cosine similarity, best first."""
        return self.hits(self.rank_dense(query_vectors, k))

    def search_bm25(self, questions: Sequence[str], k: int) -> list[list[Hit]]:
        """Per question: up to k passages by BM25 score, best first (only passages sharing a word)."""
        return self.hits(self.rank_bm25(questions, k))

    def rank_dense(self, query_vectors: np.ndarray, k: int) -> list[KeyRanking]:
        """`search_dense` as (key, score) lists, no passage read."""
        return self._dense.search(query_vectors, k)

    def rank_bm25(self, questions: Sequence[str], k: int) -> list[KeyRanking]:
        """`search_bm25` as (key, score) lists, no passage read."""
        if self._bm25 is None or self._tokenizer is None:
            raise KotaeError(
                f"index {self.directory} has no BM25 index (built with --no-bm25): use dense retrieval"
            )
        return [self._bm25.search(self._tokenizer.tokenize(question), k) for question in questions]

    def hits(self, rankings: Sequence[KeyRanking]) -> list[list[Hit]]:
        """The passages of (key, score) rankings, read from the store in one query for all of them."""
        keys = [key for ranking in rankings for key, _ in ranking]
        passages = iter(self._store.passages(keys))
        return [[Hit(next(passages), score) for _, score in ranking] for ranking in rankings]

    def passage(self, passage_id: str) -> Passage | None:
        return self._store.passage(passage_id)


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
