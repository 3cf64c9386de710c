"""`kotae serve`: the HTTP API on uvicorn."""

import logging
import signal
from typing import Any

import typer

from kotae.core.cli_options import overridden, settings_options, with_options
from kotae.core.config import Settings, get_settings
from kotae.core.errors import KotaeError


@with_options(settings_options(Settings, ("host", "port", "index", "adapter_dir")), into="overrides")
def serve(
    log_level: str = typer.Option("info", help="uvicorn log level."), *, overrides: dict[str, Any]
) -> None:
    """Serve the HTTP API: /v1/qa, OpenAI-compatible /v1/chat/completions and /v1/models, adapter
    admin, /healthz, /readyz and /metrics."""
    import uvicorn

    from kotae.server.app import create_app

    settings = overridden(get_settings(), overrides)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=stop)
    # On SIGTERM or SIGINT uvicorn stops accepting, lets in-flight requests finish, shuts the engine down,
    # then raises the signal again for the handler that was there before it. A stop asked for and done
    # gracefully is a clean exit (status 0), so that handler does nothing.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        # Streams end with [DONE]; proxies in front may still want the server to close idle sockets.
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    server.run()
    failure = app.state.kotae.failure
    if failure is not None:
        raise KotaeError(failure)
