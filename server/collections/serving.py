import asyncio
import json
import logging
from http import HTTPStatus

from pydantic import ValidationError

from kotae.core.errors import KotaeError
from kotae.rag.collections import UnknownCollection
from kotae.rag.documents import DocumentInput
from kotae.server.collections.protocol import (
    CollectionCard,
    CollectionList,
    DeletedDocument,
    DocumentBody,
    DocumentCard,
    DocumentsWritten,
)
from kotae.server.core.errors import APIError, problem_reason
from kotae.server.core.state import Service

logger = logging.getLogger(__name__)


def list_collections(service: Service) -> CollectionList:
    collections = service.pipeline.collections
    return CollectionList(data=[CollectionCard.of(collections.info(name)) for name in collections.names()])


async def reload_collection(service: Service, name: str) -> CollectionCard:
    """Serve the collection's index as it is on disk now; requests already retrieving finish on the old
    one. An index that does not open leaves the collection as it was (409; the log says why)."""
    collections = service.pipeline.collections
    try:
        await asyncio.to_thread(collections.reload, name)
    except UnknownCollection:
        raise
    except KotaeError as error:
        logger.error("collection %s not reloaded: %s", name, error)
        raise APIError(
            HTTPStatus.CONFLICT,
            f"collection {name!r}: the index on disk did not open, the previous one is still served "
            "(the server log says why)",
            "collection_unreadable",
        ) from error
    return CollectionCard.of(collections.info(name))


MAX_DOCUMENTS = 1000
"""Documents one request may write (the body size cap, `KOTAE_MAX_BODY_BYTES`, applies as well)."""


def parse_documents(body: bytes) -> list[DocumentInput]:
    """One JSON object, or JSON Lines of them (blank lines skipped). 422 naming the line and the reason
    for the first bad one; 413 past `MAX_DOCUMENTS`."""
    text = body.decode("utf-8", errors="replace")
    lines = [text] if text.lstrip().startswith("{") and _one_object(text) else text.splitlines()
    documents: list[DocumentInput] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {number}" if len(lines) > 1 else "body"
        try:
            parsed = DocumentBody.model_validate_json(line)
        except ValidationError as error:
            raise APIError(
                HTTPStatus.UNPROCESSABLE_ENTITY, f"{where}: {_reason(error)}", "invalid_document"
            ) from None
        if parsed.id in seen:
            raise APIError(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"{where}: document id {parsed.id!r} already came on line {seen[parsed.id]}",
                "duplicate_document",
            )
        seen[parsed.id] = number
        documents.append(DocumentInput(parsed.id, parsed.title, parsed.text, parsed.metadata or {}, where))
        if len(documents) > MAX_DOCUMENTS:
            raise APIError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"at most {MAX_DOCUMENTS} documents per request",
                "too_many_documents",
            )
    if not documents:
        raise APIError(HTTPStatus.UNPROCESSABLE_ENTITY, "body: no documents", "no_documents")
    return documents


async def write_documents(service: Service, name: str, documents: list[DocumentInput]) -> DocumentsWritten:
    """Searched and on disk when this returns."""
    passages = await asyncio.to_thread(service.pipeline.collections.upsert, name, documents)
    return DocumentsWritten(collection=name, documents=len(documents), passages=passages)


async def delete_document(service: Service, name: str, doc_id: str) -> DeletedDocument:
    await asyncio.to_thread(service.pipeline.collections.delete, name, doc_id)
    return DeletedDocument(id=doc_id)


def read_document(service: Service, name: str, doc_id: str) -> DocumentCard:
    return DocumentCard.of(service.pipeline.collections.document(name, doc_id))


def _one_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _reason(error: ValidationError) -> str:
    """pydantic's first complaint, without the input value (it may be huge or private)."""
    problem = error.errors()[0]
    return "not a JSON object" if problem["type"] == "json_invalid" else problem_reason(problem)
