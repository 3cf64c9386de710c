"""What the running server holds: settings, metrics, and — once start-up finished — the pipeline and the
adapter catalog. Routes that need the engine get a `Service`, which exists only while kotae is ready."""

import asyncio
import enum
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from kotae.adapters.catalog import AdapterCatalog
from kotae.core.config import Settings
from kotae.rag.collections import DEFAULT_COLLECTION
from kotae.rag.engine_protocol import Sampling
from kotae.rag.pipeline import Pipeline
from kotae.server.core.api_keys import ApiKeys, ReaderScope
from kotae.server.core.errors import APIError, NotReady
from kotae.server.core.metrics import Metrics


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Service:
    """The parts a request is answered with."""

    settings: Settings
    metrics: Metrics
    pipeline: Pipeline
    catalog: AdapterCatalog
    ready_at: float = field(default_factory=time.time)

    @property
    def base_model(self) -> str:
        return self.pipeline.engine.model_name

    def default_adapter(self) -> str | None:
        """`Settings.default_adapter` while it is loaded; otherwise the base model answers."""
        name = self.settings.default_adapter
        return name if name and self.catalog.is_loaded(name) else None

    def adapter_for(self, requested: str | None) -> str | None:
        """The adapter a request names (None = the base model). Not naming one picks the default
        adapter; naming the base model (or "") picks the base model."""
        if requested is None:
            return self.default_adapter()
        if requested in ("", self.base_model):
            return None
        if self.catalog.is_loaded(requested):
            return requested
        raise APIError(
            HTTPStatus.NOT_FOUND,
            f"model {requested!r} is neither the base model nor a loaded adapter (see GET /v1/models)",
            "model_not_found",
        )

    def sampling(
        self,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None = None,
        stop: tuple[str, ...] = (),
        seed: int | None = None,
    ) -> Sampling:
        """Request sampling within the server's caps; unset fields take the server's defaults."""
        cap = self.settings.max_tokens_cap
        if max_tokens is not None and max_tokens > cap:
            raise APIError(
                HTTPStatus.UNPROCESSABLE_ENTITY, f"max_tokens: must be at most {cap}", "max_tokens_too_large"
            )
        defaults = Sampling()
        return Sampling(
            max_tokens=max_tokens or self.settings.max_tokens,
            temperature=defaults.temperature if temperature is None else temperature,
            top_p=defaults.top_p if top_p is None else top_p,
            stop=defaults.stop + tuple(s for s in stop if s not in defaults.stop),
            seed=seed,
        )

    def collection_for(self, requested: str | None, scope: ReaderScope) -> str:
        """The collection a request reads (unset: the default one): 403 outside the caller's scope, checked
        first so that a key cannot probe which collections exist; 404 for one not served."""
        name = requested or DEFAULT_COLLECTION
        scope.check(name)
        self.pipeline.collections.get(name)
        return name

    def check_question(self, question: str) -> str:
        """The question without surrounding blanks; 422 when it is empty or over the length cap."""
        question = question.strip()
        if not question:
            raise APIError(HTTPStatus.UNPROCESSABLE_ENTITY, "question: must not be empty", "question_empty")
        limit = self.settings.max_question_chars
        if len(question) > limit:
            raise APIError(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"question: {len(question)} characters, at most {limit} are accepted",
                "question_too_long",
            )
        return question


class ServiceState:
    """Start-up progress and, once ready, the `Service`."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        keys = settings.api_keys.get_secret_value() if settings.api_keys else ""
        self.api_keys = ApiKeys.parse(keys) if keys.strip() else None
        """None: the query routes are open."""
        self.phase = Phase.STARTING
        self.reason = "loading the models and the index, starting the engine"
        self.failure: str | None = None
        """Why start-up failed, for the log and the exit message (may name files: never sent to clients)."""
        self._service: Service | None = None
        self.background: set[asyncio.Task] = set()
        """Tasks that run while the service does (the collections watch); cancelled at shutdown."""

    @property
    def service(self) -> Service | None:
        return self._service

    def set_ready(self, pipeline: Pipeline, catalog: AdapterCatalog) -> None:
        self._service = Service(self.settings, self.metrics, pipeline, catalog)
        self.phase = Phase.READY
        self.reason = "ready"
        self.metrics.ready.set(1)
        self.metrics.adapters_loaded.set_function(lambda: len(pipeline.engine.adapters))
        pipeline.observe_retrieval_batches(self.metrics.record_retrieval_batch)

    def set_failed(self, failure: str) -> None:
        self.phase = Phase.FAILED
        self.failure = failure
        self.reason = "start-up failed; the server log says why"
        self.metrics.ready.set(0)

    def set_stopping(self) -> None:
        self.phase = Phase.STOPPING
        self.reason = "shutting down"
        self.metrics.ready.set(0)

    def ready(self) -> Service:
        """The service, or 503 with the reason: still starting, failed, stopping, or the engine died."""
        service = self._service
        if self.phase is not Phase.READY or service is None:
            raise NotReady(f"kotae is not ready: {self.reason}")
        if service.pipeline.engine.errored:
            self.metrics.ready.set(0)
            raise APIError(HTTPStatus.SERVICE_UNAVAILABLE, "the generation engine has stopped", "engine_dead")
        return service
