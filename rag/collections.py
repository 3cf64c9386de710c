"""The indexes one server answers from, by name. Each can be swapped for a newer build while it serves."""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kotae.core.errors import KotaeError
from kotae.indexer.index import Index, IndexedDocument
from kotae.indexer.layout import COLLECTION_NAME, MANIFEST_FILE
from kotae.indexer.overlay import DocumentOverlay, overlay_path
from kotae.rag.documents import DocumentInput, prepare_written
from kotae.rag.retriever import Retriever

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
"""The collection of `KOTAE_INDEX` (or the demo index): requests that name none are answered from it."""


class UnknownCollection(KotaeError):
    """A request named a collection this server does not serve."""


class UnknownDocument(KotaeError):
    """A request named a document the collection does not hold."""


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    passages: int
    documents: int
    embedder: str
    updated_at: datetime


def _manifest_stamp(directory: Path) -> tuple[int, int] | None:
    """Identity of the index's manifest file: an index build or update swaps in a new directory, so
    the inode changes even when the clock does not."""
    try:
        stat = (directory / MANIFEST_FILE).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class Collections:
    """Name → `Retriever`. A request takes its retriever once (`get`) and finishes on it even when a
    reload swaps in a newer index meanwhile; the old index is closed when its last request lets go of it.
    """

    def __init__(self, retrievers: dict[str, Retriever], root: Path | None = None) -> None:
        """`retrievers` must hold the default collection; `root` is where more collections are built
        (`kotae index build --collection NAME`): a folder there that holds an index is a collection."""
        if DEFAULT_COLLECTION not in retrievers:
            raise ValueError(f"the {DEFAULT_COLLECTION!r} collection is required")
        self.root = root
        self._retrievers = dict(retrievers)
        self._stamps = {name: _manifest_stamp(r.index.directory) for name, r in retrievers.items()}
        self._changing = threading.Lock()
        """Held by reloads and overlay writes: a reload and a collection's first write must agree on
        its one overlay object."""
        self.changed: Callable[[str], None] | None = None
        """Called with a collection's name once a write to it or its reload is done: another process that
        serves the same collections follows it (`kotae.rag.search_process`)."""

    @classmethod
    def of(cls, retriever: Retriever) -> "Collections":
        """Just the default collection."""
        return cls({DEFAULT_COLLECTION: retriever})

    @classmethod
    def open(cls, default: Retriever, root: Path | None) -> "Collections":
        """The default collection and every index under `root`."""
        collections = cls({DEFAULT_COLLECTION: default}, root)
        collections.reload_changed()
        return collections

    @property
    def default(self) -> Retriever:
        return self._retrievers[DEFAULT_COLLECTION]

    def names(self) -> list[str]:
        return sorted(self._retrievers)

    def get(self, name: str | None) -> Retriever:
        """The retriever of `name` (None: the default collection)."""
        retriever = self._retrievers.get(name or DEFAULT_COLLECTION)
        if retriever is None:
            raise UnknownCollection(f"collection {name!r} is not served here")
        return retriever

    def info(self, name: str) -> CollectionInfo:
        index = self.get(name).index
        passages, documents = index.counts()
        updated_at = index.manifest.updated_at
        if index.overlay is not None and index.overlay.snapshot.updated_at is not None:
            updated_at = max(updated_at, index.overlay.snapshot.updated_at)
        return CollectionInfo(name, passages, documents, index.manifest.embedder.name, updated_at)

    def document(self, name: str, doc_id: str) -> IndexedDocument:
        found = self.get(name).index.document(doc_id)
        if found is None:
            raise UnknownDocument(f"collection {name!r} has no document {doc_id!r}")
        return found

    def upsert(self, name: str, documents: Sequence[DocumentInput]) -> int:
        """Store the documents in the collection, each replacing the one of its id; searched when this
        returns, and on disk. Blocking (the embedder runs). The passages stored."""
        retriever = self.get(name)
        ready = prepare_written(documents, retriever)
        with self._changing:
            self._overlay(name).upsert(ready)
        self._tell(name)
        return sum(len(document.passages) for document in ready)

    def delete(self, name: str, doc_id: str) -> None:
        """Stop serving the document, whether it was built into the index or written through the API."""
        self.document(name, doc_id)
        with self._changing:
            self._overlay(name).delete(doc_id)
        self._tell(name)

    def _overlay(self, name: str) -> DocumentOverlay:
        """The collection's overlay, created on its first write; every index of the collection, the one
        served now and those reloads open later, reads this one object."""
        index = self.get(name).index
        if index.overlay is None:
            index.overlay = DocumentOverlay(overlay_path(index.directory), index.manifest.embedder.dimension)
        return index.overlay

    def reload(self, name: str) -> Retriever:
        """Open `name`'s index again (or for the first time, for a new folder under the root) and serve
        it from now on. Blocking: the index is read from disk. A broken index raises and leaves the
        collection as it was."""
        with self._changing:
            directory = self._directory(name)
            current = self._retrievers.get(name)
            stamp = _manifest_stamp(directory)
            base = current or self.default
            overlay = current.index.overlay if current is not None else None
            retriever = Retriever(
                Index.open(directory, overlay=overlay), base.embedder, base.settings, reranker=base.reranker
            )
            self._retrievers[name] = retriever
            self._stamps[name] = stamp
            logger.info("collection %s: serving %s (%d passages)", name, directory, len(retriever.index))
        self._tell(name)
        return retriever

    def refresh(self, name: str) -> None:
        """Serve `name` as it is on disk now, where another process writes it: its index opened again if
        it was rebuilt (or first built), then the documents written to it since."""
        if name not in self._retrievers or self._rebuilt(name):
            self.reload(name)
        index = self.get(name).index
        with self._changing:
            if index.overlay is None:
                index.overlay = DocumentOverlay.beside(index.directory, index.manifest.embedder.dimension)
            else:
                index.overlay.reread()

    def _rebuilt(self, name: str) -> bool:
        """Whether `name`'s index on disk is not the one served (rebuilt or updated, or new)."""
        return _manifest_stamp(self._directory(name)) != self._stamps.get(name)

    def _tell(self, name: str) -> None:
        if self.changed is not None:
            self.changed(name)

    def reload_changed(self) -> list[str]:
        """Reload each collection whose index was rebuilt or updated on disk, and open the new ones under
        the root; the names reloaded. A collection that fails to open is logged and keeps being served as
        it was."""
        reloaded = []
        for name in self._candidates():
            if not self._rebuilt(name):
                continue
            try:
                self.reload(name)
            except KotaeError as error:
                logger.error("collection %s not reloaded: %s", name, error)
                self._stamps[name] = _manifest_stamp(self._directory(name))  # logged once per change
                continue
            reloaded.append(name)
        return reloaded

    def _candidates(self) -> list[str]:
        names = set(self._retrievers)
        if self.root is not None and self.root.is_dir():
            names.update(
                folder.name
                for folder in self.root.iterdir()
                if COLLECTION_NAME.fullmatch(folder.name) and (folder / MANIFEST_FILE).is_file()
            )
        return sorted(names)

    def _directory(self, name: str) -> Path:
        current = self._retrievers.get(name)
        if current is not None:
            return current.index.directory
        if self.root is None or not COLLECTION_NAME.fullmatch(name) or name == DEFAULT_COLLECTION:
            raise UnknownCollection(f"collection {name!r} is not served here")
        directory = self.root / name
        if not (directory / MANIFEST_FILE).is_file():
            raise UnknownCollection(f"collection {name!r} is not served here")
        return directory
