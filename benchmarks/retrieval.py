"""Retrieval benchmark: quality (recall@1/5/20, MRR) of dense, BM25 and hybrid retrieval on JSQuAD and
JaQuAD questions over jawiki-paragraphs, index build rate, and faiss latency/recall at 13k and 1M vectors.

    python benchmarks/retrieval.py --out /tmp/retrieval            # writes /tmp/retrieval.json and .md

Passage and question embeddings are cached as .npy under --cache (outside the repository), keyed by the
embedder's hash, the chunk size and the input file's sha256, so reruns skip the slow part (13k passages
take about an hour on two CPU cores). `--embed-only` fills the cache and stops: run it where a GPU is, copy
the cache here, then run the rest. The 1M test adds random unit vectors to the real ones: the questions'
true neighbours stay the real passages, and the random ones are the haystack the index must search past.
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kotae.core.passage import Passage
from kotae.indexer.chunking import chunk_document, indexed_text
from kotae.indexer.embedder import Embedder, load_embedder
from kotae.indexer.sources import read_documents

if TYPE_CHECKING:  # faiss and pydantic stay out of --embed-only, which runs where they are not installed
    from kotae.indexer.dense import DenseIndex, DenseSpec
    from kotae.indexer.index import Index

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CORPUS = DATA / "jawiki-paragraphs.jsonl"
DATASETS = {
    "jsquad-valid": DATA / "qa" / "jsquad-valid.jsonl",
    "jaquad-dev": DATA / "qa" / "jaquad-dev.jsonl",
}
RECALL_AT = (1, 5, 20)
FUSION_WEIGHTS = (0.3, 0.4, 0.5, 0.7)
ANN_K = 10
HNSW_EF_SEARCH = (16, 32, 64, 128, 256)
IVFPQ_NPROBE = (8, 16, 32, 64)
IVFPQ_RERANK = (1, 4, 16, 64)
"""Shortlist of k·rerank candidates re-scored exactly; 1 re-orders the codes' own top k (their recall)."""


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    gold: frozenset[str]
    """Ids of the paragraphs the question was written on (documents, before chunking)."""


@dataclass(frozen=True)
class Corpus:
    chunk_chars: int
    passages: list[Passage]
    document_of: dict[str, str]
    """Passage id → the paragraph (document) id it was cut from."""


def main() -> None:
    args = _arguments()
    embedder = _embedder(args)
    cache = EmbeddingCache(args.cache, embedder)
    corpora = {chunk: chunk_corpus(chunk) for chunk in args.chunk_chars}
    questions = {name: read_questions(path, args.questions) for name, path in DATASETS.items()}
    embedding = {
        f"chunk{c}": cache.embed(
            f"chunk{c}", [indexed_text(p) for p in corpus.passages], embedder.embed_passages
        )
        for c, corpus in corpora.items()
    }
    embedding |= {
        f"questions-{name}": cache.embed(
            f"questions-{name}", [q.question for q in qs], embedder.embed_queries
        )
        for name, qs in questions.items()
    }
    if args.embed_only:
        print(json.dumps(embedding, indent=2))
        return
    results = Results(Path(f"{args.out}.json"), resume=args.resume)
    results.data |= {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": _machine(),
        "embedder": {"name": embedder.name, "hash": embedder.hash, "device": embedder.device},
        "embedding_cache": embedding,
    }
    results.stage(("cpu_embedding",), cpu_embedding, embedder, corpora[args.chunk_chars[0]], questions, cache)
    cached = CachedEmbedder(embedder, cache)
    with tempfile.TemporaryDirectory(prefix="kotae-retrieval-bench-", dir=args.cache) as work:
        for chunk, corpus in corpora.items():
            name = f"chunk {chunk}"
            if results.has(("quality", name)) and results.has(("retrieve_latency", name)):
                continue
            index, build = build_real_index(corpus, cached, Path(work) / f"chunk-{chunk}")
            results.put(("build", name), build)
            results.stage(("quality", name), quality, index, cached, corpus, questions)
            results.stage(("retrieve_latency", name), retrieve_latency, index, cached, questions)
            index.close()
    passages = cache.vectors(f"chunk{args.chunk_chars[-1]}")
    queries = cache.vectors("questions-jsquad-valid")[: args.latency_queries]
    ann(results, f"{len(passages)} real", passages, queries, len(passages), {})
    ann(results, f"{args.scale} (real + random)", passages, queries, args.scale, args.scale_params)
    Path(f"{args.out}.md").write_text(markdown(results.data))
    print(markdown(results.data))


