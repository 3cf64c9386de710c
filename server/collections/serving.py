import asyncio
import logging
from http import HTTPStatus

from kotae.core.errors import KotaeError
from kotae.rag.collections import UnknownCollection
from kotae.server.collections.protocol import CollectionCard, CollectionList
from kotae.server.core.errors import APIError
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
