"""Build an index directory from sources: passage store, faiss index, BM25 index and manifest.

A build is a pipeline of bounded shards. Worker processes read, clean, chunk and tokenize shards; this
process embeds each shard as it comes, in order, saves its vectors and commits its passages to the store
together with the shard's number. Memory holds a few shards at a time, never the corpus. Everything lives in
a staging directory beside the target (`.NAME.build`): a build that is interrupted or killed, even with
SIGKILL, is resumed by running it again with the same arguments, from the shard after the last one stored.
When every shard is stored, the faiss and BM25 indexes are built from the shards' vectors and the store's
tokens, the manifest is written and the staging directory is swapped in whole: the served index never sees
half a build."""

import concurrent.futures
import io
import multiprocessing
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from kotae import __version__
from kotae.core.durable import locked, publish, write_durably
from kotae.core.errors import KotaeError
from kotae.indexer.bm25 import Bm25Index, Bm25Params
from kotae.indexer.bm25_feed import numbered_batches
from kotae.indexer.chunking import DEFAULT_CHUNK_CHARS, indexed_text
from kotae.indexer.dense import DenseIndex, DenseSpec, dense_spec
from kotae.indexer.embedder import Embedder
from kotae.indexer.layout import BM25_DIR, DENSE_FILE, MANIFEST_FILE, STORE_FILE, IndexType
from kotae.indexer.manifest import (
    FORMAT_VERSION,
    Bm25Info,
    EmbedderInfo,
    Manifest,
    SourceInfo,
    read_manifest,
    write_manifest,
)
from kotae.indexer.shards import (
    SHARD_RECORDS,
    SHARD_STREAM_BYTES,
    PreparedShard,
    ShardTask,
    plan_shards,
    prepare_shard,
    start_worker,
    start_worker_process,
)
from kotae.indexer.sources import detect_format
from kotae.indexer.store import PassageStore
from kotae.indexer.tokenizer import TokenizerSettings

BUILD_FILE = "build.json"
"""In a staging directory: the arguments of the build it holds, which a resumed build must repeat."""
SHARDS_DIR = "shards"
"""In a staging directory: each stored shard's passage vectors, in key order (`000012.npy`)."""
STAGING_SUFFIX = ".build"
T = TypeVar("T")
# Passages read from the store per embedding call: bounds memory for texts, keeps the model's batches full.
_EMBED_BLOCK = 4096
# Inputs smaller than this are prepared in this process: worker processes take seconds to start.
_INLINE_BYTES = 8 << 20


class SourceStamp(BaseModel):
    path: str
    size: int
    modified_ns: int


class BuildRecipe(BaseModel):
    """What makes two builds the same build: a rerun with an equal recipe resumes the staged one."""

    format_version: int = FORMAT_VERSION
    sources: list[SourceStamp]
    chunk_chars: int
    embedder: EmbedderInfo
    dense: DenseSpec
    tokenizer: TokenizerSettings | None
    shard_records: int
    shard_stream_bytes: int


def staging_path(out_dir: Path) -> Path:
    """Where the build of `out_dir` stages its work (and where a killed build is resumed from)."""
    return out_dir.parent / f".{out_dir.name}{STAGING_SUFFIX}"


def build_index(
    sources: Sequence[Path],
    out_dir: Path,
    embedder: Embedder,
    index_type: IndexType = "flat",
    params: Mapping[str, object] | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    bm25: bool = True,
    batch_size: int = 32,
    progress: bool = False,
    workers: int | None = None,
    shard_records: int = SHARD_RECORDS,
    shard_stream_bytes: int = SHARD_STREAM_BYTES,
) -> Manifest:
    """Builds beside `out_dir` and swaps it in: an existing index stays served until the new one is whole.
    `params` are the faiss parameters of `index_type` (see `dense.HnswSpec`, `dense.IvfPqSpec`).
    `workers`: processes that clean, chunk and tokenize (0: none, in this process; None: one per core but
    one, or none for a small input). An interrupted, killed or failed build resumes when run again with the
    same arguments, from the shard after the last one stored; one stopped by bad input, or before storing
    a shard, leaves nothing behind."""
    spec = dense_spec(index_type, params)  # bad parameters fail before any work
    started = time.perf_counter()
    for path in sources:
        detect_format(path)  # a missing or unknown file fails before any work
    recipe = BuildRecipe(
        sources=[_stamp(path) for path in sources],
        chunk_chars=chunk_chars,
        embedder=_embedder_info(embedder),
        dense=spec,
        tokenizer=TokenizerSettings() if bm25 else None,
        shard_records=shard_records,
        shard_stream_bytes=shard_stream_bytes,
    )
    if workers is None:
        small = sum(path.stat().st_size for path in sources) < _INLINE_BYTES
        workers = 0 if small else max((os.cpu_count() or 1) - 1, 1)
    with locked(out_dir):
        staging = _open_staging(out_dir, recipe)
        try:
            manifest = _build(staging, sources, recipe, embedder, batch_size, workers, progress, started)
        except BaseException as error:
            # Bad input needs other input, hence another build; anything else (Ctrl-C, a full disk, the
            # GPU's memory) is resumed by the same command once its cause is gone.
            if isinstance(error, KotaeError) or not any((staging / SHARDS_DIR).glob("*.npy")):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        publish(staging, out_dir)
    return manifest