class Results:
    """The report so far, saved after every stage, so that a run killed halfway (the 1M builds take long)
    resumes with --resume where it stopped."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.data: dict = json.loads(path.read_text()) if resume and path.exists() else {}

    def has(self, keys: tuple[str, ...]) -> bool:
        node = self.data
        for key in keys:
            if key not in node:
                return False
            node = node[key]
        return True

    def stage(self, keys: tuple[str, ...], compute: Callable[..., object], *args: object) -> None:
        """Runs `compute(*args)` unless a resumed report already holds its result."""
        if not self.has(keys):
            self.put(keys, compute(*args))

    def put(self, keys: tuple[str, ...], value: object) -> None:
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")
        os.replace(partial, self.path)


# Inputs ---------------------------------------------------------------------------------------------------


def chunk_corpus(chunk_chars: int) -> Corpus:
    passages, document_of = [], {}
    for document in read_documents(CORPUS):
        for passage in chunk_document(document, chunk_chars):
            passages.append(passage)
            document_of[passage.id] = document.id
    return Corpus(chunk_chars, passages, document_of)


def read_questions(path: Path, limit: int | None) -> list[Question]:
    with path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [Question(r["qid"], r["question"], frozenset(r["gold_passage_ids"])) for r in rows[:limit]]


# Embeddings -----------------------------------------------------------------------------------------------


class EmbeddingCache:
    """Embeddings on disk, computed once per (embedder, texts) and reused by later runs."""

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        self.directory = directory
        self.embedder = embedder
        directory.mkdir(parents=True, exist_ok=True)
        self._texts: dict[str, list[str]] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, kind: str, texts: list[str], embed: Callable[..., np.ndarray]) -> dict:
        """Loads or computes the vectors of `texts` (remembered as `kind`); returns how they were made."""
        digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
        key = f"{self.embedder.hash[:12]}-{kind}-{digest[:12]}"
        path, meta_path = self.directory / f"{key}.npy", self.directory / f"{key}.json"
        if not path.exists():
            started = time.perf_counter()
            vectors = embed(texts, batch_size=64)
            seconds = time.perf_counter() - started
            np.save(path, vectors)
            meta = {
                "count": len(texts),
                "seconds": round(seconds, 1),
                "per_second": round(len(texts) / seconds, 1),
            }
            meta |= {"device": self.embedder.device, "machine": _machine()["processor"]}
            meta_path.write_text(json.dumps(meta, indent=2))
        self._texts[kind], self._vectors[kind] = texts, np.load(path)
        return json.loads(meta_path.read_text())

    def vectors(self, kind: str) -> np.ndarray:
        return self._vectors[kind]

    def lookup(self) -> dict[str, np.ndarray]:
        """Text → vector for every input embedded so far (passages as embedded: title, newline, text)."""
        return {
            text: vector
            for kind, texts in self._texts.items()
            for text, vector in zip(texts, self._vectors[kind], strict=True)
        }


class CachedEmbedder(Embedder):
    """The real embedder (same name and hash), answering from the cache: builds and evaluations then
    measure everything but the model. A text not in the cache goes to the model."""

    def __init__(self, real: Embedder, cache: EmbeddingCache) -> None:
        self.__dict__.update(real.__dict__)
        self._table = cache.lookup()
        self._real = real

    def embed_passages(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        return self._answer(texts, self._real.embed_passages)

    def embed_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self._answer(texts, self._real.embed_queries)

    def _answer(self, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        if not texts or any(text not in self._table for text in texts):
            return embed(texts)
        return np.stack([self._table[text] for text in texts])


def cpu_embedding(
    embedder: Embedder, corpus: Corpus, questions: dict[str, list[Question]], cache: EmbeddingCache
) -> dict:
    """This machine's embedding speed, and whether the cache (maybe made on a GPU) agrees with it."""
    sample = corpus.passages[:64]
    started = time.perf_counter()
    vectors = embedder.embed_passages([indexed_text(p) for p in sample], batch_size=32)
    passages_per_second = len(sample) / (time.perf_counter() - started)
    cached = cache.vectors(f"chunk{corpus.chunk_chars}")[: len(sample)]
    agreement = float(np.min(np.sum(vectors * cached, axis=1)))
    texts = [q.question for q in questions["jsquad-valid"][:100]]
    embedder.embed_queries(texts[:2])  # warm-up
    latencies = []
    for text in texts:
        started = time.perf_counter()
        embedder.embed_queries([text])
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "device": embedder.device,
        "passages_per_second": round(passages_per_second, 2),
        "min_cosine_cpu_vs_cache": round(agreement, 5),
        "query_ms": _percentiles(latencies),
    }


