"""Index scale benchmark: a `kotae index build` timed with its peak memory, then the built index's hybrid
recall on QA sets (dense, BM25 and fused, at 5 and 50; with a reranker also the fused top 50 re-ordered by
it) and its per-question retrieval latency stage by stage, and its memory, as served.

    # the build, as a user runs it, sampled every half second (RSS of the build process and of its workers)
    python benchmarks/index_scale.py build --out /tmp/idx --report build.json -- \\
        /tmp/jawiki-5m.xml.bz2 ../shared/data/jawiki-paragraphs.jsonl --type ivfpq
    # recall and latency of one or more indexes, side by side (questions embedded on --device, the CPU by
    # default); latency once per faiss thread count given
    python benchmarks/index_scale.py query --index /tmp/idx --index /tmp/idx-13k --report query.json \\
        --faiss-threads 0 1
    # the same with a trained reranker (`kotae train reranker`), run like the embedder on --device
    python benchmarks/index_scale.py query --index /tmp/idx --report query.json --device cuda \
        --reranker /tmp/reranker

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
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from kotae.core.passage import Hit
    from kotae.core.qa_jsonl import QAItem
    from kotae.indexer.index import KeyRanking
    from kotae.rag.retriever import Retriever


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


DEPTH = 50
"""Candidates per ranking, as the retriever's fusion takes them (rag.retriever.FUSION_DEPTH)."""


def query(args: argparse.Namespace) -> dict:
    import faiss
    import torch

    from kotae.core.config import Settings
    from kotae.evals.datasets import load_dataset
    from kotae.indexer.dense import IvfPqSpec
    from kotae.indexer.embedder import load_embedder
    from kotae.indexer.index import Index
    from kotae.rag.reranker import Reranker
    from kotae.rag.retriever import Retriever

    settings = Settings()
    sets = {path: load_dataset(path) for path in args.data}
    reranker = Reranker(args.reranker, device=args.device) if args.reranker else None
    results = {}
    for directory in args.index:
        before = psutil.Process().memory_info().rss
        opened = time.perf_counter()
        index = Index.open(directory, gpu=False)
        open_seconds = time.perf_counter() - opened
        embedder = load_embedder(args.embedder or settings.embedder, settings.home, device=args.device)
        retriever = Retriever(index, embedder, settings, reranker=reranker)
        row: dict = {
            "passages": len(index),
            "open_seconds": round(open_seconds, 2),
            "retrieval": retriever.describe(),
            "recall": {path.stem: recall(retriever, sets[path], args.rerank_depth) for path in args.data},
        }
        questions = [item.question for item in sets[args.data[0]]][: args.latency_questions]
        if args.nprobe and isinstance(index.manifest.dense, IvfPqSpec):
            sweep = nprobe_sweep(retriever, sets[args.data[0]], questions, args.nprobe)
            index.tune_dense_search(nprobe=index.manifest.dense.nprobe)
            row["dense by nprobe"] = sweep
        row["threads"] = {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}
        row["latency_ms"] = {}
        for threads in args.faiss_threads:
            faiss.omp_set_num_threads(threads or row["threads"]["faiss"])
            row["latency_ms"][f"faiss threads {threads or 'default'}"] = stage_latencies(retriever, questions)
        faiss.omp_set_num_threads(row["threads"]["faiss"])
        row["served_rss_gib"] = round((psutil.Process().memory_info().rss - before) / 2**30, 2)
        results[str(directory)] = row
        index.close()
    return results


def recall(retriever: "Retriever", items: "Iterable[QAItem]", rerank_depths: Sequence[int] = ()) -> dict:
    """Recall of the gold passage at 5 and at DEPTH for dense, BM25 and fused rankings (for IVF-PQ also with
    the dense half searched exhaustively), and the share of questions whose fused top 5 holds an answer
    string in any passage (gold or not). With the retriever's reranker also the fused hits re-ordered by
    it: "hybrid reranked" at its settings' `rerank_depth` and "hybrid reranked top D" at each other depth
    of `rerank_depths`, each fused as deep as the retriever fuses for that depth."""
    items = [item for item in items if item.gold_passage_ids]
    questions = [item.question for item in items]
    view = retriever.index.view()
    served_depth = retriever.settings.rerank_depth
    depths = sorted({served_depth, *rerank_depths}) if retriever.reranker is not None else []
    deepest = max([DEPTH, *depths])
    vectors = retriever.embedder.embed_queries(questions)
    dense = view.rank_dense(vectors, deepest)
    lexical = view.rank_bm25(questions, deepest)

    def fused(depth: int) -> "list[KeyRanking]":
        return [retriever.fuse(d[:depth], b[:depth]) for d, b in zip(dense, lexical, strict=True)]

    rankings = {"dense": dense, "bm25": lexical, "hybrid": fused(DEPTH)}
    if retriever.index.manifest.dense.type == "ivfpq":
        # What an ANN search that missed nothing would give: every exact vector scanned.
        exhaustive = view.rank_dense(vectors, DEPTH, exhaustive=True)
        rankings["dense exhaustive"] = exhaustive
        rankings["hybrid exhaustive"] = [
            retriever.fuse(d, b[:DEPTH]) for d, b in zip(exhaustive, lexical, strict=True)
        ]
    found = {mode: view.hits([ranking[:DEPTH] for ranking in ranked]) for mode, ranked in rankings.items()}
    for depth in depths:
        mode = "hybrid reranked" if depth == served_depth else f"hybrid reranked top {depth}"
        candidates = view.hits([ranking[:depth] for ranking in fused(max(depth, DEPTH))])
        found[mode] = retriever.rerank(questions, candidates, depth)
    return recall_report(found, items)


