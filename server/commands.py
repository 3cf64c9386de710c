"""`kotae serve`: the HTTP API on uvicorn."""

import logging
import signal
from pathlib import Path

import typer

from kotae.core.config import get_settings
from kotae.core.errors import KotaeError


def serve(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1; 0.0.0.0 exposes it)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    index: Path | None = typer.Option(None, help="Index directory (default: the embedded demo index)."),
    adapter_dir: Path | None = typer.Option(
        None, help="Adapters under it load at start; admin loads stay inside it."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve the HTTP API: /v1/qa, OpenAI-compatible /v1/chat/completions and /v1/models, adapter
    admin, /healthz, /readyz and /metrics."""
    import uvicorn

    from kotae.server.app import create_app

    overrides = {"host": host, "port": port, "index": index, "adapter_dir": adapter_dir}
    settings = get_settings().model_copy(update={k: v for k, v in overrides.items() if v is not None})
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