# Quality and latency over a real index --------------------------------------------------------------------


def build_real_index(corpus: Corpus, embedder: Embedder, out: Path) -> tuple["Index", dict]:
    from kotae.indexer.build import build_index
    from kotae.indexer.index import Index

    started = time.perf_counter()
    manifest = build_index([CORPUS], out, embedder, chunk_chars=corpus.chunk_chars)
    seconds = time.perf_counter() - started
    assert manifest.count == len(corpus.passages), "the build must chunk exactly like the benchmark"
    build = {
        "passages": manifest.count,
        "seconds_without_embedding": round(seconds, 1),
        "passages_per_second_without_embedding": round(manifest.count / seconds, 1),
    }
    return Index.open(out), build


def quality(index: "Index", embedder: Embedder, corpus: Corpus, questions: dict[str, list[Question]]) -> dict:
    from kotae.core.config import Settings
    from kotae.rag.retriever import Retriever

    modes = {
        "dense": Settings(retrieval="dense"),
        "bm25": Settings(retrieval="bm25"),
        "hybrid rrf": Settings(retrieval="hybrid", fusion="rrf"),
    }
    for weight in FUSION_WEIGHTS:
        modes[f"hybrid weighted {weight}"] = Settings(
            retrieval="hybrid", fusion="weighted", fusion_dense_weight=weight
        )
    scores: dict = {}
    for name, qs in questions.items():
        scores[name] = {}
        for mode, settings in modes.items():
            hit_lists = Retriever(index, embedder, settings).retrieve_many(
                [q.question for q in qs], max(RECALL_AT)
            )
            ranks = [
                _gold_rank(hits, q.gold, corpus.document_of) for hits, q in zip(hit_lists, qs, strict=True)
            ]
            scores[name][mode] = _recall(ranks)
    return scores


def _gold_rank(hits: list, gold: frozenset[str], document_of: dict[str, str]) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if document_of[hit.passage.id] in gold:
            return rank
    return None


def _recall(ranks: list[int | None]) -> dict:
    found = [rank for rank in ranks if rank is not None]
    scores = {f"recall@{k}": round(sum(rank <= k for rank in found) / len(ranks), 4) for k in RECALL_AT}
    scores[f"mrr@{max(RECALL_AT)}"] = round(sum(1 / rank for rank in found) / len(ranks), 4)
    return scores


def retrieve_latency(index: "Index", embedder: Embedder, questions: dict[str, list[Question]]) -> dict:
    """Milliseconds per retrieve() call for one question (top 5), query embedding excluded (cached)."""
    from kotae.core.config import Settings
    from kotae.rag.retriever import Retriever

    texts = [q.question for q in questions["jsquad-valid"][:300]]
    latency = {}
    for mode in ("dense", "bm25", "hybrid"):
        retriever = Retriever(
            index, embedder, Settings(retrieval=mode, fusion="weighted", fusion_dense_weight=0.4)
        )
        retriever.retrieve(texts[0], 5)
        times = []
        with single_threaded_faiss():
            for text in texts:
                started = time.perf_counter()
                retriever.retrieve(text, 5)
                times.append((time.perf_counter() - started) * 1000)
        latency[mode] = _percentiles(times)
    return latency


# faiss at scale -------------------------------------------------------------------------------------------


