"""Lexical index: Lucene BM25 over Sudachi tokens, as a score matrix on disk searched by a numba kernel.

Layout (one directory; every array is a .npy file opened memory-mapped):

- `indptr.npy`, `docs.npy`, `scores.npy`: the BM25 score of each (term, passage row) pair, column by column
  (CSC, as bm25s lays it out): term t's rows ascending in `docs[indptr[t]:indptr[t+1]]`, their scores beside.
- `keys.npy`: the passage key of each row.
- `term_hashes.npy` (sorted) and `term_ids.npy`: a term's 64-bit hash → its id; `term_bytes.npy` and
  `term_offsets.npy` hold each term's UTF-8 text to confirm a match (so a hash collision never conflates two).
- `bm25.json`, written last: counts and parameters. An index without it is incomplete.

A build streams its batches: each batch's (term, row, frequency) triples are spilled to disk, then the
matrix is assembled term range by term range, so memory holds one batch, a few term ranges, the vocabulary's
dictionary and a few numbers per passage, never every token list. Scores depend only on the passages and
their order, never on how they were batched or on threads. A search adds the query terms' scores into an
accumulator one block of `_BLOCK` rows at a time, then scans the block for rows that beat the k best kept;
runs of blocks are searched by several threads at once. Once k rows are kept, MaxScore pruning skips the
postings of the common words that cannot lift a row into the k best on their own (they are looked up only
for the rows the other words score high enough), with the same results as reading every posting.
"""

import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from pydantic import BaseModel

from kotae.core.errors import InputError
from kotae.indexer.thread_pools import shared_pool

META_FILE = "bm25.json"
KEYS_FILE = "keys.npy"
_ARRAYS = {
    "indptr": np.int64,
    "docs": np.int32,
    "scores": np.float32,
    "keys": np.int64,
    "term_hashes": np.uint64,
    "term_ids": np.int32,
    "term_offsets": np.int64,
    "term_bytes": np.uint8,
}
_FORMAT = 1
_BLOCK = 1 << 16
"""Rows per search block: its float32 accumulator (256 KiB) is sized to stay in a core's L2 cache."""
_RANGE_POSTINGS = 1 << 20
"""Postings per term range when the matrix is assembled: 8 MiB of output in memory per range."""
_ASSEMBLY_THREADS = 4
"""At most this many ranges are assembled at once, whatever `threads` says (memory stays bounded)."""
_SPILL_DIR = ".spill"
_PRUNING_GAIN = 2
"""A block is pruned only where it skips this many times the postings it still reads: a skipped posting
saves an add, a candidate row costs a few lookups."""


@dataclass(frozen=True)
class NumberedTokens:
    """A batch of passages' token lists as numbers: the batch's distinct words, and for each occurrence the
    word's position among them. Numbered where the words are read (in a worker process, say), a batch costs
    the builder one dictionary lookup per distinct word instead of one per occurrence."""

    keys: np.ndarray
    """Passage keys (int64)."""
    words: list[str]
    """The batch's distinct words, in order of first occurrence."""
    ids: np.ndarray
    """Every occurrence, passage after passage: its word's position in `words` (int32)."""
    lengths: np.ndarray
    """Occurrences per passage (int64)."""

    @classmethod
    def of(cls, keys: Sequence[int] | np.ndarray, tokens: Sequence[list[str]]) -> "NumberedTokens":
        if len(keys) != len(tokens):
            raise ValueError(f"a batch has {len(keys)} keys for {len(tokens)} token lists")
        positions: dict[str, int] = {}
        ids = np.fromiter(
            (positions.setdefault(token, len(positions)) for words in tokens for token in words), np.int32
        )
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        return cls(np.asarray(keys, dtype=np.int64), list(positions), ids, lengths)


class Bm25Params(BaseModel):
    k1: float = 1.2
    """Term-frequency saturation; Lucene's 1.2 beat bm25s's 1.5 on JSQuAD/JaQuAD recall."""
    b: float = 0.75
    """Length normalisation."""
    method: str = "lucene"
    """Lucene's BM25 (as bm25s's "lucene"): idf = ln(1 + (N − df + 0.5)/(df + 0.5)),
    score = idf · tf / (tf + k1·(1 − b + b·len/avglen)), document lengths exact."""


class _Meta(BaseModel):
    format: int
    documents: int
    terms: int
    postings: int
    average_length: float
    params: Bm25Params


