"""Retrieval under concurrent requests, two ways in one process on the same questions: each request in its own
thread, embedding its question alone (how /v1/qa retrieved before), and shared batches (`RetrievalBatcher`,
how it retrieves now). Prints questions/s and per-request latency for each, and their ratio.

    KOTAE_INDEX=~/.cache/kotae/indexes/jawiki python benchmarks/concurrent_retrieval.py \
        ../shared/data/qa/jsquad-valid.jsonl --limit 512 --concurrency 64
"""

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from load import percentile

from kotae.core.config import Settings
from kotae.evals.datasets import load_dataset
from kotae.rag.pipeline import RETRIEVAL_BATCH, PreparedQuestion
from kotae.rag.retrieval_batcher import RetrievalBatcher
from kotae.rag.retriever import Retriever
from kotae.runtime import open_retriever


async def run(
    questions: Sequence[str], concurrency: int, retrieve: Callable[[str], Awaitable[object]]
) -> dict[str, float]:
    """All questions through `retrieve`, `concurrency` requests in flight at a time."""
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(question: str) -> None:
        async with slots:
            started = time.perf_counter()
            await retrieve(question)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(question) for question in questions))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "wall_s": round(wall, 2),
        "questions_per_s": round(len(questions) / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


def batched(retriever: Retriever, top_k: int) -> RetrievalBatcher:
    def prepare_many(questions, _top_k, mode, _collection, _format, times) -> list[PreparedQuestion]:
        found = retriever.search_many(list(questions), top_k, mode, times=times)
        return [
            PreparedQuestion(q, r.hits, False, "", 0.0, r.best_cosine)
            for q, r in zip(questions, found, strict=True)
        ]

    return RetrievalBatcher(prepare_many, RETRIEVAL_BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", type=Path, help="QA set (any format `kotae eval --data` reads)")
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()

    questions = [item.question for item in load_dataset(args.questions, args.limit)]
    retriever = open_retriever(Settings())
    retriever.retrieve_many(questions[:8], args.top_k)  # warm-up: model, index and tokenizer caches
    batcher = batched(retriever, args.top_k)

    async def per_request(question: str) -> object:
        return await asyncio.to_thread(retriever.retrieve, question, args.top_k)

    async def shared_batch(question: str) -> object:
        return await batcher.prepare(question, args.top_k, None)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "index": str(retriever.index.directory),
        "retrieval": retriever.describe(),
        "questions": len(questions),
        "concurrency": args.concurrency,
        "per_request": asyncio.run(run(questions, args.concurrency, per_request)),
        "shared_batches": asyncio.run(run(questions, args.concurrency, shared_batch)),
    }
    report["throughput_ratio"] = round(
        report["shared_batches"]["questions_per_s"] / report["per_request"]["questions_per_s"], 2
    )
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
