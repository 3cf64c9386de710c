"""Passage store: insert, look up by key and id, documents, deletion, read-only opening."""

from collections.abc import Sequence
from pathlib import Path

import pytest

from kotae.core.errors import InputError
from kotae.core.passage import Passage
from kotae.indexer.store import PassageStore

A1, A2 = Passage("a#1", "A", "一。"), Passage("a#2", "A", "二。")
B = Passage("b", "B", "三。")


@pytest.fixture
def store(tmp_path: Path) -> PassageStore:
    store = PassageStore.create(tmp_path / "passages.sqlite")
    store.insert("a", [A1, A2], ['["一"]', '["二"]'])
    store.insert("b", [B], ['["三"]'])
    store.commit()
    return store


def test_lookups(store: PassageStore) -> None:
    assert store.count() == 3 and store.document_count() == 2
    keys = store.keys().tolist()
    assert store.passages([keys[2], keys[0]]) == [B, A1]
    assert store.passage("a#2") == A2 and store.passage("zzz") is None
    batch_keys, tokens = store.tokens_in_range(keys[1], keys[2] + 1)
    assert batch_keys.tolist() == keys[1:] and tokens == [["二"], ["三"]]
    assert store.max_key() == keys[2]
    assert [p for block in store.iter_passages(keys, 2) for p in block] == [A1, A2, B]


def test_ids_name_passages_or_whole_documents(store: PassageStore) -> None:
    keys = store.keys().tolist()
    assert store.keys_of(["a", "b", "a#2", "nope"]) == {"a": keys[:2], "b": [keys[2]], "a#2": [keys[1]]}
    assert store.keys_of_documents(["a"]) == keys[:2]


def test_passages_and_their_ids_come_back_as_one_row_a_batch(
    store: PassageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows stepped one at a time retake the GIL once each (see `PassageStore._rows`)."""
    keys = store.keys().tolist()
    rows_fetched: list[int] = []
    query = PassageStore._query

    def counted(self: PassageStore, sql: str, params: Sequence[object]) -> list[tuple]:
        rows = query(self, sql, params)
        rows_fetched.append(len(rows))
        return rows

    monkeypatch.setattr(PassageStore, "_query", counted)
    tricky = Passage("c", '改行\nと"引用"', "タブ\t、バックスラッシュ\\、絵文字🗻。")
    store.insert("c", [tricky], ["[]"])
    [*_, tricky_key] = store.keys().tolist()
    rows_fetched.clear()
    assert store.passages([keys[2], tricky_key, keys[0]]) == [B, tricky, A1]
    assert store.ids([keys[1], tricky_key]) == ["a#2", "c"]
    assert rows_fetched == [1, 1]
    with pytest.raises(KeyError):
        store.ids([tricky_key + 1])


def test_duplicate_passage_id_is_refused_and_keys_are_never_reused(store: PassageStore) -> None:
    with pytest.raises(KeyError):
        store.insert("c", [B], ["[]"])
    last = int(store.keys()[-1])
    store.delete([last])
    [new_key] = store.insert("b", [B], ['["三"]'])
    assert new_key > last


def test_read_only_opening(store: PassageStore) -> None:
    store.close()
    reader = PassageStore.open(store.path)
    assert reader.count() == 3
    with pytest.raises(Exception, match="readonly"):
        reader.insert("d", [Passage("d", "D", "四。")], ["[]"])


def test_missing_or_damaged_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="passage store missing"):
        PassageStore.open(tmp_path / "passages.sqlite")
    (tmp_path / "passages.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(InputError, match="passage store unreadable"):
        PassageStore.open(tmp_path / "passages.sqlite")