def ann(
    results: Results, label: str, real: np.ndarray, queries: np.ndarray, total: int, params: dict[str, dict]
) -> None:
    """Per faiss type: build time, size, and single-query latency and recall@10 relative to exact search.
    `params`: build parameters by type, e.g. {"hnsw": {"ef_construction": 40}}."""
    from kotae.indexer.dense import dense_spec

    searches = {
        "flat": {"exact": {}},
        "ivfpq": {
            f"nprobe={nprobe} rerank={rerank}": {"nprobe": nprobe, "rerank": rerank}
            for nprobe in IVFPQ_NPROBE
            for rerank in IVFPQ_RERANK
        },
        "hnsw": {f"ef_search={ef}": {"ef_search": ef} for ef in HNSW_EF_SEARCH},
    }
    if all(results.has(("ann", label, kind)) for kind in searches):
        return
    import faiss

    vectors = _with_random_vectors(real, total)
    keys = np.arange(len(vectors), dtype=np.int64)
    _, exact = faiss.knn(queries, vectors, ANN_K, metric=faiss.METRIC_INNER_PRODUCT)
    truth = [set(row.tolist()) for row in exact]
    for kind, tunings in searches.items():
        spec = dense_spec(kind, params.get(kind))
        # Flat is timed on fewer queries: each one scans every vector.
        measured = (queries[:200], truth[:200]) if kind == "flat" else (queries, truth)
        results.stage(("ann", label, kind), _measure, spec, vectors, keys, tunings, *measured)


def _measure(
    spec: "DenseSpec", vectors: np.ndarray, keys: np.ndarray, tunings: dict, queries: np.ndarray, truth: list
) -> dict:
    from kotae.indexer.dense import DenseIndex

    started = time.perf_counter()
    index = DenseIndex.build(spec, vectors, keys)
    seconds = time.perf_counter() - started
    with tempfile.NamedTemporaryFile(suffix=".faiss") as file:
        index.save(Path(file.name))
        size = Path(file.name).stat().st_size
    report = {"vectors": len(index), "params": index.spec.model_dump(), "build_seconds": round(seconds, 1)}
    report |= {"mib": round(size / 2**20, 1), "search": {}}
    for setting, update in tunings.items():
        index.tune_search(index.spec.model_copy(update=update))
        report["search"][setting] = _search_report(index, queries, truth)
    return report


