"""The in-process eval's retrieval beside a thread that keeps the interpreter busy, as the event loop carrying
vLLM's outputs does during `kotae eval`: the first LIMIT questions in the eval's retrieval batches (every
question embedded first, as the eval does it), first alone, then beside a thread that runs Python for BUSY ms
and sleeps IDLE ms, once per thread switch interval given (`KOTAE_EVAL_SWITCH_INTERVAL_MS`); with `--apart`,
each setting again with the retrieval in a process of its own (`kotae.evals.retrieval_process`). Prints one
JSON line per setting: the median retrieval wall of ROUNDS runs, its stages, and how many loop turns a
second the busy thread got through (its share of the interpreter).

    KOTAE_INDEX=/tmp/jawiki-idx python benchmarks/retrieval_beside_loop.py \\
        ../shared/data/qa/jsquad-valid.jsonl --switch-ms 5 1 0.5 --apart
"""

import argparse
import json
import platform
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from kotae.core.config import Settings
from kotae.core.switch_interval import switch_interval
from kotae.evals.datasets import load_dataset
from kotae.evals.retrieval_process import RetrievalJob, RetrievalProcess, RetrievedBatch, search_job
from kotae.evals.targets import retrieval_batches
from kotae.rag.metrics import recall_depth
from kotae.rag.stage_times import StageTimes
from kotae.runtime import open_retriever


class BusyLoop:
    """A thread that runs Python for `busy_ms`, then sleeps `idle_ms`, until stopped, counting its turns."""

    def __init__(self, busy_ms: float, idle_ms: float) -> None:
        self.busy_s, self.idle_s = busy_ms / 1000, idle_ms / 1000
        self.turns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            until = time.perf_counter() + self.busy_s
            while time.perf_counter() < until:
                self.turns += 1
            time.sleep(self.idle_s)

    def __enter__(self) -> "BusyLoop":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


Retrieval = Callable[[], tuple[float, dict[str, float]]]
"""One eval's retrieval: its wall (ms) and each stage's total (ms)."""
Search = Callable[[RetrievalJob], Iterator[RetrievedBatch]]


def eval_retrieval(search: Search, job: RetrievalJob) -> Retrieval:
    """The in-process eval's retrieval of `job` by `search` (`search_job` here, or a `RetrievalProcess`'s)."""

    def run() -> tuple[float, dict[str, float]]:
        times = StageTimes()
        started = time.perf_counter()
        for batch in search(job):
            times.merge(batch.stage_ms)
        return (time.perf_counter() - started) * 1000, {name: sum(ms) for name, ms in times.ms.items()}

    return run


def median_of(rounds: int, run: Retrieval) -> dict[str, object]:
    """The median run's wall and stages, and the fastest wall."""
    results = sorted((run() for _ in range(rounds)), key=lambda result: result[0])
    wall, stages = results[len(results) // 2]
    stages_ms = {name: round(ms) for name, ms in stages.items()}
    return {"wall_ms": round(wall), "min_ms": round(results[0][0]), "stages_ms": stages_ms}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", type=Path, help="QA set (any format `kotae eval --data` reads)")
    parser.add_argument("--limit", type=int, default=980)
    parser.add_argument("--rounds", type=int, default=7, help="runs per setting; the median is reported")
    parser.add_argument("--busy-ms", type=float, default=20.0)
    parser.add_argument("--idle-ms", type=float, default=1.0)
    parser.add_argument("--switch-ms", type=float, nargs="+", default=[5.0, 1.0], help="intervals to try")
    parser.add_argument("--apart", action="store_true", help="also in a process of its own")
    args = parser.parse_args()

    settings = Settings()
    questions = [item.question for item in load_dataset(args.questions, args.limit)]
    batches = retrieval_batches(len(questions), settings.eval_retrieval_batch)
    job = RetrievalJob(questions, None, settings.top_k, recall_depth(settings.top_k), batches)
    retriever = open_retriever(settings)
    process = RetrievalProcess.start(settings) if args.apart else None
    try:
        searches: dict[str, Search] = {"thread": partial(search_job, retriever)}
        if process is not None:
            process.wait_ready()
            searches["process"] = process.search_batches
        for where, search in searches.items():
            run = eval_retrieval(search, job)
            run()  # warm-up: index pages and tokenizer caches
            measure(where, run, args, len(questions))
    finally:
        if process is not None:
            process.close()


def measure(where: str, run: Retrieval, args: argparse.Namespace, questions: int) -> None:
    """One line alone, then one per switch interval beside the busy thread."""
    base = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "questions": questions,
        "rounds": args.rounds,
        "retrieved_in": where,
    }
    print(json.dumps({**base, "beside": None, **median_of(args.rounds, run)}))
    for switch_ms in args.switch_ms:
        with switch_interval(switch_ms), BusyLoop(args.busy_ms, args.idle_ms) as loop:
            started = time.perf_counter()
            result = median_of(args.rounds, run)
            turns_per_s = loop.turns / (time.perf_counter() - started)
        beside = {"busy_ms": args.busy_ms, "idle_ms": args.idle_ms, "switch_ms": switch_ms}
        print(
            json.dumps({**base, "beside": beside, **result, "loop_mturns_per_s": round(turns_per_s / 1e6, 2)})
        )


if __name__ == "__main__":
    main()