def _open_staging(out_dir: Path, recipe: BuildRecipe) -> Path:
    """The staging directory, new or the one an interrupted build with this very recipe left."""
    staging = staging_path(out_dir)
    recipe_file = staging / BUILD_FILE
    if staging.exists():
        try:
            staged = BuildRecipe.model_validate_json(recipe_file.read_bytes())
        except (OSError, ValidationError):
            staged = None
        if staged != recipe:
            raise KotaeError(
                f"{staging} holds an unfinished build of {out_dir} with other arguments or inputs: run that "
                f"build again to finish it, or remove it (rm -rf {staging}) to start this one"
            )
        return staging
    partial = staging.with_name(staging.name + ".new")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / SHARDS_DIR).mkdir()
    write_durably(partial / BUILD_FILE, recipe.model_dump_json(indent=2).encode())
    os.rename(partial, staging)
    return staging


def _build(
    staging: Path,
    sources: Sequence[Path],
    recipe: BuildRecipe,
    embedder: Embedder,
    batch_size: int,
    workers: int,
    progress: bool,
    started: float,
) -> Manifest:
    if (staging / MANIFEST_FILE).is_file():  # killed while finishing: only the clean-up is left
        manifest = read_manifest(staging)
    else:
        store = PassageStore.open_build(staging / STORE_FILE)
        try:
            count = _store_shards(staging, sources, recipe, store, embedder, batch_size, workers, progress)
            stages = {"shards": round(time.perf_counter() - started, 1)}
            # The embedder's GPU, if it has one, takes IVF-PQ's coarse quantizer from faiss-cpu.
            device = embedder.device if embedder.device.startswith("cuda") else None
            manifest = _index_shards(
                staging, sources, recipe, store, count, progress, started, stages, device
            )
        finally:
            store.close()
    store = PassageStore.open(staging / STORE_FILE, writable=True)
    try:
        store.finish_build()
    finally:
        store.close()
    shutil.rmtree(staging / SHARDS_DIR, ignore_errors=True)
    (staging / BUILD_FILE).unlink(missing_ok=True)
    return manifest


def _store_shards(
    staging: Path,
    sources: Sequence[Path],
    recipe: BuildRecipe,
    store: PassageStore,
    embedder: Embedder,
    batch_size: int,
    workers: int,
    progress: bool,
) -> int:
    """Prepares, embeds and stores every shard not stored yet; returns the number of passages."""
    stored = store.stored_shards()
    next_key = max(stored.values(), default=1)
    starts, shares = _source_shares(sources)
    tasks = plan_shards(sources, recipe.shard_records, recipe.shard_stream_bytes)
    with (
        tqdm(
            total=100.0,
            initial=0.0,
            desc="reading, embedding",
            unit="%",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}",
            disable=not progress,
        ) as bar,
        _PreparedShards(tasks, set(stored), recipe, workers, embedder) as shards,
        _ShardWriter(staging, store) as writer,
    ):
        bar.set_postfix_str(f"{next_key - 1:,} passages (resumed)" if stored else "")
        for shard in shards:
            vectors = embedder.embed_passages(shard.texts(), batch_size, token_ids=shard.token_ids)
            writer.write(shard, next_key, vectors)
            next_key += len(vectors)
            done = 100.0 * (starts[shard.source] + shard.end_fraction * shares[shard.source])
            bar.update(max(done - bar.n, 0.0))
            bar.set_postfix_str(f"{next_key - 1:,} passages, shard {shard.number}")
    if next_key == 1:
        raise KotaeError(f"no passages in {', '.join(map(str, sources))}: the corpus is empty")
    return next_key - 1


