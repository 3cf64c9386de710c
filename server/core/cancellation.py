"""Abandoned requests stop generating: a client that hangs up cancels its handler, as vLLM's own server
does (`with_cancellation` in vLLM's entrypoints).

uvicorn keeps running a handler after its client has gone; under overload those answers nobody waits for
hold the engine's queue. Cancelling the handler's task raises `CancelledError` in the engine's generator,
which aborts the vLLM request (or closes the replica connection, which aborts it there).
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from fastapi import Request, Response

P = ParamSpec("P")
R = TypeVar("R")

CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request its client abandoned; only metrics and logs ever see it."""


async def _disconnected(request: Request) -> None:
    # The body is already parsed into the handler's model, so the remaining messages can only be the
    # disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def with_cancellation(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """Run `handler` until it returns or the client disconnects, whichever comes first. The handler takes
    the request as `raw_request`. A streamed response it returns listens for disconnects itself."""

    @functools.wraps(handler)
    async def cancellable(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        request = kwargs["raw_request"]
        assert isinstance(request, Request)
        work = asyncio.ensure_future(handler(*args, **kwargs))
        hangup = asyncio.ensure_future(_disconnected(request))
        done, pending = await asyncio.wait((work, hangup), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if work in done:
            return work.result()
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return cancellable
