"""BM25 at Wikipedia scale: three engines on the same passages, built and searched the same way.

- bm25s: kotae's previous BM25, a bm25s score matrix (every posting of every query term scored into an
  array of every passage, then argpartition), searched with numpy as kotae did and with bm25s's numba scorer;
- tantivy: its Python bindings (segments, block-max WAND in the engine; whether a search from Python skips
  anything is measured: `pruning_probe_ms`);
- kotae: `kotae.indexer.bm25` (the same Lucene score matrix, built in a streaming way, searched by a numba
  kernel block by block of passages, on one thread and on every CPU).

    python benchmarks/bm25_scale.py --n 200000 1000000 --out /tmp/bm25-scale   # writes /tmp/bm25-scale.json

Synthetic passages: token lists drawn from the unigram frequencies of the real corpus
(`jawiki-paragraphs.jsonl` chunked at 400 characters, tokenized by `SudachiTokenizer`; Zipfian), each as
long as a real passage drawn at random, with the real passages placed among them (see `Synthetic`).
Queries: the questions of `jsquad-valid-dev.jsonl`, tokenized the same way. Per N and engine, in fresh
processes: build (wall, peak RSS), index size on disk, open (wall, RSS after it: memory-mapped, so file
pages count apart from the process's own memory), and top-20 latency one query at a time (a first pass as
opened, then each query's median of 3 warm passes; wall time, and the calling thread's CPU time, which a
machine shared with other work disturbs less); then every engine's latency again in one process, query by
query in turn ("interleaved", the fairest comparison on a shared machine); then top-20 agreement between
the engines, recall of the real questions among the N passages, and a power-law extrapolation to 5.5M
passages.

Quality: recall@5/@20 of every engine on jsquad-valid-dev and jaquad-dev over the real corpus (a chunk
counts as its paragraph), and whether tantivy's and kotae's results stay the same when the corpus comes in
small batches built by several threads.

Tokens are cached under --cache (outside the repository), keyed by the input files' sha256.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CORPUS = DATA / "jawiki-paragraphs.jsonl"
QUERIES = DATA / "qa" / "jsquad-valid-dev.jsonl"
QUALITY_SETS = {"jsquad-valid-dev": QUERIES, "jaquad-dev": DATA / "qa" / "jaquad-dev.jsonl"}
CHUNK_CHARS = 400
TOP_K = 20
RECALL_AT = (5, 20)
TARGET_N = 5_500_000
ENGINES = ("bm25s", "tantivy", "kotae")
SEED = 20261202
WARM_PASSES = 3
"""Warm latency of a query is its median over these passes (the machine is shared: one pass is noisy)."""


class Engine(Protocol):
    def __len__(self) -> int: ...

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]: ...


# Engines --------------------------------------------------------------------------------------------------


class Bm25sEngine:
    """kotae's previous BM25: a bm25s score matrix (CSC, one column per term) loaded with mmap, searched as
    kotae searched it (bm25s sums each query term's column into a dense score array, then argpartition).
    The matrix is assembled with numpy from the batches (bm25s's own `index` needs every token list at
    once); its scores equal `bm25s.BM25(k1=1.2, b=0.75, method="lucene").index(...)`'s (checked at start)."""

    def __init__(self, model: object, keys: np.ndarray) -> None:
        self._model = model
        self._keys = keys

    @classmethod
    def build(cls, directory: Path, batches: Iterator[tuple[np.ndarray, Sequence[list[str]]]]) -> None:
        import bm25s

        vocabulary: dict[str, int] = {}
        terms, docs, tfs, lengths, all_keys = [], [], [], [], []
        first_doc = 0
        for keys, tokens in batches:
            flat = [vocabulary.setdefault(token, len(vocabulary)) for words in tokens for token in words]
            sizes = np.fromiter((len(words) for words in tokens), np.int64, len(tokens))
            doc = np.repeat(np.arange(first_doc, first_doc + len(tokens), dtype=np.int64), sizes)
            pairs, counts = np.unique((doc << 32) | np.asarray(flat, np.int64), return_counts=True)
            terms.append((pairs & 0xFFFFFFFF).astype(np.int32))
            docs.append((pairs >> 32).astype(np.int32))
            tfs.append(counts.astype(np.float32))
            lengths.append(sizes)
            all_keys.append(np.asarray(keys, np.int64))
            first_doc += len(tokens)
        term, doc, tf = np.concatenate(terms), np.concatenate(docs), np.concatenate(tfs)
        del terms, docs, tfs
        length = np.concatenate(lengths).astype(np.float32)
        n_docs, n_terms = first_doc, len(vocabulary)
        df = np.bincount(term, minlength=n_terms)
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        k1, b = 1.2, 0.75
        norm = (k1 * ((1 - b) + b * length / np.float32(length.mean()))).astype(np.float32)
        score = idf[term] * (tf / (norm[doc] + tf))
        order = np.argsort(term, kind="stable")  # within a term, documents stay ascending
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.scores = {
            "data": score[order].astype(np.float32),
            "indices": doc[order].astype(np.int32),
            "indptr": np.concatenate([[0], np.cumsum(df)]).astype(np.int64),
            "num_docs": n_docs,
        }
        model.vocab_dict = vocabulary
        model.nonoccurrence_array = None
        directory.mkdir(parents=True, exist_ok=True)
        model.save(directory, show_progress=False)
        np.save(directory / "keys.npy", np.concatenate(all_keys))

    @classmethod
    def load(cls, directory: Path) -> "Bm25sEngine":
        import bm25s

        model = bm25s.BM25.load(directory, mmap=True, show_progress=False)
        return cls(model, np.load(directory / "keys.npy", mmap_mode="r"))

    def use_numba(self) -> None:
        self._model.activate_numba_scorer()

    def __len__(self) -> int:
        return len(self._keys)

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        token_ids = self._model.get_tokens_ids(query_tokens)
        if not token_ids:
            return []
        scores = self._model.get_scores_from_ids(token_ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(self._keys[row]), float(scores[row])) for row in top if scores[row] > 0]


