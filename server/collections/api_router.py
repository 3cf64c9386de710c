from http import HTTPStatus

from fastapi import APIRouter, Path

from kotae.indexer.layout import COLLECTION_NAME
from kotae.server.collections.protocol import CollectionCard, CollectionList
from kotae.server.collections.serving import list_collections, reload_collection
from kotae.server.core.deps import ADMIN_ROUTER, ServiceDep
from kotae.server.core.errors import error_responses

router = APIRouter(prefix="/v1/collections", tags=["collections"], **ADMIN_ROUTER)


@router.get("")
async def collections(service: ServiceDep) -> CollectionList:
    """The collections served, with their sizes, embedder and last update."""
    return list_collections(service)


@router.post(
    "/{collection}/reload",
    responses=error_responses(HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY),
)
async def reload(
    service: ServiceDep, collection: str = Path(pattern=f"^{COLLECTION_NAME.pattern}$")
) -> CollectionCard:
    """Serve the collection as it is on disk now (after `kotae index build/add/remove`), or a new
    collection built under the collections root. Requests in flight finish on the index they started on."""
    return await reload_collection(service, collection)
