"""Add (upsert) and remove passages of a built index, copy-on-write: the served index never changes in place.

The store and faiss index are copied into a staging directory, changed there, BM25 is rebuilt from the
store's tokens, and the result is swapped in like a fresh build."""

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kotae.core.durable import locked, staged_directory
from kotae.core.errors import KotaeError
from kotae.indexer.build import embed_passages, write_bm25
from kotae.indexer.dense import DenseIndex
from kotae.indexer.embedder import Embedder
from kotae.indexer.ingest import ingest
from kotae.indexer.layout import BM25_DIR, DENSE_FILE, STORE_FILE
from kotae.indexer.manifest import Manifest, read_manifest, write_manifest
from kotae.indexer.store import PassageStore
from kotae.indexer.tokenizer import SudachiTokenizer


def add_passages(
    index_dir: Path, sources: Sequence[Path], embedder: Embedder, batch_size: int = 32, progress: bool = False
) -> Manifest:
    """Adds the documents of `sources`; a document already in the index (same id, or same title for
    wikitext) replaces all its old passages."""
    read_manifest(index_dir).require_embedder(embedder.name, embedder.hash, index_dir)  # fail before copying
    with locked(index_dir), staged_directory(index_dir) as staging:
        # Read again under the writers' lock: another update may have been swapped in meanwhile.
        manifest = read_manifest(index_dir)
        store = _copy_store(index_dir, staging)
        try:
            tokenizer = SudachiTokenizer(manifest.bm25.tokenizer) if manifest.bm25 else None
            ingested = ingest(sources, store, manifest.chunk_chars, tokenizer, progress)
            store.commit()
            keys = np.asarray(ingested.added, dtype=np.int64)
            vectors = embed_passages(store, keys, embedder, batch_size, progress)
            _write_updated(
                index_dir, staging, store, manifest, np.asarray(ingested.replaced, np.int64), vectors, keys
            )
            counts = store.count(), store.document_count()
        finally:
            store.close()
        updated = _touched(manifest, counts)
        updated.sources.extend(ingested.sources)
        write_manifest(staging, updated)
    return updated


def remove_passages(index_dir: Path, ids: Sequence[str]) -> Manifest:
    """Removes passages by passage id, or whole documents by document id. Unknown ids are an error (a typo
    would otherwise look like a successful removal)."""
    with locked(index_dir), staged_directory(index_dir) as staging:
        manifest = read_manifest(index_dir)
        store = _copy_store(index_dir, staging)
        try:
            found = store.keys_of(ids)
            missing = [passage_id for passage_id in ids if passage_id not in found]
            if missing:
                raise KotaeError(
                    f"index {index_dir} has no passage or document with id {', '.join(map(repr, missing))}"
                )
            removed = np.unique(np.concatenate([np.asarray(keys, np.int64) for keys in found.values()]))
            if len(removed) == store.count():
                raise KotaeError(
                    f"removing {', '.join(ids)} would leave index {index_dir} empty; delete it instead"
                )
            store.delete(removed.tolist())
            store.commit()
            empty = np.zeros((0, manifest.embedder.dimension), np.float32)
            _write_updated(index_dir, staging, store, manifest, removed, empty, np.zeros(0, np.int64))
            counts = store.count(), store.document_count()
        finally:
            store.close()
        updated = _touched(manifest, counts)
        write_manifest(staging, updated)
    return updated


def _copy_store(index_dir: Path, staging: Path) -> PassageStore:
    source = PassageStore.open(index_dir / STORE_FILE)  # validates it before copying
    source.close()
    shutil.copy2(index_dir / STORE_FILE, staging / STORE_FILE)
    return PassageStore.open(staging / STORE_FILE, writable=True)


def _write_updated(
    index_dir: Path,
    staging: Path,
    store: PassageStore,
    manifest: Manifest,
    removed: np.ndarray,
    vectors: np.ndarray,
    keys: np.ndarray,
) -> None:
    dense = DenseIndex.load(index_dir / DENSE_FILE, manifest.dense, gpu=False)
    dense.updated(removed, vectors, keys).save(staging / DENSE_FILE)
    if manifest.bm25 is not None:  # rebuilt from the store, the source of truth
        write_bm25(store, staging / BM25_DIR, manifest.bm25.params)


def _touched(manifest: Manifest, counts: tuple[int, int]) -> Manifest:
    passages, documents = counts
    return manifest.model_copy(
        deep=True, update={"count": passages, "documents": documents, "updated_at": datetime.now(UTC)}
    )