def _index_shards(
    staging: Path,
    sources: Sequence[Path],
    recipe: BuildRecipe,
    store: PassageStore,
    count: int,
    progress: bool,
    started: float,
    stages: dict[str, float],
    device: str | None,
) -> Manifest:
    """faiss from the shards' vectors and BM25 from the store's tokens, side by side, then the manifest.
    `device`: see `DenseIndex.trained`."""
    for leftover in (staging / DENSE_FILE, staging / BM25_DIR):  # from a build killed while indexing
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kotae-faiss") as thread:
        dense_future = thread.submit(
            _timed, _dense_from_shards, staging, recipe, count, progress, stages, device
        )
        if recipe.tokenizer is not None:
            _, stages["bm25"] = _timed(write_bm25, store, staging / BM25_DIR, Bm25Params())
        dense, stages["faiss"] = dense_future.result()
    _, stages["faiss_save"] = _timed(dense.save, staging / DENSE_FILE)
    now = datetime.now(UTC)
    manifest = Manifest(
        kotae_version=__version__,
        embedder=recipe.embedder,
        count=count,
        documents=store.document_count(),
        chunk_chars=recipe.chunk_chars,
        dense=dense.spec,
        bm25=Bm25Info(tokenizer=recipe.tokenizer, params=Bm25Params()) if recipe.tokenizer else None,
        sources=[
            SourceInfo(
                path=str(path.resolve()),
                format=detect_format(path),
                documents=documents,
                passages=passages,
                added_at=now,
            )
            for path, (documents, passages) in zip(sources, store.source_counts(len(sources)), strict=True)
        ],
        built_at=now,
        updated_at=now,
        build_seconds=round(time.perf_counter() - started, 3),
        build_stages=stages,
    )
    write_manifest(staging, manifest)
    return manifest


def _dense_from_shards(
    staging: Path,
    recipe: BuildRecipe,
    count: int,
    progress: bool,
    stages: dict[str, float],
    device: str | None,
) -> DenseIndex:
    """The faiss index of every stored vector, keys 1…count in shard order, added shard by shard. Records
    how long training took in `stages`."""
    files = sorted((staging / SHARDS_DIR).glob("*.npy"))
    shards = [np.load(path, mmap_mode="r") for path in files]
    if sum(len(vectors) for vectors in shards) != count:
        raise KotaeError(
            f"{staging / SHARDS_DIR}: the shards' vectors do not match the store; remove {staging}"
        )
    offsets = np.cumsum([0, *(len(vectors) for vectors in shards)])

    def rows(wanted: np.ndarray) -> np.ndarray:
        shard_of = np.searchsorted(offsets, wanted, side="right") - 1
        return np.stack([shards[s][r - offsets[s]] for s, r in zip(shard_of, wanted, strict=True)])

    dense, stages["faiss_training"] = _timed(
        DenseIndex.trained, recipe.dense, recipe.embedder.dimension, count, rows, device
    )
    with tqdm(total=count, desc=f"faiss {recipe.dense.type}", unit=" passages", disable=not progress) as bar:
        for start, vectors in zip(offsets, shards, strict=False):
            dense.add(np.asarray(vectors), np.arange(start + 1, start + 1 + len(vectors), dtype=np.int64))
            bar.update(len(vectors))
    return dense


class _ShardWriter:
    """Stores embedded shards in a thread of its own, one at a time and in order (the vectors durably first,
    then the store's transaction that records the shard), while the caller embeds the next one. Leaving
    waits for the shard being written; a failed write is raised at the next `write` or on leaving."""

    def __init__(self, staging: Path, store: PassageStore) -> None:
        self._staging, self._store = staging, store
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kotae-shard-writer", daemon=True)

    def __enter__(self) -> "_ShardWriter":
        self._thread.start()
        return self

    def write(self, shard: PreparedShard, first_key: int, vectors: np.ndarray) -> None:
        self._raise_failure()
        self._pending.put((shard, first_key, vectors))

    def __exit__(self, *exc_info: object) -> None:
        self._pending.put(None)
        self._thread.join()
        if exc_info[0] is None:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._pending.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller raises the first failure
            shard, first_key, vectors = item
            try:
                write_durably(_vectors_path(self._staging, shard.number), _npy_bytes(vectors))
                self._store.insert_shard(shard.number, first_key, shard.documents, shard.source)
            except BaseException as error:
                self._error = error


