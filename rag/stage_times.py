"""Wall time of named stages, one sample per timed run of each (a batch's embedding, its BM25 search, …)."""

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}
        """Milliseconds per run of each stage, in the order they ran."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    def merge(self, ms: dict[str, list[float]]) -> None:
        """Add samples timed by another clock (another process's), after this one's own."""
        for name, samples in ms.items():
            self.ms.setdefault(name, []).extend(samples)
