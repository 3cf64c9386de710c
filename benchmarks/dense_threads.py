"""A served batch's dense search by faiss's OpenMP team: `DenseIndex.search` of a Flat index of COUNT random
unit vectors (the README index's size by default) for each of QUESTIONS questions at once, on each team size
of THREADS, ROUNDS calls each; alone, beside BUSY_PROCESSES processes that keep cores busy (a GPU host's
engine core, its API server, tokenizer threads), and beside a thread of this process that runs Python without
pause (the server's event loop under load), at each switch interval of SWITCH_MS. A team that waits for its
slowest thread, or a call that waits for the interpreter once faiss returns, shows here as a call many times
its scan. Prints one JSON line per setting.

    python benchmarks/dense_threads.py --questions 1 3 16 --threads 1 2 4 16 --busy-processes 0 8 15
"""

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime

import faiss
import numpy as np
from load import percentile
from query_embedding import busy_python_thread

from kotae.core.switch_interval import switch_interval
from kotae.indexer.dense import DenseIndex, FlatSpec


def spin_forever() -> None:
    while True:
        pass


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes running Python until the block ends."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=spin_forever, daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
            process.join()


def timed_searches(index: DenseIndex, queries: np.ndarray, k: int, rounds: int) -> list[float]:
    """ms of each of `rounds` searches of `queries`, after one untimed, sorted."""
    index.search(queries, k)
    spent = []
    for _ in range(rounds):
        began = time.perf_counter()
        index.search(queries, k)
        spent.append((time.perf_counter() - began) * 1000)
    return sorted(spent)


def row(setting: dict, spent: list[float]) -> dict:
    """One JSON line: the setting, then its sorted times' p50 and p99."""
    return setting | {
        "p50_ms": round(percentile(spent, 50), 3),
        "p99_ms": round(percentile(spent, 99), 3),
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cores = os.cpu_count() or 1
    parser.add_argument("--count", type=int, default=18_326, help="vectors in the index")
    parser.add_argument("--dimension", type=int, default=384, help="multilingual-e5-small's")
    parser.add_argument("--questions", type=int, nargs="+", default=[1, 3, 16], help="questions a search")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, 2, 4, cores}))
    parser.add_argument("--busy-processes", type=int, nargs="+", default=[0, cores // 2])
    parser.add_argument(
        "--switch-ms", type=float, nargs="+", default=[5.0, 1.0],
        help="switch intervals beside the busy thread (Python's is 5)",
    )  # fmt: skip
    parser.add_argument("--depth", type=int, default=60, help="passages a question ranks")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    vectors = np.random.default_rng(0).standard_normal((args.count, args.dimension), dtype=np.float32)
    faiss.normalize_L2(vectors)
    index = DenseIndex.build(FlatSpec(), vectors, np.arange(args.count, dtype=np.int64))
    for busy in args.busy_processes:
        with busy_processes(busy):
            for switch_ms in [None, *args.switch_ms]:
                beside = busy_python_thread() if switch_ms is not None else nullcontext()
                with switch_interval(switch_ms or 0), beside:
                    for questions, threads in itertools.product(args.questions, args.threads):
                        faiss.omp_set_num_threads(threads)
                        spent = timed_searches(index, vectors[:questions], args.depth, args.rounds)
                        setting = {
                            "vectors": args.count,
                            "questions": questions,
                            "threads": threads,
                            "busy_processes": busy,
                            "busy_thread_switch_ms": switch_ms,
                        }
                        print(json.dumps(row(setting, spent)), flush=True)


if __name__ == "__main__":
    main()
