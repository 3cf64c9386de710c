"""FastAPI dependencies: the server state, the ready service (503 otherwise), and admin authentication."""

import hmac
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kotae.server.core.api_keys import OPEN, ReaderScope
from kotae.server.core.errors import APIError, error_responses
from kotae.server.core.state import Service, ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.kotae


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_service(state: StateDep) -> Service:
    return state.ready()


ServiceDep = Annotated[Service, Depends(get_service)]

_bearer = HTTPBearer(auto_error=False, description="`KOTAE_ADMIN_TOKEN`")


def require_admin(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Admin routes answer only to `Authorization: Bearer $KOTAE_ADMIN_TOKEN`. With no token configured
    they are disabled (403): a server nobody configured for administration accepts no adapter loads."""
    expected = state.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise APIError(
            HTTPStatus.FORBIDDEN,
            "the admin API is disabled: set KOTAE_ADMIN_TOKEN to enable it",
            "admin_disabled",
        )
    given = credentials.credentials if credentials is not None else ""
    # compare_digest takes time independent of where the strings differ: no guessing by timing.
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise APIError(
            HTTPStatus.UNAUTHORIZED,
            "missing or wrong admin token",
            "invalid_token",
            headers={"WWW-Authenticate": "Bearer"},
        )


API_KEY_SCHEME = "APIKey"
_api_key = HTTPBearer(auto_error=False, description="a key of `KOTAE_API_KEYS`", scheme_name=API_KEY_SCHEME)


def without_api_keys(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI schema without the API-key requirement, for a server that has no keys configured:
    its query routes are open, and the schema must say so."""

    def schema() -> dict[str, Any]:
        generated = openapi()  # FastAPI builds it once and keeps it: dropping the scheme again is a no-op
        for operations in generated.get("paths", {}).values():
            for operation in operations.values():
                required = [r for r in operation.get("security", []) if API_KEY_SCHEME not in r]
                if required:
                    operation["security"] = required
                else:
                    operation.pop("security", None)
        generated.get("components", {}).get("securitySchemes", {}).pop(API_KEY_SCHEME, None)
        return generated

    return schema


def reader_scope(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)]
) -> ReaderScope:
    """The collections the caller of a query route may read: all of them when no API keys are configured;
    401 for a missing or unknown key."""
    if state.api_keys is None:
        return OPEN
    scope = state.api_keys.scope_of(credentials.credentials if credentials is not None else "")
    if scope is None:
        raise APIError(
            HTTPStatus.UNAUTHORIZED,
            "missing or unknown API key",
            "invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return scope


ReaderScopeDep = Annotated[ReaderScope, Depends(reader_scope)]


async def check_admin(request: Request) -> None:
    """`require_admin` on a bare request, for code that runs before FastAPI resolves dependencies."""
    require_admin(get_state(request), await _bearer(request))


class AdminRoute(APIRoute):
    """Checks the token before FastAPI reads the body: without the token a request learns nothing, not even
    that its body was malformed (dependencies run after the body is parsed)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            await check_admin(request)
            return await handle(request)

        return authenticated


ADMIN_ROUTER: dict[str, Any] = {
    "route_class": AdminRoute,
    # Checked again after the body, cheaply: the dependency puts the bearer scheme into the OpenAPI schema.
    "dependencies": [Depends(require_admin)],
    "responses": error_responses(
        HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN, HTTPStatus.SERVICE_UNAVAILABLE
    ),
}
"""`APIRouter` arguments of routers whose every route needs the admin token."""
