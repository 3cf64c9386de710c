"""kotae's Prometheus metrics (`kotae_*`), served together with vLLM's own (`vllm:*`).

kotae's metrics live in a registry of their own per app, so that several apps in one process (tests) do
not collide; vLLM registers its metrics in prometheus-client's default registry when stats logging is
on, and `/metrics` concatenates both.
"""

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kotae.rag.engine_protocol import Completion
from kotae.rag.retrieval_batcher import RetrievalBatch

BASE_LABEL = "base"
"""The `adapter` label of requests answered by the base model."""

Outcome = Literal["ok", "error", "cancelled"]
"""The `outcome` label of a generation request."""

# Request latency on CPU spans milliseconds (health, errors) to minutes (long answers under load).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
RETRIEVAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.request_seconds = Histogram(
            "kotae_request_duration_seconds",
            "HTTP request latency, from the first byte received to the last byte sent.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "kotae_requests_in_flight", "HTTP requests being served now.", registry=registry
        )
        self.retrieval_seconds = Histogram(
            "kotae_retrieval_duration_seconds",
            "Retrieval (embedding, search, fusion) per question.",
            buckets=RETRIEVAL_BUCKETS,
            registry=registry,
        )
        self.retrieval_batch_size = Histogram(
            "kotae_retrieval_batch_size",
            "Questions retrieved together in one shared batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.retrieval_queue_seconds = Histogram(
            "kotae_retrieval_queue_seconds",
            "Per question: the wait from its arrival to the start of its retrieval batch.",
            buckets=RETRIEVAL_BUCKETS,
            registry=registry,
        )
        self.retrieval_stage_seconds = Histogram(
            "kotae_retrieval_stage_seconds",
            "Per retrieval batch: each stage's wall time (embed, dense, tokenize, bm25, fuse, read, prompt).",
            ["stage"],
            buckets=RETRIEVAL_BUCKETS,
            registry=registry,
        )
        self.generation_seconds = Histogram(
            "kotae_generation_duration_seconds",
            "Generation per request, from submission to the engine to the last token.",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "kotae_time_to_first_token_seconds",
            "From submission to the engine to the first generated token.",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "kotae_prompt_tokens", "Prompt tokens sent to the engine.", ["adapter"], registry=registry
        )
        self.completion_tokens = Counter(
            "kotae_completion_tokens", "Tokens generated.", ["adapter"], registry=registry
        )
        self.adapter_requests = Counter(
            "kotae_adapter_requests",
            "Generation requests per adapter and outcome (ok, error, cancelled: the client went away).",
            ["adapter", "outcome"],
            registry=registry,
        )
        self.adapter_request_seconds = Histogram(
            "kotae_adapter_request_duration_seconds",
            "Retrieval plus generation per request, per adapter.",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "kotae_ready", "1 when the pipeline is loaded and the engine is alive.", registry=registry
        )
        self.adapters_loaded = Gauge("kotae_adapters_loaded", "LoRA adapters loaded now.", registry=registry)

    def record_generation(self, adapter: str | None, completion: Completion, generate_s: float) -> None:
        label = adapter or BASE_LABEL
        self.generation_seconds.labels(label).observe(generate_s)
        if completion.first_token_s is not None:
            self.time_to_first_token.labels(label).observe(completion.first_token_s)
        self.prompt_tokens.labels(label).inc(completion.prompt_tokens)
        self.completion_tokens.labels(label).inc(completion.completion_tokens)

    def record_retrieval_batch(self, batch: RetrievalBatch) -> None:
        self.retrieval_batch_size.observe(batch.size)
        for queued_ms in batch.queued_ms:
            self.retrieval_queue_seconds.observe(queued_ms / 1000)
        for stage, ms in batch.stage_ms.items():
            self.retrieval_stage_seconds.labels(stage).observe(ms / 1000)

    def record_request(self, adapter: str | None, seconds: float, outcome: Outcome) -> None:
        label = adapter or BASE_LABEL
        self.adapter_requests.labels(label, outcome).inc()
        self.adapter_request_seconds.labels(label).observe(seconds)

    @contextmanager
    def track_request(self, adapter: str | None) -> Iterator[None]:
        """Times the block and counts it as one request of `adapter`, by how it ended."""
        started = time.perf_counter()
        outcome: Outcome = "error"
        try:
            yield
            outcome = "ok"
        except BaseException as error:
            outcome = outcome_of(error)
            raise
        finally:
            self.record_request(adapter, time.perf_counter() - started, outcome)

    def render(self) -> bytes:
        """The exposition text: vLLM's metrics (default registry) then kotae's."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)


def outcome_of(error: BaseException) -> Outcome:
    """A request that ended with `error`: cancelled when its client went away, else an error."""
    return "cancelled" if isinstance(error, asyncio.CancelledError | GeneratorExit) else "error"