def recall_report(found: "dict[str, list[list[Hit]]]", items: "list[QAItem]") -> dict:
    """`recall`'s figures from each mode's hits per question, best first (at least DEPTH deep where the
    index holds as many). A question counts as found at k when a passage of its top k is a gold one or
    a chunk of one (`rag.metrics.golds_found`). With fused hits ("hybrid", "hybrid reranked"), also the
    share of their top 5s that hold an answer string."""
    from kotae.rag.metrics import golds_found

    report: dict = {"questions": len(items)}
    for mode, hit_lists in found.items():
        ids = [[hit.passage.id for hit in hits] for hits in hit_lists]
        for k in (5, DEPTH):
            hit_rate = [
                bool(golds_found(ranked[:k], set(item.gold_passage_ids)))
                for ranked, item in zip(ids, items, strict=True)
            ]
            report[f"{mode}@{k}"] = round(statistics.fmean(hit_rate), 4)
    for mode in found:
        if mode != "hybrid" and not mode.startswith("hybrid reranked"):
            continue
        holding = [
            any(answer in hit.passage.text for hit in hits[:5] for answer in item.answers)
            for hits, item in zip(found[mode], items, strict=True)
        ]
        report[f"{mode}@5 holds an answer"] = round(statistics.fmean(holding), 4)
    return report


def nprobe_sweep(
    retriever: "Retriever", items: "Iterable[QAItem]", questions: list[str], nprobes: list[int]
) -> dict:
    """Dense recall@5 and @DEPTH, and one-question dense search p50/p99 ms, at each IVF-PQ nprobe (the
    index is left at the last)."""
    index = retriever.index
    items = [item for item in items if item.gold_passage_ids]
    vectors = retriever.embedder.embed_queries([item.question for item in items])
    one_by_one = retriever.embedder.embed_queries(questions)
    report = {}
    for nprobe in nprobes:
        index.tune_dense_search(nprobe=nprobe)
        view = index.view()
        found = recall_report({"dense": view.hits(view.rank_dense(vectors, DEPTH))}, items)
        times = []
        for vector in one_by_one:
            started = time.perf_counter()
            view.rank_dense(vector[None, :], DEPTH)
            times.append((time.perf_counter() - started) * 1000)
        report[str(nprobe)] = {**found, "dense_ms": percentiles(times)}
    return report


def percentiles(times: list[float]) -> dict:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {"p50": round(times[len(times) // 2], 2), "p99": round(p99, 2)}


def stage_latencies(retriever: "Retriever", questions: list[str]) -> dict:
    """p50/p99 ms per question, one question at a time, of each stage of a hybrid retrieval (with a reranker:
    the fused top `rerank_depth` read, then re-ordered) and of the whole `Retriever.retrieve`, after 20
    warm-up questions."""
    reranking = retriever.reranker is not None
    read = retriever.settings.rerank_depth if reranking else 5
    names = ["embed", "dense", "bm25", "fuse+read", *(["rerank"] if reranking else []), "retrieve"]
    stages: dict[str, list[float]] = {name: [] for name in names}
    for warm_up in questions[:20]:
        retriever.retrieve(warm_up, 5)
    clock = [0.0]

    def lap(stage: str) -> None:
        clock.append(time.perf_counter())
        stages[stage].append((clock[-1] - clock[-2]) * 1000)

    for question in questions:
        view = retriever.index.view()
        clock.append(time.perf_counter())
        vector = retriever.embedder.embed_queries([question])
        lap("embed")
        dense = view.rank_dense(vector, DEPTH)
        lap("dense")
        lexical = view.rank_bm25([question], DEPTH)
        lap("bm25")
        hits = view.hits([retriever.fuse(dense[0], lexical[0])[:read]])
        lap("fuse+read")
        if reranking:
            retriever.rerank([question], hits)
            lap("rerank")
        retriever.retrieve(question, 5)
        lap("retrieve")
    return {"questions": len(questions)} | {stage: percentiles(times) for stage, times in stages.items()}


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
    query_parser.add_argument(
        "--faiss-threads",
        type=int,
        nargs="+",
        default=[0],
        help="faiss OpenMP threads for each latency run (0: faiss's default)",
    )
    query_parser.add_argument(
        "--nprobe",
        type=int,
        nargs="*",
        default=[],
        help="IVF-PQ indexes: dense recall and one-question latency at each of these nprobe values",
    )
    query_parser.add_argument(
        "--reranker",
        type=Path,
        help="reranker folder (`kotae train reranker`), run on --device: adds the reranked hybrid recall "
        "and a rerank stage to the latency",
    )
    query_parser.add_argument(
        "--rerank-depth",
        type=int,
        nargs="*",
        default=[],
        help="with --reranker: also the recall with the fused top D re-ordered, for each of these D "
        "(the served depth is KOTAE_RERANK_DEPTH's)",
    )
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