class TantivyEngine:
    """tantivy through its Python bindings: one text field of the tokens joined by spaces ("whitespace"
    tokenizer, frequencies without positions, nothing stored), the key as a u64 fast field, one commit.
    Equal scores at the k-th place widen the search until the tie is whole, then go by key."""

    WORDS, KEY = "words", "key"
    SANITIZE = str.maketrans(dict.fromkeys(" \t\n\r\x0b\x0c", "_"))  # its tokenizer splits on ASCII space

    def __init__(self, index: object) -> None:
        import tantivy

        self._tantivy = tantivy
        index.config_reader(reload_policy="manual")
        self._searcher = index.searcher()
        self._schema = index.schema

    @classmethod
    def build(cls, directory: Path, batches: Iterator, threads: int) -> None:
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_text_field(cls.WORDS, stored=False, tokenizer_name="whitespace", index_option="freq")
        builder.add_unsigned_field(cls.KEY, stored=False, indexed=False, fast=True)
        directory.mkdir(parents=True)
        index = tantivy.Index(builder.build(), path=str(directory), reuse=False)
        threads = threads or os.cpu_count() or 1
        writer = index.writer(heap_size=min(4_000_000_000, threads * 256_000_000), num_threads=threads)
        for keys, tokens in batches:
            for key, words in zip(np.asarray(keys).tolist(), tokens, strict=True):
                document = tantivy.Document()
                document.add_unsigned(cls.KEY, key)
                document.add_text(cls.WORDS, " ".join(word.translate(cls.SANITIZE) for word in words))
                writer.add_document(document)
        writer.commit()
        writer.wait_merging_threads()

    @classmethod
    def load(cls, directory: Path) -> "TantivyEngine":
        import tantivy

        return cls(tantivy.Index.open(str(directory)))

    @property
    def segments(self) -> int:
        return self._searcher.num_segments

    def __len__(self) -> int:
        return self._searcher.num_docs

    def query(self, query_tokens: list[str]) -> object | None:
        tantivy = self._tantivy
        terms = [term for term in (token.translate(self.SANITIZE) for token in query_tokens) if term]
        if not terms:
            return None
        return tantivy.Query.boolean_query(
            [
                (
                    tantivy.Occur.Should,
                    tantivy.Query.term_query(self._schema, self.WORDS, t, index_option="freq"),
                )
                for t in terms
            ]
        )

    def raw_search(self, query_tokens: list[str], limit: int) -> list:
        """tantivy's own top `limit`, without kotae's handling of ties."""
        return self._searcher.search(self.query(query_tokens), limit, count=False).hits

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        query = self.query(query_tokens)
        if query is None:
            return []
        limit = k + 1
        while True:
            hits = self._searcher.search(query, limit, count=False).hits
            if len(hits) < limit or hits[-1][0] < hits[k - 1][0]:
                break
            limit *= 4
        keys = self._searcher.fast_field_values(self.KEY, [address for _, address in hits])
        ranked = sorted(
            zip(keys, (score for score, _ in hits), strict=True), key=lambda hit: (-hit[1], hit[0])
        )
        return [(int(key), float(score)) for key, score in ranked[:k]]


