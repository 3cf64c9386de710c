from http import HTTPStatus

from fastapi import APIRouter, Path, Request

from kotae.indexer.layout import COLLECTION_NAME
from kotae.server.collections.protocol import (
    DOCUMENTS_BODY,
    CollectionCard,
    CollectionList,
    DeletedDocument,
    DocumentCard,
    DocumentsWritten,
)
from kotae.server.collections.serving import (
    delete_document,
    list_collections,
    parse_documents,
    read_document,
    reload_collection,
    write_documents,
)
from kotae.server.core.deps import ADMIN_ROUTER, ServiceDep
from kotae.server.core.errors import error_responses

router = APIRouter(prefix="/v1/collections", tags=["collections"], **ADMIN_ROUTER)
CollectionName = Path(pattern=f"^{COLLECTION_NAME.pattern}$")


@router.get("")
async def collections(service: ServiceDep) -> CollectionList:
    """The collections served, with their sizes, embedder and last update."""
    return list_collections(service)


@router.post(
    "/{collection}/reload",
    responses=error_responses(HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def reload(service: ServiceDep, collection: str = CollectionName) -> CollectionCard:
    """Serve the collection as it is on disk now (after `kotae index build/add/remove`), or a new
    collection built under the collections root. Requests in flight finish on the index they started on."""
    return await reload_collection(service, collection)


@router.post(
    "/{collection}/documents",
    openapi_extra=DOCUMENTS_BODY,
    responses=error_responses(
        HTTPStatus.NOT_FOUND, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.UNPROCESSABLE_ENTITY
    ),
)
async def upsert_documents(
    request: Request, service: ServiceDep, collection: str = CollectionName
) -> DocumentsWritten:
    """Store one document (a JSON object) or many (JSON Lines), each replacing the document of its id.
    When this answers 200 they are on disk and searched; a write is all or nothing."""
    service.pipeline.collections.get(collection)  # 404 before the body is read
    return await write_documents(service, collection, parse_documents(await request.body()))


@router.get("/{collection}/documents/{document_id:path}", responses=error_responses(HTTPStatus.NOT_FOUND))
async def get_document(
    service: ServiceDep, document_id: str, collection: str = CollectionName
) -> DocumentCard:
    """The document's passages as they are served."""
    return read_document(service, collection, document_id)


@router.delete("/{collection}/documents/{document_id:path}", responses=error_responses(HTTPStatus.NOT_FOUND))
async def remove_document(
    service: ServiceDep, document_id: str, collection: str = CollectionName
) -> DeletedDocument:
    """Stop serving the document, whether it was built into the index or written here."""
    return await delete_document(service, collection, document_id)
