from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.routing import APIRoute

from kotae.server.admin.protocol import AdapterInfo, AdapterList, LoadAdapterRequest, UnloadedAdapter
from kotae.server.core.adapters import ADAPTER_NAME_PATTERN
from kotae.server.core.deps import ServiceDep, check_admin, require_admin
from kotae.server.core.errors import error_responses


class AdminRoute(APIRoute):
    """Checks the token before FastAPI reads the body: without the token a request learns nothing, not even
    that its body was malformed (dependencies run after the body is parsed)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            await check_admin(request)
            return await handle(request)

        return authenticated


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    route_class=AdminRoute,
    # Checked again after the body, cheaply: the dependency puts the bearer scheme into the OpenAPI schema.
    dependencies=[Depends(require_admin)],
    responses=error_responses(HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.SERVICE_UNAVAILABLE),
)


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
