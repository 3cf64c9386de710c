"""The store's tokens fed to BM25: the same batches whether worker processes read them or this one, and the
same index as from the token lists themselves."""

import json
from pathlib import Path

import numpy as np
import pytest

from kotae.core.passage import Passage
from kotae.indexer import bm25_feed
from kotae.indexer.bm25 import Bm25Index, Bm25Params
from kotae.indexer.store import PassageStore

WORDS = ["東京", "大阪", "京都", "寺", "塔", "川", "山", "海"]


def token_lists(count: int) -> list[list[str]]:
    rng = np.random.default_rng(7)
    return [[WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(0, 6))] for _ in range(count)]


def test_workers_feed_the_same_batches_and_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = token_lists(300)
    store = PassageStore.create(tmp_path / "passages.sqlite")
    for number, words in enumerate(tokens):
        store.insert(
            f"d{number}", [Passage(f"d{number}", "t", "本文")], [json.dumps(words, ensure_ascii=False)]
        )
    store.commit()
    monkeypatch.setattr(bm25_feed, "BATCH_PASSAGES", 64)  # five batches
    here, by_workers = list(bm25_feed.numbered_batches(store, 0)), list(bm25_feed.numbered_batches(store, 2))
    assert len(here) == 5
    for ours, theirs in zip(here, by_workers, strict=True):
        assert ours.words == theirs.words
        for field in ("keys", "ids", "lengths"):
            np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
    fed = Bm25Index.build(tmp_path / "fed", by_workers, Bm25Params(), threads=1)
    listed = Bm25Index.build(tmp_path / "listed", [(store.keys(), tokens)], Bm25Params(), threads=1)
    for name in ("indptr", "docs", "scores", "keys", "term_hashes", "term_ids"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "fed" / f"{name}.npy"), np.load(tmp_path / "listed" / f"{name}.npy")
        )
    for query in (["東京"], ["寺", "海"], ["富士"]):
        assert fed.search(query, 10) == listed.search(query, 10)
