"""BM25 over token lists: ranking, unknown words, batches, ties, load, damaged files."""

import math
from pathlib import Path

import numpy as np
import pytest

from kotae.core.errors import InputError
from kotae.indexer.bm25 import KEYS_FILE, META_FILE, Bm25Index, Bm25Params

DOCUMENTS = [["東京", "首都"], ["大阪", "都市"], ["東京", "東京", "タワー"], ["京都", "寺"]]
KEYS = np.array([10, 20, 30, 40])
QUERIES = [["東京"], ["京都", "寺"], ["大阪", "東京"], ["首都", "都市", "タワー"], ["寺", "寺"]]


def _build(directory: Path, batches: list[tuple[np.ndarray, list[list[str]]]], threads: int = 1) -> Bm25Index:
    return Bm25Index.build(directory, batches, Bm25Params(), threads=threads)


def test_search_ranks_by_bm25_and_returns_keys(tmp_path: Path) -> None:
    index = _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    assert len(index) == 4
    ranked = index.search(["東京"], 10)
    assert [key for key, _ in ranked] == [30, 10]  # only passages sharing a word come back
    assert ranked[0][1] > ranked[1][1] > 0
    assert [key for key, _ in index.search(["京都", "寺"], 1)] == [40]


def test_scores_are_lucene_bm25(tmp_path: Path) -> None:
    index = _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    n, df, average = 4, 2, 9 / 4
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    expected = idf * 2 / (2 + 1.2 * (0.25 + 0.75 * 3 / average))  # 東京 twice in a passage of 3 words
    assert index.search(["東京"], 1)[0][1] == pytest.approx(expected, rel=1e-6)
    assert index.search(["東京", "東京"], 1)[0][1] == pytest.approx(2 * expected, rel=1e-6)


def test_unknown_words_find_nothing(tmp_path: Path) -> None:
    index = _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    assert index.search(["名古屋"], 5) == []
    assert index.search([], 5) == []
    assert index.search(["東京"], 0) == []
    assert index.search_many([["名古屋"], [], ["東京"]], 0) == [[], [], []]
    assert index.search_many([], 5) == []


def test_several_batches_equal_one_batch(tmp_path: Path) -> None:
    one = _build(tmp_path / "one", [(KEYS, DOCUMENTS)])
    batches = [(KEYS[:1], DOCUMENTS[:1]), (KEYS[1:3], DOCUMENTS[1:3]), (KEYS[3:], DOCUMENTS[3:])]
    several = _build(tmp_path / "several", batches, threads=2)
    assert len(several) == len(one)
    for query in QUERIES:
        assert several.search(query, 10) == one.search(query, 10)
    for name in ("scores.npy", "docs.npy", "indptr.npy", KEYS_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "several" / name).read_bytes()


def test_equal_scores_are_ordered_by_key_across_blocks_and_threads(tmp_path: Path) -> None:
    """Rows are searched in blocks of 65,536 by several threads; equal scores still come back by key,
    also at the k-th place."""
    rows = 140_000
    keys = np.arange(rows, dtype=np.int64)[::-1] * 3  # keys descend as rows go on
    documents = [["灯台", "岬"] if row % 50_000 == 7 else ["海"] for row in range(rows)]
    batches = [
        (keys[start : start + 60_000], documents[start : start + 60_000]) for start in range(0, rows, 60_000)
    ]
    index = _build(tmp_path / "bm25", batches, threads=3)
    wanted = sorted(int(keys[row]) for row in range(rows) if row % 50_000 == 7)
    assert [key for key, _ in index.search(["灯台"], 2)] == wanted[:2]
    assert [key for key, _ in index.search(["海"], 3)] == sorted(int(key) for key in keys)[:3]
    single = Bm25Index.load(tmp_path / "bm25", threads=1)
    queries = [["灯台"], ["海"], ["名古屋"], ["海", "岬"]]
    for query in queries:
        assert single.search(query, 20) == index.search(query, 20)
    # A batch runs every query's spans on the pool at once, with the same results as one at a time.
    assert index.search_many(queries, 20) == [single.search(query, 20) for query in queries]


def exhaustive_top_k(index: Bm25Index, query: list[str], k: int) -> list[tuple[int, float]]:
    """Every posting of every query word added into one score per row, in the kernel's term order."""
    terms, counts = index._term_ids_of(query)
    totals = np.zeros(len(index), np.float32)
    for term, weight in zip(terms, counts.astype(np.float32), strict=True):
        postings = slice(index._indptr[term], index._indptr[term + 1])
        totals[index._docs[postings]] += weight * index._scores[postings]
    rows = np.flatnonzero(totals > 0)
    best = rows[np.lexsort((index.keys[rows], -totals[rows]))][:k]
    return [(int(index.keys[row]), float(totals[row])) for row in best]


