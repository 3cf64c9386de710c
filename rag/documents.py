"""Documents written through the API, made ready for a collection's overlay: chunked as its index was
built, embedded by its embedder, cut into its BM25 words."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kotae.indexer.chunking import indexed_text
from kotae.indexer.overlay import NewDocument
from kotae.indexer.shards import prepare_documents
from kotae.indexer.sources import Record
from kotae.rag.retriever import Retriever


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """A document as a client sends it."""

    id: str
    title: str
    text: str
    metadata: dict[str, object] = field(default_factory=dict)
    origin: str = "request"
    """Where it came from in the request (`line 3`), for error messages."""


def prepare_written(documents: Sequence[DocumentInput], retriever: Retriever) -> list[NewDocument]:
    """Chunks, BM25 words and embeddings of `documents`, exactly as a build of the retriever's index makes
    them. Blocking: the embedder runs."""
    index = retriever.index
    records = [Record(d.id, d.title, d.text, wikitext=False, origin=d.origin) for d in documents]
    prepared = prepare_documents(records, index.manifest.chunk_chars, index.tokenizer)
    texts = [indexed_text(passage) for document in prepared for passage in document.passages]
    vectors = (
        retriever.embedder.embed_passages(texts)
        if texts
        else np.zeros((0, index.manifest.embedder.dimension), np.float32)
    )
    ready, start = [], 0
    for given, document in zip(documents, prepared, strict=True):
        count = len(document.passages)
        words = [json.loads(tokens) for tokens in document.tokens] or [[] for _ in document.passages]
        ready.append(
            NewDocument(
                id=given.id,
                title=given.title,
                metadata=given.metadata,
                passages=document.passages,
                tokens=words,
                vectors=vectors[start : start + count],
            )
        )
        start += count
    return ready
