from http import HTTPStatus

from fastapi import APIRouter, Path

from kotae.adapters.catalog import ADAPTER_NAME_PATTERN
from kotae.server.admin.protocol import AdapterInfo, AdapterList, LoadAdapterRequest, UnloadedAdapter
from kotae.server.core.deps import ADMIN_ROUTER, ServiceDep
from kotae.server.core.errors import error_responses

router = APIRouter(prefix="/admin", tags=["admin"], **ADMIN_ROUTER)


@router.get("/adapters")
async def list_adapters(service: ServiceDep) -> AdapterList:
    adapters = [AdapterInfo.of(spec) for spec in service.catalog.loaded()]
    return AdapterList(data=adapters, default_adapter=service.default_adapter())


@router.post(
    "/adapters",
    responses=error_responses(
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNPROCESSABLE_ENTITY,
    ),
)
async def load_adapter(request: LoadAdapterRequest, service: ServiceDep) -> AdapterInfo:
    """Load or reload an adapter; it is served (and listed in /v1/models) when this returns."""
    return AdapterInfo.of(await service.catalog.load(request.name, request.path))


@router.delete(
    "/adapters/{name}", responses=error_responses(HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY)
)
async def unload_adapter(
    service: ServiceDep, name: str = Path(pattern=ADAPTER_NAME_PATTERN)
) -> UnloadedAdapter:
    """Unload an adapter; requests already running on it finish first."""
    await service.catalog.unload(name)
    return UnloadedAdapter(name=name)