def test_pruned_search_equals_reading_every_posting(tmp_path: Path) -> None:
    """MaxScore pruning skips common words' postings once k rows are kept: over Zipf-distributed words,
    many blocks and threads, queries mixing common and rare words (repeated ones too) rank and score
    exactly as the exhaustive sum."""
    rng = np.random.default_rng(5)
    words = [f"w{rank}" for rank in range(3000)]
    zipf = 1 / np.arange(1, len(words) + 1)
    rows = 150_000
    lengths = rng.integers(3, 15, rows)
    drawn = rng.choice(len(words), lengths.sum(), p=zipf / zipf.sum())
    documents = [[words[w] for w in part] for part in np.split(drawn, np.cumsum(lengths)[:-1])]
    keys = rng.permutation(rows).astype(np.int64) * 7
    index = _build(tmp_path / "bm25", [(keys, documents)], threads=3)
    single = Bm25Index.load(tmp_path / "bm25", threads=1)
    queries = [
        [words[w] for w in rng.choice(len(words), size, p=zipf / zipf.sum())]
        for size in rng.integers(1, 9, 60)
    ] + [["w0", "w1", "w2", "w2900"], ["w0", "w0", "w1500"], ["w3", "w4", "w5", "w6"]]
    for k in (1, 10, 50):
        expected = [exhaustive_top_k(index, query, k) for query in queries]
        assert index.search_many(queries, k) == expected
        assert [single.search(query, k) for query in queries] == expected


def test_load_round_trip(tmp_path: Path) -> None:
    built = _build(tmp_path / "bm25", [(KEYS[:2], DOCUMENTS[:2]), (KEYS[2:], DOCUMENTS[2:])])
    loaded = Bm25Index.load(tmp_path / "bm25")
    assert len(loaded) == 4
    assert loaded.keys.tolist() == KEYS.tolist()
    for query in QUERIES:
        assert loaded.search(query, 3) == built.search(query, 3)


def test_any_token_is_one_word(tmp_path: Path) -> None:
    index = _build(tmp_path / "bm25", [(np.array([1, 2, 3]), [["New York", "市"], ["New", "York"], []])])
    assert len(index) == 3  # a passage without words is still counted
    assert [key for key, _ in index.search(["New York"], 5)] == [1]
    assert [key for key, _ in index.search(["York"], 5)] == [2]


def test_an_empty_index_finds_nothing(tmp_path: Path) -> None:
    index = _build(tmp_path / "bm25", [])
    assert len(index) == 0
    assert index.search(["東京"], 5) == []


def test_build_refuses_what_it_cannot_build(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only Lucene BM25"):
        Bm25Index.build(tmp_path / "other", [(KEYS, DOCUMENTS)], Bm25Params(method="atire"))
    with pytest.raises(ValueError, match="2 keys for 1 token lists"):
        _build(tmp_path / "mismatched", [(np.array([1, 2]), [["東京"]])])
    with pytest.raises(ValueError, match="distinct"):
        _build(tmp_path / "twice", [(np.array([1]), [["東京"]]), (np.array([1]), [["大阪"]])])
    _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    with pytest.raises(ValueError, match="not empty"):
        _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    (tmp_path / "bm25" / "scores.npy").unlink()
    with pytest.raises(InputError, match=r"scores\.npy: BM25 file missing"):
        Bm25Index.load(tmp_path / "bm25")
    (tmp_path / "bm25" / META_FILE).unlink()  # what an interrupted build leaves out
    with pytest.raises(InputError, match=rf"{META_FILE}: BM25 file missing"):
        Bm25Index.load(tmp_path / "bm25")


def test_damaged_files_name_the_file(tmp_path: Path) -> None:
    _build(tmp_path / "bm25", [(KEYS, DOCUMENTS)])
    docs = tmp_path / "bm25" / "docs.npy"
    docs.write_bytes(docs.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"docs\.npy: BM25 file unreadable"):
        Bm25Index.load(tmp_path / "bm25")
    np.save(docs, np.zeros(3, np.int64))
    with pytest.raises(InputError, match=r"docs\.npy: BM25 file damaged"):
        Bm25Index.load(tmp_path / "bm25")
    (tmp_path / "bm25" / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{META_FILE}: BM25 file unreadable"):
        Bm25Index.load(tmp_path / "bm25")
