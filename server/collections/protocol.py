"""Admin API for collections: list them, reload one from disk, write and read their documents. Behind
`Authorization: Bearer`."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kotae.indexer.index import IndexedDocument
from kotae.rag.collections import CollectionInfo


class CollectionCard(BaseModel):
    name: str
    passages: int
    documents: int
    embedder: str
    """The embedder its passages were embedded with."""
    updated_at: datetime
    """When its index was last built or updated."""

    @classmethod
    def of(cls, info: CollectionInfo) -> "CollectionCard":
        return cls(
            name=info.name,
            passages=info.passages,
            documents=info.documents,
            embedder=info.embedder,
            updated_at=info.updated_at,
        )


class CollectionList(BaseModel):
    object: str = "list"
    data: list[CollectionCard]


class DocumentBody(BaseModel):
    """One document to store: one JSON object, or one line of a JSON Lines body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=512)
    """Upserts replace the document of this id: its old passages go, in the index and among written ones."""
    title: str = Field(max_length=1000)
    text: str
    """Plain text; cut into passages as the collection's index was."""
    metadata: dict[str, Any] | None = None
    """Kept with the document and returned by GET; not searched."""


# OpenAPI's description of the documents route's body, which the route reads itself (JSON or JSON Lines).
DOCUMENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DocumentBody.model_json_schema()},
            "application/x-ndjson": {"schema": {"type": "string", "description": "JSON Lines of documents"}},
        },
    }
}


class DocumentsWritten(BaseModel):
    collection: str
    documents: int
    passages: int
    """Passages the documents were cut into, now searched."""


class PassageCard(BaseModel):
    id: str
    title: str
    text: str


class DocumentCard(BaseModel):
    id: str
    title: str
    source: Literal["index", "api"]
    """`index`: built into the collection's index; `api`: written through this API."""
    metadata: dict[str, Any] | None
    updated_at: datetime | None
    """When it was written through the API."""
    passages: list[PassageCard]

    @classmethod
    def of(cls, document: IndexedDocument) -> "DocumentCard":
        written = document.written
        return cls(
            id=document.id,
            title=document.title,
            source="api" if written else "index",
            metadata=written.metadata if written else None,
            updated_at=written.updated_at if written else None,
            passages=[PassageCard(id=p.id, title=p.title, text=p.text) for p in document.passages],
        )


class DeletedDocument(BaseModel):
    id: str
    deleted: Literal[True] = True
