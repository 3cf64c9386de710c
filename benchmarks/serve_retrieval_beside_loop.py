"""`kotae serve`'s shared retrieval batches (`Pipeline.prepare_batched`) under CLIENTS closed-loop clients,
each asking its next question GENERATE ms after its last one's passages came back (the engine's share of a
request), on one event loop that also runs Python for BUSY ms of every BUSY + IDLE ms (a server's loop,
carrying requests and the engine's outputs): first with nothing else on the loop, then busy, once per thread
switch interval given (`KOTAE_SERVE_SWITCH_INTERVAL_MS`). The passages come from `KOTAE_INDEX` and the
prompts are counted with the generator's tokenizer, as the server does; nothing is generated. Prints one JSON
line per setting: questions retrieved a second, each question's retrieval (its wait for a batch included)
p50 and p99, the batches' mean size and their stages' mean ms, and how much Python the busy loop got through.

    KOTAE_INDEX=/tmp/jawiki-idx python benchmarks/serve_retrieval_beside_loop.py \\
        ../shared/data/qa/jsquad-valid.jsonl --switch-ms 5 1
"""

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from load import percentile

from kotae.core.config import Settings
from kotae.core.switch_interval import switch_interval
from kotae.evals.datasets import load_dataset
from kotae.models.store import ModelStore
from kotae.rag.collections import Collections
from kotae.rag.pipeline import Pipeline
from kotae.rag.retrieval_batcher import RetrievalBatch
from kotae.rag.token_counter import TokenCounter
from kotae.runtime import open_retriever


async def busy_loop(busy_s: float, idle_s: float, until: float) -> int:
    """Python for `busy_s`, then the loop's other work for `idle_s`, until `until`; the turns it made."""
    turns = 0
    while time.perf_counter() < until:
        stop = time.perf_counter() + busy_s
        while time.perf_counter() < stop:
            turns += 1
        await asyncio.sleep(idle_s)
    return turns


async def client(
    pipeline: Pipeline, questions: Iterator[str], generate_s: float, until: float
) -> list[float]:
    """Each question's retrieval ms, one question after another until `until`."""
    retrieved_ms = []
    while time.perf_counter() < until:
        started = time.perf_counter()
        await pipeline.prepare_batched(next(questions))
        retrieved_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(generate_s)
    return retrieved_ms


async def serve_for(pipeline: Pipeline, questions: list[str], args: argparse.Namespace, busy: bool) -> dict:
    """The clients for `--seconds`, beside the busy loop when `busy`: what they got."""
    batches: list[RetrievalBatch] = []
    pipeline.observe_retrieval_batches(batches.append)
    cycle = itertools.cycle(questions)
    started = time.perf_counter()
    until = started + args.seconds
    work = [client(pipeline, cycle, args.generate_ms / 1000, until) for _ in range(args.clients)]
    if busy:
        work.append(busy_loop(args.busy_ms / 1000, args.idle_ms / 1000, until))
    done = await asyncio.gather(*work)
    wall = time.perf_counter() - started
    retrieved = sorted(ms for client_ms in done[: args.clients] for ms in client_ms)
    turns = done[args.clients] if busy else 0
    stages = {name for batch in batches for name in batch.stage_ms}
    return {
        "questions_per_s": round(len(retrieved) / wall, 1),
        "retrieve_p50_ms": round(percentile(retrieved, 50), 1),
        "retrieve_p99_ms": round(percentile(retrieved, 99), 1),
        "batches": len(batches),
        "mean_batch": round(statistics.fmean(batch.size for batch in batches), 1),
        "queued_ms": round(statistics.fmean(ms for batch in batches for ms in batch.queued_ms), 1),
        "stage_ms_a_batch": {
            name: round(statistics.fmean(batch.stage_ms.get(name, 0.0) for batch in batches), 1)
            for name in sorted(stages)
        },
        "loop_mturns_per_s": round(turns / wall / 1e6, 2),
    }


def server_pipeline(settings: Settings) -> Pipeline:
    """The default collection's retrieval and the server's prompts, without an engine: prompts are only
    counted (with the generator's tokenizer), never generated from."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ModelStore(settings.home).generator(settings.generator))
    counting = SimpleNamespace(count_tokens=TokenCounter(tokenizer))
    return Pipeline(Collections.of(open_retriever(settings)), cast(Any, counting), settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", type=Path, help="QA set (any format `kotae eval --data` reads)")
    parser.add_argument("--limit", type=int, default=980)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--generate-ms", type=float, default=450.0, help="each client's pause between questions"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="each setting's run")
    parser.add_argument("--busy-ms", type=float, default=5.0)
    parser.add_argument("--idle-ms", type=float, default=1.0)
    parser.add_argument("--switch-ms", type=float, nargs="+", default=[5.0, 1.0], help="intervals to try")
    args = parser.parse_args()

    settings = Settings()
    questions = [item.question for item in load_dataset(args.questions, args.limit)]
    pipeline = server_pipeline(settings)
    pipeline.prepare_many(questions[:8])  # warm-up: index pages, the embedder's kernels, tokenizer caches
    base = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "clients": args.clients,
        "generate_ms": args.generate_ms,
        "seconds": args.seconds,
    }
    print(json.dumps({**base, "beside": None, **asyncio.run(serve_for(pipeline, questions, args, False))}))
    for switch_ms in args.switch_ms:
        with switch_interval(switch_ms):
            result = asyncio.run(serve_for(pipeline, questions, args, True))
        beside = {"busy_ms": args.busy_ms, "idle_ms": args.idle_ms, "switch_ms": switch_ms}
        print(json.dumps({**base, "beside": beside, **result}), flush=True)


if __name__ == "__main__":
    main()