def build_engine(name: str, directory: Path, batches: Iterator, threads: int = 0) -> None:
    if name == "bm25s":
        Bm25sEngine.build(directory, batches)
    elif name == "tantivy":
        TantivyEngine.build(directory, batches, threads)
    else:
        from kotae.indexer.bm25 import Bm25Index, Bm25Params

        Bm25Index.build(directory, batches, Bm25Params(), threads=threads)


def load_engine(name: str, directory: Path, threads: int = 0) -> Engine:
    if name == "bm25s":
        return Bm25sEngine.load(directory)
    if name == "tantivy":
        return TantivyEngine.load(directory)
    from kotae.indexer.bm25 import Bm25Index

    return Bm25Index.load(directory, threads=threads)


# Real data: corpus, questions, tokens ------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _tokens_key() -> str:
    return "-".join([str(CHUNK_CHARS), _sha256(CORPUS), *(_sha256(path) for path in QUALITY_SETS.values())])


def real_tokens(cache: Path) -> dict:
    """Tokens of the chunked corpus (with each passage's paragraph id) and of every quality question."""
    path = cache / f"tokens-{_tokens_key()}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    from kotae.indexer.chunking import chunk_document, indexed_text
    from kotae.indexer.sources import read_documents
    from kotae.indexer.tokenizer import SudachiTokenizer

    tokenizer = SudachiTokenizer()
    passages, documents = [], []
    started = time.perf_counter()
    for document in read_documents(CORPUS):
        for passage in chunk_document(document, CHUNK_CHARS):
            passages.append(tokenizer.tokenize(indexed_text(passage)))
            documents.append(document.id)
    corpus_s = time.perf_counter() - started
    questions: dict[str, list[dict]] = {}
    query_ms = []
    for name, qa_path in QUALITY_SETS.items():
        rows = [json.loads(line) for line in qa_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        questions[name] = []
        for row in rows:
            started = time.perf_counter()
            tokens = tokenizer.tokenize(row["question"])
            query_ms.append((time.perf_counter() - started) * 1000)
            questions[name].append({"tokens": tokens, "gold": row["gold_passage_ids"]})
    tokens = {
        "passages": passages,
        "documents": documents,
        "questions": questions,
        "corpus_tokenize_s": round(corpus_s, 1),
        "query_tokenize_ms": _percentiles(query_ms),
    }
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    return tokens


def synthetic_model(cache: Path) -> dict:
    """The corpus's word frequencies, passage lengths and passages as word ids (small: what a build child
    needs)."""
    path = cache / f"synthetic-{_tokens_key()}.json"
    if not path.exists():
        counts: dict[str, int] = {}
        passages = real_tokens(cache)["passages"]
        for words in passages:
            for word in words:
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        rank = {word: position for position, (word, _) in enumerate(ranked)}
        model = {
            "words": [word for word, _ in ranked],
            "counts": [count for _, count in ranked],
            "lengths": [len(words) for words in passages if words],
            "real": [[rank[word] for word in words] for words in passages],
        }
        path.write_text(json.dumps(model, ensure_ascii=False), encoding="utf-8")
    return json.loads(path.read_text(encoding="utf-8"))


def query_tokens(cache: Path) -> list[list[str]]:
    """Tokens of the latency queries (small: what a query child needs)."""
    path = cache / f"queries-{_tokens_key()}.json"
    if not path.exists():
        questions = real_tokens(cache)["questions"][QUERIES.name.removesuffix(".jsonl")]
        path.write_text(json.dumps([q["tokens"] for q in questions], ensure_ascii=False), encoding="utf-8")
    return json.loads(path.read_text(encoding="utf-8"))


class Synthetic:
    """Passages of tokens drawn independently from the corpus's unigram frequencies, with real lengths; with
    `real`, the real passages are placed among them (every `stride`-th), so that each question has the
    passages it was written on to find, as it has in Wikipedia (random passages alone share few words with
    a question, which leaves a top-k threshold low and gives block-max WAND little to skip)."""

    def __init__(self, model: dict, real: bool) -> None:
        self.vocabulary = np.array(model["words"], dtype=object)
        frequency = np.array(model["counts"], dtype=np.float64)
        self.cumulative = np.cumsum(frequency / frequency.sum())
        self.lengths = np.array(model["lengths"], dtype=np.int64)
        self.real: list[list[int]] = model["real"] if real else []
        ranks = np.arange(1, len(frequency) + 1)
        head = slice(0, min(10_000, len(frequency)))  # Zipf's slope over the well-sampled ranks
        self.zipf_slope = float(np.polyfit(np.log(ranks[head]), np.log(frequency[head]), 1)[0])

    def describe(self) -> dict:
        return {
            "vocabulary": len(self.vocabulary),
            "zipf_slope_top10k": round(self.zipf_slope, 3),
            "tokens_per_passage_mean": round(float(self.lengths.mean()), 1),
            "tokens_per_passage_p50_p99": [int(np.percentile(self.lengths, q)) for q in (50, 99)],
            "real_passages_placed": len(self.real),
        }

    def stride(self, n: int) -> int:
        return max(1, n // len(self.real)) if self.real else 0

    def real_index(self, key: int, n: int) -> int | None:
        """Which real passage has this key, if one has."""
        stride = self.stride(n)
        if not stride or (key - 1) % stride:
            return None
        index = (key - 1) // stride
        return index if index < len(self.real) else None

    def batches(self, n: int, batch: int) -> Iterator[tuple[np.ndarray, list[list[str]]]]:
        """N passages in batches, keys 1..N; the same N and batch size always give the same passages."""
        stride = self.stride(n)
        for start in range(0, n, batch):
            size = min(batch, n - start)
            rng = np.random.default_rng((SEED, start))
            sizes = rng.choice(self.lengths, size)
            ids = np.searchsorted(self.cumulative, rng.random(int(sizes.sum())), side="right")
            words = self.vocabulary[np.minimum(ids, len(self.vocabulary) - 1)].tolist()
            ends = np.cumsum(sizes).tolist()
            starts = [0, *ends[:-1]]
            passages = [words[s:e] for s, e in zip(starts, ends, strict=True)]
            if stride:
                for position in range(-start % stride, size, stride):
                    real = (start + position) // stride
                    if real < len(self.real):
                        passages[position] = self.vocabulary[self.real[real]].tolist()
            yield np.arange(start + 1, start + size + 1, dtype=np.int64), passages


# Children: one build or one open-and-query per process, so peak RSS is theirs alone ---------------------


def _rss() -> dict[str, float]:
    """Resident MiB: all, own memory (anonymous), mapped file pages, and the peak (VmHWM) of this process."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def child_build(args: argparse.Namespace) -> dict:
    synthetic = Synthetic(synthetic_model(args.cache), not args.no_real)
    _import_engine(args.engine)
    peak_anon = [0.0]
    done = threading.Event()

    def sample() -> None:  # the kernel keeps no peak of anonymous memory alone
        while not done.wait(0.05):
            peak_anon[0] = max(peak_anon[0], _rss()["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    build_engine(args.engine, args.index, synthetic.batches(args.n, args.batch), args.threads)
    build_s = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "build_s": round(build_s, 2),
        "build_peak_rss_mib": _rss()["VmHWM"],  # mapped file pages included
        "build_peak_anon_mib": peak_anon[0],  # the process's own memory, sampled every 50 ms
    }


def variants(engine: str) -> list[str]:
    """How each engine is searched: bm25s as kotae did (numpy) and with its numba scorer; kotae's index
    on one thread and on every CPU."""
    return {"bm25s": ["bm25s", "bm25s-numba"], "tantivy": ["tantivy"], "kotae": ["kotae-1-thread", "kotae"]}[
        engine
    ]


def child_query(args: argparse.Namespace) -> dict:
    queries = query_tokens(args.cache)
    _import_engine(args.engine)
    rss_before = _rss()
    started = time.perf_counter()
    engine = load_engine(args.engine, args.index, threads=1)
    open_s = time.perf_counter() - started
    result: dict = {
        "open_ms": round(open_s * 1000, 1),
        "rss_before_open": rss_before,
        "rss_after_open": _rss(),
    }
    if isinstance(engine, TantivyEngine):
        result["segments"] = engine.segments
        result["pruning_probe_ms"] = _pruning_probe(engine, synthetic_model(args.cache)["words"])
    for variant in variants(args.engine):
        if variant == "bm25s-numba":
            engine.use_numba()  # type: ignore[attr-defined]
            engine.search(queries[0], TOP_K)  # JIT compilation
        if variant == "kotae":
            engine = load_engine(args.engine, args.index, threads=0)
        passes, cpu_passes = [], []
        for _ in range(1 + WARM_PASSES):  # as opened, then warm
            latencies, cpu, ranked = [], [], []
            for query in queries:
                started, started_cpu = time.perf_counter(), time.thread_time()
                hits = engine.search(query, TOP_K)
                latencies.append((time.perf_counter() - started) * 1000)
                cpu.append((time.thread_time() - started_cpu) * 1000)
                ranked.append(hits)
            passes.append(latencies)
            cpu_passes.append(cpu)
        warm, warm_cpu = np.asarray(passes[1:]), np.asarray(cpu_passes[1:])
        result[variant] = {
            "first_pass_ms": _percentiles(passes[0]),
            "warm_ms": _percentiles(np.median(warm, axis=0)),
            "warm_cpu_ms": _percentiles(np.median(warm_cpu, axis=0)),  # this thread's CPU only
            "warm_all_samples_ms": _percentiles(warm.ravel()),
        }
        if "ranked" in result:
            result[f"{variant}_same_as_first_variant"] = ranked == result["ranked"]
        else:
            result["ranked"] = ranked
    result["rss_after_queries"] = _rss()
    return result


def child_latency(args: argparse.Namespace) -> dict:
    """Every variant of every engine opened in one process and searched in turn, query by query (the
    order rotating), so that other work on the machine weighs on all of them alike."""
    queries = query_tokens(args.cache)
    work = args.index.parent
    searchers = {}
    for engine in args.engines:
        for variant in variants(engine):
            opened = load_engine(engine, work / f"{engine}-{args.n}", threads=0 if variant == "kotae" else 1)
            if variant == "bm25s-numba":
                opened.use_numba()  # type: ignore[attr-defined]
            opened.search(queries[0], TOP_K)  # compiled, warm
            searchers[variant] = opened.search
    names = list(searchers)
    times = {name: np.zeros((WARM_PASSES, len(queries))) for name in names}
    for rep in range(WARM_PASSES):
        for number, query in enumerate(queries):
            shift = (number + rep) % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                searchers[name](query, TOP_K)
                times[name][rep, number] = (time.perf_counter() - started) * 1000
    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **{name: _percentiles(np.median(times[name], axis=0)) for name in names},
    }


def _pruning_probe(engine: "TantivyEngine", words: list[str]) -> dict[str, float]:
    """Best of 5 of tantivy's own top-20 searches of the most frequent word, a rare one, and both: an engine
    that skips what cannot enter the top 20 (block-max WAND) answers "both" about as fast as the rare word
    alone."""
    common, rare = words[0], words[min(20_000, len(words) - 1)]
    result = {}
    for name, query in (("common", [common]), ("rare", [rare]), ("rare_or_common", [rare, common])):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            engine.raw_search(query, TOP_K)
            best = min(best, time.perf_counter() - started)
        result[name] = round(best * 1000, 3)
    return result


def _import_engine(name: str) -> None:
    """Imports (and kotae's kernel compilation) outside the timed open."""
    if name == "bm25s":
        import bm25s  # noqa: F401
    elif name == "tantivy":
        import tantivy  # noqa: F401
    else:
        from kotae.indexer import bm25

        bm25._compile()


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p90": round(float(np.percentile(array, 90)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "mean": round(float(array.mean()), 3),
        "max": round(float(array.max()), 3),
    }


def _run_child(args: argparse.Namespace, phase: str, engine: str, n: int, index: Path) -> dict:
    """Runs this script as a child for one phase; returns its result with its CPU time."""
    result_path = index.with_suffix(f".{phase}.json")
    command = [
        sys.executable,
        __file__,
        "--child", phase,
        "--engine", engine,
        "--n", str(n),
        "--index", str(index),
        "--cache", str(args.cache),
        "--batch", str(args.batch),
        "--threads", str(args.threads),
        "--child-out", str(result_path),
        "--engines", *args.engines,
        *(["--no-real"] if args.no_real else []),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=environment)
    _, status, usage = os.wait4(process.pid, 0)  # the child's own CPU time
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{phase} of {engine} at N={n} failed (exit {os.waitstatus_to_exitcode(status)})")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result[f"{phase}_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    return result


def _size_mib(directory: Path) -> float:
    return round(sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) / 2**20, 1)


# Comparison ----------------------------------------------------------------------------------------------


def agreement(first: list[list[list]], second: list[list[list]]) -> dict:
    """How alike two engines' top-k lists are, over the queries either answers."""
    overlaps, same_top1, same_order = [], 0, 0
    answered = 0
    for a, b in zip(first, second, strict=True):
        keys_a, keys_b = [hit[0] for hit in a], [hit[0] for hit in b]
        if not keys_a and not keys_b:
            continue
        answered += 1
        overlaps.append(len(set(keys_a) & set(keys_b)) / max(len(keys_a), len(keys_b)))
        same_top1 += bool(keys_a and keys_b and keys_a[0] == keys_b[0])
        same_order += keys_a == keys_b
    return {
        "queries": answered,
        "overlap_at_k_mean": round(float(np.mean(overlaps)), 4),
        "overlap_at_k_min": round(float(np.min(overlaps)), 4),
        "same_top1": round(same_top1 / answered, 4),
        "same_list": round(same_order / answered, 4),
    }


def extrapolate(points: dict[int, float], target: int = TARGET_N) -> dict | None:
    """A power law a·N^p through the two largest Ns (p = 1 with one N), evaluated at `target`."""
    sizes = sorted(points)
    if not sizes or any(points[n] <= 0 for n in sizes):
        return None
    if len(sizes) == 1:
        return {"exponent": 1.0, "at_target": round(points[sizes[0]] * target / sizes[0], 2)}
    low, high = sizes[-2], sizes[-1]
    exponent = float(np.log(points[high] / points[low]) / np.log(high / low))
    return {"exponent": round(exponent, 3), "at_target": round(points[high] * (target / high) ** exponent, 2)}


def recall_at_scale(ranked: list[list[list]], synthetic: Synthetic, n: int, tokens: dict) -> dict[str, float]:
    """Recall of the latency queries among N passages: a hit is a real passage of a gold paragraph."""
    questions = tokens["questions"][QUERIES.name.removesuffix(".jsonl")]
    result = {}
    for at in RECALL_AT:
        found = 0
        for question, hits in zip(questions, ranked, strict=True):
            reals = [synthetic.real_index(key, n) for key, _ in hits[:at]]
            found += any(r is not None and tokens["documents"][r] in question["gold"] for r in reals)
        result[f"recall@{at}"] = round(found / len(questions), 4)
    return result


def quality(tokens: dict) -> dict:
    """Recall of every engine over the real chunked corpus, and whether tantivy's and kotae's results stay
    the same when the corpus comes in small batches built by several threads."""
    passages, documents = tokens["passages"], tokens["documents"]
    keys = np.arange(len(passages), dtype=np.int64)
    pieces = [(keys[i : i + 997], passages[i : i + 997]) for i in range(0, len(passages), 997)]
    with tempfile.TemporaryDirectory(prefix="bm25-quality-") as scratch:
        root = Path(scratch)
        for name in ENGINES:
            build_engine(name, root / name, iter([(keys, passages)]), threads=1)
        for name in ("tantivy", "kotae"):
            build_engine(name, root / f"{name}-batched", iter(pieces), threads=os.cpu_count() or 1)
        engines = {name: load_engine(name, root / name) for name in ENGINES}
        batched = {name: load_engine(name, root / f"{name}-batched") for name in ("tantivy", "kotae")}
        result: dict = {"passages": len(passages), "sets": {}}
        differing = dict.fromkeys(batched, 0)
        for set_name, questions in tokens["questions"].items():
            hits = {
                name: [engine.search(q["tokens"], TOP_K) for q in questions]
                for name, engine in engines.items()
            }
            for name, engine in batched.items():
                for q, ranked in zip(questions, hits[name], strict=True):
                    differing[name] += engine.search(q["tokens"], TOP_K) != ranked
            found = {
                name: {
                    at: np.array(
                        [
                            any(documents[key] in q["gold"] for key, _ in ranked[:at])
                            for q, ranked in zip(questions, runs, strict=True)
                        ]
                    )
                    for at in RECALL_AT
                }
                for name, runs in hits.items()
            }
            entry: dict = {"questions": len(questions)}
            for at in RECALL_AT:
                entry[f"recall@{at}"] = {name: round(float(found[name][at].mean()), 4) for name in ENGINES}
                entry[f"discordant@{at}_vs_bm25s"] = {
                    name: {
                        "only_bm25s": int((found["bm25s"][at] & ~found[name][at]).sum()),
                        f"only_{name}": int((~found["bm25s"][at] & found[name][at]).sum()),
                    }
                    for name in ENGINES[1:]
                }
            entry["agreement"] = _agreements({name: hits[name] for name in ENGINES})
            result["sets"][set_name] = entry
        result["one_batch_vs_batched_differing_queries"] = differing
    return result


def _agreements(ranked: dict[str, list]) -> dict:
    names = list(ranked)
    return {
        f"{a}_vs_{b}": agreement(ranked[a], ranked[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    }


def check_bm25s_equivalence(passages: list[list[str]]) -> float:
    """Largest relative score difference: numpy-assembled matrix against bm25s's own index, 2,000 passages."""
    import bm25s

    sample = [words for words in passages[:2000]]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(sample, show_progress=False)
    with tempfile.TemporaryDirectory(prefix="bm25s-check-") as scratch:
        Bm25sEngine.build(Path(scratch), iter([(np.arange(len(sample)), sample)]))
        ours = Bm25sEngine.load(Path(scratch))
        worst = 0.0
        for words in sample[:200]:
            query = words[:5]
            expected = reference.get_scores(query)
            got = ours._model.get_scores(query)
            worst = max(worst, float(np.max(np.abs(expected - got) / np.maximum(np.abs(expected), 1e-9))))
    return worst


# Main ----------------------------------------------------------------------------------------------------


def main() -> None:
    args = _arguments()
    if args.child:
        children = {"build": child_build, "query": child_query, "latency": child_latency}
        result = children[args.child](args)
        args.child_out.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return
    started_at = datetime.now(UTC)
    tokens = real_tokens(args.cache)
    synthetic = Synthetic(synthetic_model(args.cache), not args.no_real)
    query_tokens(args.cache)
    report: dict = {
        "started": started_at.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "command": " ".join(sys.argv),
        "top_k": TOP_K,
        "batch": args.batch,
        "build_threads": args.threads or os.cpu_count(),
        "synthetic": synthetic.describe(),
        "queries": {"file": QUERIES.name, "count": len(tokens["questions"]["jsquad-valid-dev"])},
        "query_tokenize_ms": tokens["query_tokenize_ms"],
        "bm25s_matrix_max_relative_difference": check_bm25s_equivalence(tokens["passages"]),
        "scales": {},
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="bm25-scale-"))
    for n in args.n:
        scale: dict = {}
        for engine in args.engines:
            index = work / f"{engine}-{n}"
            shutil.rmtree(index, ignore_errors=True)
            entry = _run_child(args, "build", engine, n, index)
            entry["size_mib"] = _size_mib(index)
            entry.update(_run_child(args, "query", engine, n, index))
            scale[engine] = entry
            print(
                f"N={n} {engine}: " + json.dumps({k: v for k, v in entry.items() if k != "ranked"}),
                flush=True,
            )
        scale["interleaved"] = _run_child(args, "latency", args.engines[0], n, work / f"latency-{n}")
        print(f"N={n} interleaved: {json.dumps(scale['interleaved'])}", flush=True)
        if not args.keep:
            for engine in args.engines:
                shutil.rmtree(work / f"{engine}-{n}", ignore_errors=True)
        if len(args.engines) > 1:
            scale["agreement_top20"] = _agreements(
                {engine: scale[engine]["ranked"] for engine in args.engines}
            )
            print(f"N={n} agreement: {json.dumps(scale['agreement_top20'])}", flush=True)
        if synthetic.real:
            scale["recall_jsquad_valid_dev"] = {
                engine: recall_at_scale(scale[engine]["ranked"], synthetic, n, tokens)
                for engine in args.engines
            }
            print(f"N={n} recall: {json.dumps(scale['recall_jsquad_valid_dev'])}", flush=True)
        for engine in args.engines:
            scale[engine].pop("ranked")
        report["scales"][str(n)] = scale
        _write(args.out, report)
    report["extrapolated_to_5_5M"] = _extrapolations(report["scales"], args.engines)
    if not args.skip_quality:
        report["quality"] = quality(real_tokens(args.cache))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "scales"}, indent=1, ensure_ascii=False))