class Bm25Index:
    """An opened index: arrays memory-mapped, searched by `threads` threads (0: one per CPU). Thread-safe."""

    def __init__(self, directory: Path, meta: _Meta, arrays: dict[str, np.ndarray], threads: int = 0) -> None:
        self.directory = directory
        self.params = meta.params
        self._meta = meta
        self._indptr = arrays["indptr"]
        self._docs = arrays["docs"]
        self._scores = arrays["scores"]
        self.keys = arrays["keys"]
        """Passage key of each row."""
        self._term_hashes = arrays["term_hashes"]
        self._term_ids = arrays["term_ids"]
        self._term_offsets = arrays["term_offsets"]
        self._term_bytes = arrays["term_bytes"]
        self._largest = np.full(meta.terms, np.nan, np.float32)
        blocks = -(-meta.documents // _BLOCK)
        workers = max(1, min(threads or os.cpu_count() or 1, blocks))
        # Contiguous runs of blocks, one per worker.
        edges = np.linspace(0, blocks, workers + 1).round().astype(np.int64) * _BLOCK
        self._spans = [(int(lo), int(min(hi, meta.documents))) for lo, hi in itertools.pairwise(edges)]

    @classmethod
    def build(
        cls,
        directory: Path,
        batches: Iterable[NumberedTokens | tuple[np.ndarray, Sequence[list[str]]]],
        params: Bm25Params,
        threads: int = 0,
    ) -> "Bm25Index":
        """Writes a BM25 index of the batches, (passage keys, token lists) or already `NumberedTokens`, into
        `directory` (created) and opens it; memory stays bounded by a batch (plus the vocabulary and a few
        numbers per passage). Keys must be distinct. `threads` (0: one per CPU) assemble term ranges side
        by side (at most `_ASSEMBLY_THREADS`), then search."""
        if params.method != "lucene":
            raise ValueError(f"only Lucene BM25 is implemented, not {params.method!r}")
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ValueError(f"{directory} is not empty: a BM25 index is built into a new directory")
        threads = threads or os.cpu_count() or 1
        spill = directory / _SPILL_DIR
        spill.mkdir()
        vocabulary: dict[str, int] = {}
        parts, lengths, keys = [], [], []
        documents = 0
        for batch, given in enumerate(batches):
            numbered = given if isinstance(given, NumberedTokens) else NumberedTokens.of(*given)
            parts.append(_spill_batch(spill / f"{batch:06d}", vocabulary, numbered, documents))
            lengths.append(numbered.lengths)
            keys.append(numbered.keys)
            documents += len(numbered.keys)
        all_keys = np.concatenate(keys) if keys else np.empty(0, np.int64)
        if len(np.unique(all_keys)) != len(all_keys):
            raise ValueError("passage keys must be distinct")
        length = np.concatenate(lengths) if lengths else np.empty(0, np.int64)
        del keys, lengths
        meta = _assemble(directory, parts, vocabulary, length, params, threads)
        np.save(directory / KEYS_FILE, all_keys)
        _save_vocabulary(directory, vocabulary)
        shutil.rmtree(spill)
        (directory / META_FILE).write_text(meta.model_dump_json(indent=1), encoding="utf-8")
        return cls.load(directory, threads)

    @classmethod
    def load(cls, directory: Path, threads: int = 0) -> "Bm25Index":
        """Opens a built index, its arrays memory-mapped (nothing is read until a search needs it)."""
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise InputError(meta_path, None, "BM25 file missing: the index is incomplete; rebuild it")
        try:
            meta = _Meta.model_validate_json(meta_path.read_bytes())
        except ValueError as error:
            raise InputError(meta_path, None, f"BM25 file unreadable ({error}); rebuild the index") from error
        if meta.format != _FORMAT:
            raise InputError(
                meta_path, None, f"BM25 index format {meta.format}, expected {_FORMAT}; rebuild it"
            )
        expected = {
            "indptr": meta.terms + 1,
            "docs": meta.postings,
            "scores": meta.postings,
            "keys": meta.documents,
            "term_hashes": meta.terms,
            "term_ids": meta.terms,
            "term_offsets": meta.terms + 1,
            "term_bytes": None,
        }
        arrays = {
            name: _load_array(directory / f"{name}.npy", dtype, expected[name])
            for name, dtype in _ARRAYS.items()
        }
        if meta.terms and (
            arrays["indptr"][-1] != meta.postings or arrays["term_offsets"][-1] != len(arrays["term_bytes"])
        ):
            raise InputError(directory, None, "BM25 index files disagree with each other; rebuild the index")
        _compile()
        return cls(directory, meta, arrays, threads)

    def __len__(self) -> int:
        return self._meta.documents

    @property
    def average_length(self) -> float:
        return self._meta.average_length

    def document_frequencies(self, tokens: list[str]) -> dict[str, int]:
        """How many passages hold each distinct token (0 for words the index does not know), for scoring
        passages outside the index on the same scale."""
        frequencies = {}
        for token in dict.fromkeys(tokens):
            terms, _ = self._term_ids_of([token])
            frequencies[token] = int(np.diff(self._indptr[terms[0] : terms[0] + 2])[0]) if len(terms) else 0
        return frequencies

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        """(passage key, score) best first; passages sharing no word with the query are never returned.
        Equal scores are ordered by key. A word repeated in the query counts once per repetition."""
        return self.search_many([query_tokens], k)[0]

    def search_many(
        self, queries: Sequence[list[str]], k: int, prune: bool = True
    ) -> list[list[tuple[int, float]]]:
        """`search` of each query's tokens: the kernels of every query and span of the index run on the pool
        at once, so a batch of short queries keeps every thread busy. `prune=False` reads every posting
        (same results; for benchmarks)."""
        # Each query's terms, weights and bounds once, shared by the kernels of all its spans. Infinite
        # bounds leave no term optional: nothing is pruned.
        terms_of = [(terms, counts.astype(np.float32)) for terms, counts in map(self._term_ids_of, queries)]
        bounds_of = [
            weights * self._largest_scores(terms) if prune else np.full(len(terms), np.inf, np.float32)
            for terms, weights in terms_of
        ]
        floors = np.zeros(len(queries), np.float32)
        tasks = [
            (query, span)
            for query, (terms, _) in enumerate(terms_of)
            if k > 0 and len(terms)
            for span in self._spans
        ]

        def run(task: tuple[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
            query, (first_row, end_row) = task
            terms, weights = terms_of[query]
            return _top_k_kernel(
                self._indptr,
                self._docs,
                self._scores,
                self.keys,
                terms,
                weights,
                bounds_of[query],
                floors[query : query + 1],
                k,
                first_row,
                end_row,
            )

        found = list(_pool().map(run, tasks)) if len(tasks) > 1 else [run(task) for task in tasks]
        by_query: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in queries]
        for (query, _), result in zip(tasks, found, strict=True):
            by_query[query].append(result)
        return [_best(parts, k) for parts in by_query]

    def _largest_scores(self, terms: np.ndarray) -> np.ndarray:
        """Each term's largest score over its postings, found on its first search and kept (a race
        computes the same value twice)."""
        for term in terms[np.isnan(self._largest[terms])]:
            self._largest[term] = self._scores[self._indptr[term] : self._indptr[term + 1]].max()
        return self._largest[terms]

    def _term_ids_of(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct known terms of the query, ascending (the order their scores are summed in), and how
        many times each occurs."""
        texts = [token.encode() for token in tokens]
        hashes = np.fromiter((_hash(text) for text in texts), np.uint64, len(texts))
        positions = np.searchsorted(self._term_hashes, hashes).tolist()
        found: dict[int, int] = {}
        for text, digest, position in zip(texts, hashes.tolist(), positions, strict=True):
            # Equal hashes sit side by side; the term's text tells a collision apart.
            while position < len(self._term_hashes) and int(self._term_hashes[position]) == digest:
                term = int(self._term_ids[position])
                if (
                    self._term_bytes[self._term_offsets[term] : self._term_offsets[term + 1]].tobytes()
                    == text
                ):
                    found[term] = found.get(term, 0) + 1
                    break
                position += 1
        terms = sorted(found)
        return np.array(terms, dtype=np.int64), np.array([found[term] for term in terms], dtype=np.int64)


# Build ----------------------------------------------------------------------------------------------------


_SPILLED = {"terms": np.int32, "rows": np.int32, "tf": np.float32}
"""Raw arrays of a spilled batch (plain files, read back by slices)."""


def _spill_batch(path: Path, vocabulary: dict[str, int], batch: NumberedTokens, first_row: int) -> Path:
    """Writes the batch's distinct (term, row) pairs with their frequency, sorted by term then row. Term
    ids are given in order of first occurrence over the batches, whatever their sizes."""
    term_of_word = np.fromiter(
        (vocabulary.setdefault(word, len(vocabulary)) for word in batch.words), np.int64, len(batch.words)
    )
    ids = term_of_word[batch.ids]
    count = len(batch.lengths)
    rows = np.repeat(np.arange(first_row, first_row + count, dtype=np.int64), batch.lengths)
    pairs, frequency = np.unique((ids << 32) | rows, return_counts=True)
    path.mkdir()
    (pairs >> 32).astype(_SPILLED["terms"]).tofile(path / "terms")
    (pairs & 0xFFFFFFFF).astype(_SPILLED["rows"]).tofile(path / "rows")
    frequency.astype(_SPILLED["tf"]).tofile(path / "tf")
    return path


def _read_slice(path: Path, dtype: type, start: int, stop: int) -> np.ndarray:
    return np.fromfile(path, dtype=dtype, count=stop - start, offset=start * np.dtype(dtype).itemsize)


def _assemble(
    directory: Path,
    parts: list[Path],
    vocabulary: dict[str, int],
    length: np.ndarray,
    params: Bm25Params,
    threads: int,
) -> _Meta:
    """The score matrix from the spilled batches, written term range by term range. Spills are read and
    the matrix written with plain file I/O, so neither is mapped into (and counted in) this process."""
    terms, documents = len(vocabulary), len(length)
    df = np.zeros(terms, np.int64)
    for part in parts:
        df += np.bincount(np.fromfile(part / "terms", dtype=_SPILLED["terms"]), minlength=terms)
    indptr = np.zeros(terms + 1, np.int64)
    np.cumsum(df, out=indptr[1:])
    postings = int(indptr[-1])
    average = float(length.sum() / documents) if documents else 0.0
    idf = np.log(1 + (documents - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (params.k1 * ((1 - params.b) + params.b * length / (average or 1.0))).astype(np.float32)
    np.save(directory / "indptr.npy", indptr)
    # Term ranges of about _RANGE_POSTINGS postings each (a term longer than that is a range alone), and
    # where each range starts in each spilled batch (its terms are sorted).
    cuts = np.searchsorted(indptr, np.arange(0, postings, _RANGE_POSTINGS), side="right") - 1
    edges = np.array(sorted({0, terms, *cuts.tolist()}), dtype=np.int64)
    starts = [np.searchsorted(np.fromfile(part / "terms", dtype=_SPILLED["terms"]), edges) for part in parts]
    outputs = {
        name: _npy_for_writing(directory / f"{name}.npy", dtype, postings) for name, dtype in _MATRIX.items()
    }

    def write_range(number: int) -> None:
        lo, hi = int(edges[number]), int(edges[number + 1])
        base, size = int(indptr[lo]), int(indptr[hi] - indptr[lo])
        if size == 0:
            return
        rows, scores = np.empty(size, np.int32), np.empty(size, np.float32)
        filled = np.zeros(hi - lo, np.int64)  # postings of each term placed so far
        # Batches come in row order: each term's rows stay ascending when batch after batch is appended.
        for part, start in zip(parts, starts, strict=True):
            begin, end = int(start[number]), int(start[number + 1])
            if end <= begin:
                continue
            term, row, tf = (_read_slice(part / name, dtype, begin, end) for name, dtype in _SPILLED.items())
            first = np.searchsorted(term, term)  # each entry's first same-term entry (terms are sorted)
            place = indptr[term] - base + filled[term - lo] + (np.arange(len(term)) - first)
            rows[place] = row
            scores[place] = idf[term] * (tf / (tf + norm[row]))
            groups = np.flatnonzero(np.diff(term, prepend=-1))
            filled[term[groups] - lo] += np.diff(groups, append=len(term))
        _write_at(outputs["docs"], rows, base)
        _write_at(outputs["scores"], scores, base)

    try:
        with ThreadPoolExecutor(max(1, min(threads, _ASSEMBLY_THREADS))) as pool:
            list(pool.map(write_range, range(len(edges) - 1)))
    finally:
        for descriptor, _ in outputs.values():
            os.close(descriptor)
    return _Meta(
        format=_FORMAT,
        documents=documents,
        terms=terms,
        postings=postings,
        average_length=average,
        params=params,
    )


_MATRIX = {"docs": np.int32, "scores": np.float32}


def _npy_for_writing(path: Path, dtype: type, length: int) -> tuple[int, int]:
    """Creates a .npy file of `length` items (its data left to fill); returns an open descriptor and the
    data's offset in the file."""
    with path.open("wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (length,)}
        )
        offset = stream.tell()
        stream.truncate(offset + length * np.dtype(dtype).itemsize)
    return os.open(path, os.O_WRONLY), offset


def _write_at(output: tuple[int, int], values: np.ndarray, first: int) -> None:
    descriptor, offset = output
    view = memoryview(np.ascontiguousarray(values)).cast("B")
    position = offset + first * values.itemsize
    while view:
        written = os.pwrite(descriptor, view, position)
        view, position = view[written:], position + written


def _save_vocabulary(directory: Path, vocabulary: dict[str, int]) -> None:
    encoded = [term.encode() for term in vocabulary]  # in term-id order: dicts keep insertion order
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(text) for text in encoded], out=offsets[1:])
    hashes = np.fromiter((_hash(text) for text in encoded), np.uint64, len(encoded))
    order = np.argsort(hashes, kind="stable")
    np.save(directory / "term_hashes.npy", hashes[order])
    np.save(directory / "term_ids.npy", order.astype(np.int32))
    np.save(directory / "term_offsets.npy", offsets)
    np.save(directory / "term_bytes.npy", np.frombuffer(b"".join(encoded), dtype=np.uint8))


def _hash(text: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _load_array(path: Path, dtype: type, length: int | None) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, None, "BM25 file missing: the index is incomplete; rebuild it")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(path, None, f"BM25 file unreadable ({error}); rebuild the index") from error
    if array.dtype != dtype or array.ndim != 1 or (length is not None and len(array) != length):
        raise InputError(
            path, None, f"BM25 file damaged: {array.dtype}[{len(array)}] where {np.dtype(dtype)} was expected"
        )
    return array


# Search ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _first_at_least(docs: np.ndarray, lo: int, hi: int, row: int) -> int:
    while lo < hi:
        middle = (lo + hi) // 2
        if docs[middle] < row:
            lo = middle + 1
        else:
            hi = middle
    return lo


@numba.njit(cache=True, nogil=True)
def _worse(score_a: float, key_a: int, score_b: float, key_b: int) -> bool:
    return score_a < score_b or (score_a == score_b and key_a > key_b)


@numba.njit(cache=True, nogil=True)
def _keep(heap_score: np.ndarray, heap_key: np.ndarray, size: int, k: int, score: float, key: int) -> int:
    """Adds (score, key) to the heap of the k best kept so far (its root the worst) if it belongs there;
    returns the heap's new size."""
    if size < k:  # sift up
        slot = size
        size += 1
        while slot > 0 and _worse(score, key, heap_score[(slot - 1) // 2], heap_key[(slot - 1) // 2]):
            heap_score[slot] = heap_score[(slot - 1) // 2]
            heap_key[slot] = heap_key[(slot - 1) // 2]
            slot = (slot - 1) // 2
        heap_score[slot] = score
        heap_key[slot] = key
    elif _worse(heap_score[0], heap_key[0], score, key):  # replace the root, sift down
        slot = 0
        while True:
            child = 2 * slot + 1
            if child >= size:
                break
            if child + 1 < size and _worse(
                heap_score[child + 1], heap_key[child + 1], heap_score[child], heap_key[child]
            ):
                child += 1
            if not _worse(heap_score[child], heap_key[child], score, key):
                break
            heap_score[slot] = heap_score[child]
            heap_key[slot] = heap_key[child]
            slot = child
        heap_score[slot] = score
        heap_key[slot] = key
    return size


@numba.njit(cache=True, nogil=True)
def _gallop(docs: np.ndarray, lo: int, hi: int, row: int) -> int:
    """`_first_at_least` for a row close after `lo`: steps out exponentially, then bisects."""
    step = 1
    while lo + step < hi and docs[lo + step] < row:
        lo += step
        step *= 2
    return _first_at_least(docs, lo, min(lo + step + 1, hi), row)


@numba.njit(cache=True, nogil=True)
def _top_k_kernel(
    indptr: np.ndarray,
    docs: np.ndarray,
    scores: np.ndarray,
    keys: np.ndarray,
    terms: np.ndarray,
    weights: np.ndarray,
    bounds: np.ndarray,
    floor: np.ndarray,
    k: int,
    first_row: int,
    end_row: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best rows of [first_row, end_row) by (score, then smaller key), unordered, as (scores, keys).
    A row's score is summed term by term in `terms` order, so it never depends on blocks, threads or
    pruning. `bounds[j]`: the most term j adds to any row. `floor[0]`: a score that k rows of the whole
    index are known to reach, shared by the kernels of one query's spans (each raises it as its own k best
    rise; a stale lower value only prunes less).

    Each block of rows is pruned as MaxScore does where that reads far fewer postings: the terms of
    smallest bounds whose bounds sum below the score to beat cannot lift a row into the k best on their
    own, so only the other terms' postings are added up; a row they score high enough looks the optional
    terms up (largest bound first, giving up as soon as its bound falls below the score to beat), and a row
    that stays in reach is scored exactly. Otherwise every posting of the block is added into an
    accumulator and every row scanned."""
    heap_score = np.empty(k, np.float32)
    heap_key = np.empty(k, np.int64)
    size = 0
    accumulator = np.zeros(_BLOCK, np.float32)
    cursor = np.empty(len(terms), np.int64)
    stop = np.empty(len(terms), np.int64)
    pointer = np.empty(len(terms), np.int64)
    by_bound = np.argsort(bounds)
    for j in range(len(terms)):
        cursor[j] = _first_at_least(docs, indptr[terms[j]], indptr[terms[j] + 1], first_row)
    for block_start in range(first_row, end_row, _BLOCK):
        block_end = min(block_start + _BLOCK, end_row)
        for j in range(len(terms)):
            stop[j] = _first_at_least(docs, cursor[j], indptr[terms[j] + 1], block_end)
            pointer[j] = cursor[j]
        to_beat = max(floor[0], heap_score[0] if size == k else np.float32(0.0))
        optional = 0
        optional_bound = np.float32(0.0)
        while optional < len(terms) and optional_bound + bounds[by_bound[optional]] < to_beat:
            optional_bound += bounds[by_bound[optional]]
            optional += 1
        skipped = 0
        for ranked in range(optional):
            skipped += stop[by_bound[ranked]] - cursor[by_bound[ranked]]
        read = 0
        for ranked in range(optional, len(terms)):
            read += stop[by_bound[ranked]] - cursor[by_bound[ranked]]
        if skipped < _PRUNING_GAIN * read:  # looking rows up would cost more than reading every posting
            optional = 0
        for ranked in range(optional, len(terms)):
            j = by_bound[ranked] if optional > 0 else ranked
            weight = weights[j]
            for position in range(cursor[j], stop[j]):
                accumulator[docs[position] - block_start] += weight * scores[position]
        for local in range(block_end - block_start):
            score = accumulator[local]
            if score <= 0.0:
                continue
            accumulator[local] = 0.0
            row = block_start + local
            if optional > 0:
                # What the row could still reach, with a margin for float rounding.
                reach = score + optional_bound
                for ranked in range(optional - 1, -1, -1):
                    if reach * np.float32(1.0001) < to_beat:
                        break
                    j = by_bound[ranked]
                    pointer[j] = _gallop(docs, pointer[j], stop[j], row)
                    held = pointer[j] < stop[j] and docs[pointer[j]] == row
                    reach -= bounds[j] - (weights[j] * scores[pointer[j]] if held else np.float32(0.0))
                if reach * np.float32(1.0001) < to_beat:
                    continue
                score = np.float32(0.0)
                for j in range(len(terms)):
                    pointer[j] = _gallop(docs, pointer[j], stop[j], row)
                    if pointer[j] < stop[j] and docs[pointer[j]] == row:
                        score += weights[j] * scores[pointer[j]]
            # Ties with the worst kept go by key.
            if size < k or score >= heap_score[0]:
                size = _keep(heap_score, heap_key, size, k, score, keys[row])
        for j in range(len(terms)):
            cursor[j] = stop[j]
        if size == k and heap_score[0] > floor[0]:
            floor[0] = heap_score[0]
    return heap_score[:size].copy(), heap_key[:size].copy()


_compiled = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool for every index of the process (the kernel releases the GIL), one thread per CPU."""
    return shared_pool("bm25", os.cpu_count() or 1)


def _best(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> list[tuple[int, float]]:
    """The k best of the spans' (scores, keys), best first, equal scores by key."""
    if not parts:
        return []
    scores = np.concatenate([score for score, _ in parts])
    keys = np.concatenate([key for _, key in parts])
    best = np.lexsort((keys, -scores))[:k]
    return [(int(keys[i]), float(scores[i])) for i in best]


def _compile() -> None:
    """Compiles (or loads numba's cached compilation of) the kernel for the index's array types now, so
    the first search is not the one that waits. The index's arrays are read-only memory maps, a type of
    their own to numba."""
    mapped = [np.zeros(2, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64)]
    for array in mapped:
        array.flags.writeable = False
    with _compiled:
        one = np.ones(1, np.float32)
        _top_k_kernel(*mapped, np.zeros(1, np.int64), one, one, np.zeros(1, np.float32), 1, 0, 0)
