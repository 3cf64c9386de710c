"""The HTTP app: `create_app(settings)` returns a FastAPI app that starts the pipeline in the background.

Routes: `/v1/qa` and `/v1/chat/completions` (API keys when configured), `/v1/models`, `/v1/collections`
and `/admin/adapters` (admin token), `/healthz`, `/readyz`, `/metrics`. Everything but the probes and
metrics answers 503 until start-up has finished.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from kotae.core.config import Settings
from kotae.core.switch_interval import switch_interval
from kotae.rag.pipeline import Pipeline
from kotae.server.admin.api_router import router as admin_router
from kotae.server.chat.api_router import router as chat_router
from kotae.server.collections.api_router import router as collections_router
from kotae.server.core.deps import without_api_keys
from kotae.server.core.errors import install_error_handlers
from kotae.server.core.metrics import Metrics
from kotae.server.core.middleware import BodySizeLimitMiddleware, RequestMetricsMiddleware
from kotae.server.core.startup import PipelineFactory, start_service
from kotae.server.core.state import ServiceState
from kotae.server.health.api_router import router as health_router
from kotae.server.models.api_router import router as models_router
from kotae.server.qa.api_router import router as qa_router

logger = logging.getLogger(__name__)


def default_pipeline_factory(settings: Settings) -> Pipeline:
    """`kotae.runtime.build_pipeline`, imported when called: it pulls in torch and vLLM."""
    from kotae.runtime import build_pipeline

    return build_pipeline(settings)


def create_app(
    settings: Settings,
    pipeline_factory: PipelineFactory = default_pipeline_factory,
    on_fatal: Callable[[], None] = lambda: None,
) -> FastAPI:
    """The app. `on_fatal` runs when start-up fails (missing or corrupt index, unusable model): `kotae
    serve` stops the server there; left alone, the app keeps answering 503 with /readyz saying why."""
    state = ServiceState(settings, Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(start_service(state, pipeline_factory, on_fatal))
        try:
            with switch_interval(settings.serve_switch_interval_ms):
                yield
        finally:
            state.set_stopping()
            for task in (starting, *state.background):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if state.service is not None:
                state.service.pipeline.shutdown()

    app = FastAPI(
        title="kotae",
        summary="Japanese question answering over your documents: retrieval, LoRA adapters, vLLM.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.kotae = state
    if state.api_keys is None:
        app.openapi = without_api_keys(app.openapi)  # type: ignore[method-assign]
    install_error_handlers(app)
    for router in (qa_router, chat_router, models_router, collections_router, admin_router, health_router):
        app.include_router(router)
    # Added last = outermost: metrics see every request, including those the body cap turns away.
    app.add_middleware(BodySizeLimitMiddleware, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    return app