def _extrapolations(scales: dict, engines: Sequence[str]) -> dict:
    metrics = {
        "build_s": lambda e: e["build_s"],
        "build_peak_rss_mib": lambda e: e["build_peak_rss_mib"],
        "build_peak_anon_mib": lambda e: e["build_peak_anon_mib"],
        "size_mib": lambda e: e["size_mib"],
        "open_ms": lambda e: e["open_ms"],
        "rss_after_open_anon_mib": lambda e: e["rss_after_open"]["RssAnon"],
    }
    result: dict = {}
    for engine in engines:
        points = {int(n): scale[engine] for n, scale in scales.items() if engine in scale}
        entry = {name: extrapolate({n: get(e) for n, e in points.items()}) for name, get in metrics.items()}
        for variant in variants(engine):
            for kind in ("warm_ms", "warm_cpu_ms"):
                for stat in ("p50", "p99"):
                    entry[f"{variant}_{kind}_{stat}"] = extrapolate(
                        {n: e[variant][kind][stat] for n, e in points.items()}
                    )
        for variant in variants(engine):
            for stat in ("p50", "p99"):
                entry[f"{variant}_interleaved_ms_{stat}"] = extrapolate(
                    {
                        int(n): scale["interleaved"][variant][stat]
                        for n, scale in scales.items()
                        if "interleaved" in scale
                    }
                )
        result[engine] = entry
    return result


def _write(out: Path | None, report: dict) -> None:
    if out is not None:
        out.with_suffix(".json").write_text(
            json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8"
        )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[200_000, 1_000_000], help="Synthetic passages.")
    parser.add_argument("--out", type=Path, help="Results path without extension: writes OUT.json.")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--batch", type=int, default=50_000, help="Passages per build batch.")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="Build threads: tantivy's writer, kotae's assembly (0: one per CPU).",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kotae-bm25-cache")
    parser.add_argument("--work", type=Path, help="Where the indexes are built (default: a new temp folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the built indexes.")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--no-real", action="store_true", help="Random passages only (no real ones placed).")
    parser.add_argument("--child", choices=("build", "query", "latency"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.n = args.n[0]
    return args


if __name__ == "__main__":
    main()
