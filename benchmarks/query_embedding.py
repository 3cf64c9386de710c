"""The query embedding alone, by batch size: `Embedder.embed_queries` of the configured embedder (as the
server and the eval load it: `KOTAE_EMBEDDER`, `KOTAE_EMBEDDER_BACKEND`, `KOTAE_EMBEDDER_PRECISION`,
`KOTAE_EMBEDDER_COMPILE`, `KOTAE_EMBEDDER_CUDA_GRAPHS`) on batches of consecutive questions, ROUNDS calls a
size after WARMUP. A call whose time grows with the questions in it is bound by work per question; one that
stays flat, by the call (its launches, copies and host work). Prints one JSON line per size. With
`--busy-thread`, each size again beside a thread that runs Python without pause, as a server's event loop
under load does: what the call's waits for the interpreter cost. With `--library` (torch backend), the same
with sentence-transformers' own `encode` of the same model on the same device and dtype, all the questions of
a call in one batch: what kotae's path adds to the library's. With `--profile PATH` (torch backend), torch's
profiler over ROUNDS more calls of the largest size writes the operators that took most host and device
time to PATH.

    python benchmarks/query_embedding.py ../shared/data/qa/jsquad-valid.jsonl --sizes 1 5 10 20 --library \\
        --busy-thread --profile /tmp/query-embedding-profile.txt
"""

import argparse
import json
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from load import percentile

from kotae.core.config import Settings
from kotae.evals.datasets import load_dataset
from kotae.indexer.embedder import Embedder
from kotae.models.store import ModelStore

Embed = Callable[[list[str]], object]


def timed_calls(embed: Embed, questions: list[str], size: int, calls: int) -> list[float]:
    """ms of each of `calls` calls on `size` consecutive questions, going round the set."""
    spent = []
    for call in range(calls):
        start = call * size % max(1, len(questions) - size)
        batch = questions[start : start + size]
        began = time.perf_counter()
        embed(batch)
        spent.append((time.perf_counter() - began) * 1000)
    return spent


def library_encode(embedder: Embedder) -> Embed:
    """sentence-transformers' `encode` of the model `embedder` holds, on its device and in its dtype (torch
    backend), as `benchmarks/embedding_speed.py` calls it."""
    model = embedder._model
    if model is None:
        raise SystemExit("--library needs the torch backend (KOTAE_EMBEDDER_BACKEND=torch)")
    return lambda batch: model.encode(
        batch, prompt_name=embedder.query_prompt_name, batch_size=len(batch), normalize_embeddings=True
    )


@contextmanager
def busy_python_thread() -> Iterator[None]:
    """A thread running Python bytecode until the block ends."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def timed_sizes(label: str, embed: Embed, questions: list[str], args: argparse.Namespace) -> None:
    """One JSON line per size of `args.sizes`, then (`--busy-thread`) one per size beside a busy thread."""
    timed_each_size(label, embed, questions, args)
    if args.busy_thread:
        with busy_python_thread():
            timed_each_size(f"{label}, beside a busy Python thread", embed, questions, args)


def timed_each_size(label: str, embed: Embed, questions: list[str], args: argparse.Namespace) -> None:
    for size in args.sizes:
        timed_calls(embed, questions, size, args.warmup)
        spent = sorted(timed_calls(embed, questions, size, args.rounds))
        row = {
            "embedder": label,
            "questions_a_call": size,
            "calls": args.rounds,
            "p50_ms": round(percentile(spent, 50), 2),
            "p99_ms": round(percentile(spent, 99), 2),
            "p50_ms_a_question": round(percentile(spent, 50) / size, 2),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.node(),
        }
        print(json.dumps(row, ensure_ascii=False), flush=True)


def profile(embed: Embed, questions: list[str], size: int, calls: int, path: Path) -> None:
    import torch
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        timed_calls(embed, questions, size, calls)
    averages = profiler.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=30)]
    if torch.cuda.is_available():
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=30))
    path.write_text("\n\n".join(tables), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", type=Path, help="QA set (any format `kotae eval --data` reads)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--rounds", type=int, default=100, help="timed calls a size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls a size first")
    parser.add_argument("--library", action="store_true", help="sentence-transformers' encode too")
    parser.add_argument(
        "--busy-thread", action="store_true", help="each size beside a busy Python thread too"
    )
    parser.add_argument("--profile", type=Path, help="where the profiler's tables go (torch backend)")
    args = parser.parse_args()
    settings = Settings()
    embedder = Embedder(ModelStore(settings.home).embedder(settings.embedder))
    questions = [item.question for item in load_dataset(args.questions)]
    graphs = ""
    if embedder.query_graphs is not None:
        captured = embedder.query_graphs
        mib = captured.memory_bytes / 2**20
        graphs = f" from CUDA graphs (captured in {captured.capture_s:.1f} s, {mib:.0f} MiB)"
    label = f"{embedder.name} {embedder.backend} on {embedder.device}{graphs}"
    timed_sizes(label, embedder.embed_queries, questions, args)
    if args.library:
        timed_sizes(f"{label}, sentence-transformers' encode", library_encode(embedder), questions, args)
    if args.profile is not None:
        profile(embedder.embed_queries, questions, max(args.sizes), args.rounds, args.profile)


if __name__ == "__main__":
    main()
