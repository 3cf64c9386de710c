"""Admin API for collections: list them, reload one from disk. Behind `Authorization: Bearer`."""

from datetime import datetime

from pydantic import BaseModel

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