def _with_random_vectors(real: np.ndarray, total: int) -> np.ndarray:
    vectors = np.empty((total, real.shape[1]), np.float32)
    vectors[: len(real)] = real
    rng = np.random.default_rng(0)
    for start in range(len(real), total, 100_000):
        block = rng.standard_normal((min(100_000, total - start), real.shape[1]), dtype=np.float32)
        vectors[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def _search_report(index: "DenseIndex", queries: np.ndarray, truth: list[set[int]]) -> dict:
    index.search(queries[:5], ANN_K)  # warm-up
    times, recalls = [], []
    with single_threaded_faiss():
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            [ranked] = index.search(query[None, :], ANN_K)
            times.append((time.perf_counter() - started) * 1000)
            recalls.append(len({key for key, _ in ranked} & expected) / ANN_K)
    return {
        "queries": len(times),
        f"recall@{ANN_K}_vs_flat": round(float(np.mean(recalls)), 4),
        "ms": _percentiles(times),
    }


@contextlib.contextmanager
def single_threaded_faiss() -> Iterator[None]:
    """One query at a time is timed on one thread: faiss's OpenMP threads only add wake-up waits for a
    single query (Flat over 18k vectors: 1.6 ms on one thread, 15 ms on two on this busy 2-core machine)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


# Report ---------------------------------------------------------------------------------------------------


def _percentiles(milliseconds: list[float]) -> dict:
    return {
        "p50": round(float(np.percentile(milliseconds, 50)), 3),
        "p99": round(float(np.percentile(milliseconds, 99)), 3),
    }


def _machine() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
    }


def markdown(results: dict) -> str:
    machine, cpu = results["machine"], results["cpu_embedding"]
    lines = [
        f"### Retrieval ({results['date'][:10]}, {machine['cpus']} CPUs, {results['embedder']['name']})",
        "",
        f"`{results['command']}`",
        "",
        "| corpus | questions | mode | R@1 | R@5 | R@20 | MRR@20 |",
        "|---|---|---|---|---|---|---|",
    ]
    for corpus, by_dataset in results["quality"].items():
        for dataset, by_mode in by_dataset.items():
            for mode, s in by_mode.items():
                lines.append(
                    f"| {corpus} | {dataset} | {mode} | {s['recall@1']:.3f} | {s['recall@5']:.3f} | "
                    f"{s['recall@20']:.3f} | {s['mrr@20']:.3f} |"
                )
    lines += ["", "| embedding | count | per second | device |", "|---|---|---|---|"]
    for name, e in results["embedding_cache"].items():
        lines.append(f"| {name} | {e['count']} | {e['per_second']} | {e['device']} ({e['machine']}) |")
    lines += [
        "",
        f"CPU here: {cpu['passages_per_second']} passages/s; one query embedded in "
        f"{cpu['query_ms']['p50']} ms p50 / {cpu['query_ms']['p99']} ms p99; cached vectors agree with this "
        f"CPU's to cosine ≥ {cpu['min_cosine_cpu_vs_cache']}.",
        "",
        "| corpus | passages | build s (no embedding) | passages/s | retrieve ms p50/p99: dense | bm25 "
        "| hybrid |",
        "|---|---|---|---|---|---|---|",
    ]
    for corpus, build in results["build"].items():
        lat = results["retrieve_latency"][corpus]
        cells = " | ".join(f"{lat[m]['p50']}/{lat[m]['p99']}" for m in ("dense", "bm25", "hybrid"))
        lines.append(
            f"| {corpus} | {build['passages']} | {build['seconds_without_embedding']} | "
            f"{build['passages_per_second_without_embedding']} | {cells} |"
        )
    lines += [
        "",
        f"| vectors | index | build s | MiB | search | recall@{ANN_K} vs Flat | ms p50 | ms p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, by_type in results["ann"].items():
        for kind, r in by_type.items():
            built = ", ".join(
                f"{k}={v}"
                for k, v in r["params"].items()
                if k not in {"type", "ef_search", "nprobe", "rerank"}
            )
            for setting, s in r["search"].items():
                lines.append(
                    f"| {scale} | {kind} {built} | {r['build_seconds']} | {r['mib']} | {setting} | "
                    f"{s[f'recall@{ANN_K}_vs_flat']:.3f} | {s['ms']['p50']} | {s['ms']['p99']} |"
                )
    return "\n".join(lines) + "\n"


def _embedder(args: argparse.Namespace) -> Embedder:
    if Path(args.embedder).is_dir():  # no settings needed: the GPU machine has no pydantic
        return Embedder(Path(args.embedder), device=args.device)
    from kotae.core.config import Settings

    return load_embedder(args.embedder, args.home or Settings().home, device=args.device)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, help="Results path without extension: writes OUT.json and OUT.md."
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kotae-retrieval-cache")
    parser.add_argument("--embedder", default="multilingual-e5-small", help="Store name or folder.")
    parser.add_argument("--home", type=Path, help="kotae home holding the model store (default: settings).")
    parser.add_argument("--device", default=None, help="Embedding device (default: CUDA if present).")
    parser.add_argument("--chunk-chars", type=int, nargs="+", default=[2000, 400])
    parser.add_argument("--questions", type=int, default=None, help="First N questions of each set only.")
    parser.add_argument("--scale", type=int, default=1_000_000, help="Vectors in the large faiss test.")
    parser.add_argument("--latency-queries", type=int, default=1000)
    parser.add_argument("--embed-only", action="store_true", help="Fill the embedding cache and stop.")
    parser.add_argument("--resume", action="store_true", help="Keep the stages OUT.json already holds.")
    parser.add_argument(
        "--scale-params",
        nargs="*",
        default=["hnsw.ef_construction=40"],
        help="Build parameters at the large scale, TYPE.KEY=VALUE (default: hnsw.ef_construction=40; "
        "the index's default 200 takes hours on 2 cores there).",
    )
    args = parser.parse_args()
    if not args.embed_only and args.out is None:
        parser.error("--out is required unless --embed-only")
    args.scale_params = _scale_params(parser, args.scale_params)
    return args


def _scale_params(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        kind, dot, key = name.partition(".")
        if not (equals and dot and kind and key):
            parser.error(f"--scale-params {pair!r}: expected TYPE.KEY=VALUE, e.g. hnsw.M=16")
        params.setdefault(kind, {})[key] = value
    return params


if __name__ == "__main__":
    main()