class _PreparedShards:
    """Shards prepared by worker processes (or here, with no workers), yielded in order. A feeder thread
    plans the shards and keeps at most a few in flight, so memory holds a bounded number of them."""

    def __init__(
        self,
        tasks: Iterator[ShardTask],
        skip: set[int],
        recipe: BuildRecipe,
        workers: int,
        embedder: Embedder,
    ) -> None:
        self._tasks, self._skip, self._recipe, self._workers = tasks, skip, recipe, workers
        self._embedder = embedder
        self._pool: concurrent.futures.Executor | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(2 * workers, 2))
        self._stop = threading.Event()

    def __enter__(self) -> Iterator[PreparedShard]:
        if self._workers == 0:
            # Here the embedder tokenizes as it embeds, in a thread of its own.
            start_worker(self._recipe.tokenizer)
            return self._inline()
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process that holds torch
            initializer=start_worker_process,
            # The workers tokenize for the embedder too: this process is left to feed the model.
            initargs=(self._recipe.tokenizer, self._embedder.passage_tokenizer()),
        )
        self._feeder = threading.Thread(target=self._feed, name="kotae-shard-feeder", daemon=True)
        self._feeder.start()
        return self._in_order()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._pool is None:
            return
        while self._feeder.is_alive():  # unblock a feeder waiting for room in the queue
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, concurrent.futures.Future):
                item.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _inline(self) -> Iterator[PreparedShard]:
        for task in self._tasks:
            if task.number not in self._skip:
                yield prepare_shard(task, self._recipe.chunk_chars)

    def _in_order(self) -> Iterator[PreparedShard]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item.result()

    def _feed(self) -> None:
        assert self._pool is not None
        try:
            for task in self._tasks:
                if self._stop.is_set():
                    return
                if task.number not in self._skip:
                    self._put(self._pool.submit(prepare_shard, task, self._recipe.chunk_chars))
            self._put(None)
        except BaseException as error:  # a bad record: the consumer raises it in order
            self._put(error)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def embed_passages(
    store: PassageStore, keys: np.ndarray, embedder: Embedder, batch_size: int, progress: bool
) -> np.ndarray:
    """Embeddings of the stored passages `keys`, in that order."""
    vectors = np.empty((len(keys), embedder.dimension), np.float32)
    with tqdm(total=len(keys), desc="embedding", unit=" passages", disable=not progress) as bar:
        done = 0
        for passages in store.iter_passages(keys, _EMBED_BLOCK):
            block = embedder.embed_passages([indexed_text(p) for p in passages], batch_size)
            vectors[done : done + len(block)] = block
            done += len(block)
            bar.update(len(block))
    return vectors


def write_bm25(store: PassageStore, directory: Path, params: Bm25Params) -> None:
    """BM25 over every stored passage, from the tokens kept in the store (no re-tokenizing on updates)."""
    Bm25Index.build(directory, numbered_batches(store), params)


def _embedder_info(embedder: Embedder) -> EmbedderInfo:
    return EmbedderInfo(
        name=embedder.name,
        hash=embedder.hash,
        dimension=embedder.dimension,
        passage_prompt=embedder.passage_prompt,
        query_prompt=embedder.query_prompt,
    )


def _stamp(path: Path) -> SourceStamp:
    stat = path.stat()
    return SourceStamp(path=str(path.resolve()), size=stat.st_size, modified_ns=stat.st_mtime_ns)


def _source_shares(sources: Sequence[Path]) -> tuple[list[float], list[float]]:
    """Where each source starts in the whole input, and its share of it, by bytes: progress weights."""
    sizes = [max(path.stat().st_size, 1) for path in sources]
    total = sum(sizes)
    shares = [size / total for size in sizes]
    return [sum(shares[:i]) for i in range(len(shares))], shares


def _vectors_path(staging: Path, number: int) -> Path:
    return staging / SHARDS_DIR / f"{number:06d}.npy"


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32))
    return buffer.getvalue()


def _timed(function: Callable[..., T], *args: object) -> tuple[T, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, round(time.perf_counter() - started, 1)
