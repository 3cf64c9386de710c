"""FastAPI dependencies: the server state, the ready service (503 otherwise), and admin authentication."""

import hmac
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kotae.server.core.errors import APIError
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


async def check_admin(request: Request) -> None:
    """`require_admin` on a bare request, for code that runs before FastAPI resolves dependencies."""
    require_admin(get_state(request), await _bearer(request))
