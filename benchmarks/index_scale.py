"""Index scale benchmark: a `kotae index build` timed with its peak memory, then the built index's hybrid
recall@5 on QA sets and its per-question retrieval latency and memory, as served.

    # the build, as a user runs it, sampled every half second (RSS of the build process and of its workers)
    python benchmarks/index_scale.py build --out /tmp/idx --report build.json -- \\
        /tmp/jawiki-5m.xml.bz2 ../shared/data/jawiki-paragraphs.jsonl --type ivfpq
    # recall@5 and latency of one or more indexes, side by side (queries embedded on the CPU)
    python benchmarks/index_scale.py query --index /tmp/idx --index /tmp/idx-13k --report query.json

Figures are recorded in docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
QA_SETS = (DATA / "qa" / "jsquad-valid-dev.jsonl", DATA / "qa" / "jaquad-dev.jsonl")


def machine() -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


class RssSampler:
    """Peak RSS of a process alone and of it with all its children, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self._process = psutil.Process(pid)
        self._every = every
        self.peak_main = self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                main = self._process.memory_info().rss
                tree = main + sum(
                    child.memory_info().rss
                    for child in self._process.children(recursive=True)
                    if child.is_running()
                )
            except psutil.Error:
                main = tree = 0
            self.peak_main, self.peak_tree = max(self.peak_main, main), max(self.peak_tree, tree)
            self._stop.wait(self._every)


def build(args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "kotae", "index", "build", *args.build_args, "--out", str(args.out)]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    with RssSampler(child.pid) as sampler:
        code = child.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited with {code}")
    manifest = json.loads((args.out / "manifest.json").read_text())
    return {
        "command": " ".join(command),
        "seconds": round(seconds, 1),
        "passages": manifest["count"],
        "documents": manifest["documents"],
        "passages_per_second": round(manifest["count"] / seconds, 1),
        "peak_rss_gib_build_process": round(sampler.peak_main / 2**30, 2),
        "peak_rss_gib_with_workers": round(sampler.peak_tree / 2**30, 2),
        "index_gib_on_disk": round(
            sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2**30, 2
        ),
        "dense": manifest["dense"],
        "build_stages": manifest.get("build_stages"),
    }


def query(args: argparse.Namespace) -> dict:
    from kotae.core.config import Settings
    from kotae.evals.datasets import load_dataset
    from kotae.indexer.embedder import load_embedder
    from kotae.indexer.index import Index
    from kotae.rag.metrics import score_retrieval
    from kotae.rag.retriever import Retriever

    settings = Settings()
    results = {}
    for directory in args.index:
        before = psutil.Process().memory_info().rss
        opened = time.perf_counter()
        index = Index.open(directory, gpu=False)
        open_seconds = time.perf_counter() - opened
        embedder = load_embedder(args.embedder or settings.embedder, settings.home, device=args.device)
        retriever = Retriever(index, embedder, settings)
        row: dict = {"passages": len(index), "open_seconds": round(open_seconds, 2), "recall@5": {}}
        for path in args.data:
            items = [item for item in load_dataset(path) if item.gold_passage_ids]
            hits = []
            for start in range(0, len(items), 256):
                batch = items[start : start + 256]
                hits.extend(retriever.retrieve_many([item.question for item in batch], 5))
            recall = [
                score_retrieval([hit.passage.id for hit in found], item.gold_passage_ids, 5).recall[5]
                for item, found in zip(items, hits, strict=True)
            ]
            row["recall@5"][path.stem] = round(statistics.fmean(recall), 4)
        questions = [item.question for item in load_dataset(args.data[0])][: args.latency_questions]
        for question in questions[:20]:  # warm-up: caches, lazy allocations
            retriever.retrieve(question, 5)
        latencies = []
        for question in questions:
            started = time.perf_counter()
            retriever.retrieve(question, 5)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        row["latency_ms"] = {
            "questions": len(latencies),
            "p50": round(latencies[len(latencies) // 2], 2),
            "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            "mean": round(statistics.fmean(latencies), 2),
        }
        row["served_rss_gib"] = round((psutil.Process().memory_info().rss - before) / 2**30, 2)
        results[str(directory)] = row
        index.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="time a `kotae index build` and sample its memory")
    build_parser.add_argument("--out", type=Path, required=True)
    build_parser.add_argument("--report", type=Path, required=True)
    build_parser.add_argument(
        "build_args", nargs=argparse.REMAINDER, help="after --: sources and build options"
    )
    query_parser = commands.add_parser("query", help="recall@5 and latency of built indexes")
    query_parser.add_argument("--index", type=Path, action="append", required=True)
    query_parser.add_argument("--data", type=Path, action="append", default=None)
    query_parser.add_argument("--device", default="cpu", help="where questions are embedded")
    query_parser.add_argument("--embedder", help="model store name or folder (default: the settings')")
    query_parser.add_argument("--latency-questions", type=int, default=1000)
    query_parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "build":
        args.build_args = [a for a in args.build_args if a != "--"]
        result = build(args)
    else:
        args.data = args.data or list(QA_SETS)
        result = query(args)
    report = {"machine": machine(), args.command: result}
    args.report.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
