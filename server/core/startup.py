"""Start-up in the background: `/healthz` answers while models are pulled, the index opened and the
engine started (a minute or more on first run); `/readyz` turns 200 when all of it is done."""

import asyncio
import logging
from collections.abc import Callable

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.rag.collections import Collections
from kotae.rag.pipeline import Pipeline
from kotae.runtime import load_adapters
from kotae.server.core.state import ServiceState

logger = logging.getLogger(__name__)


async def watch_collections(collections: Collections, interval_s: float) -> None:
    """Serve each collection as it is on disk: rebuilt, updated or newly built ones are picked up within
    `interval_s` seconds."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(collections.reload_changed)
        except Exception:  # the watch must outlive a bad moment on disk; the next round retries
            logger.exception("checking the collections on disk failed")


PipelineFactory = Callable[[Settings], Pipeline]
"""Builds the pipeline from settings (blocking: runs in a worker thread). `kotae.runtime.build_pipeline`
in production; tests pass one on tiny models."""


async def start_service(state: ServiceState, factory: PipelineFactory, on_fatal: Callable[[], None]) -> None:
    """Build the pipeline, load the adapters under the adapter root, mark the state ready. A failure
    (missing or corrupt index, unusable model) marks it failed, is logged, and calls `on_fatal`."""
    settings = state.settings
    pipeline: Pipeline | None = None
    try:
        pipeline = await asyncio.to_thread(factory, settings)
        catalog = await load_adapters(pipeline, settings)
    except Exception as error:
        if isinstance(error, KotaeError):
            logger.error("start-up failed: %s", error)
            state.set_failed(str(error))
        else:
            logger.exception("start-up failed")
            state.set_failed(f"start-up failed: {type(error).__name__}: {error}")
        if pipeline is not None:
            pipeline.shutdown()
        on_fatal()
        return
    state.set_ready(pipeline, catalog)
    if settings.index_watch_s > 0:
        state.background.add(
            asyncio.create_task(watch_collections(pipeline.collections, settings.index_watch_s))
        )
    service = state.ready()
    logger.info(
        "kotae ready: model %s on %s, adapters %s, default adapter %s",
        service.base_model,
        pipeline.engine.kind,
        [spec.name for spec in catalog.loaded()] or "none",
        service.default_adapter() or "none (base model)",
    )
