"""Updating an index: upserts and removals keep faiss, BM25 and the store consistent, atomically."""

import copy
from pathlib import Path

import pytest
from indexer_fixtures import CORPUS, FailingEmbedder
from jsonl_files import write_jsonl

from kotae.core.errors import KotaeError
from kotae.indexer.build import build_index
from kotae.indexer.chunking import indexed_text
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.update import add_passages, remove_passages


def assert_consistent(index_dir: Path, embedder: Embedder) -> Index:
    """Every stored passage is found by its own vector and is in BM25, and nothing else is anywhere."""
    index = Index.open(index_dir)  # checks the three counts against the manifest
    keys = index._store.keys()
    passages = index._store.passages(keys)
    vectors = embedder.embed_passages([indexed_text(p) for p in passages])
    assert [hits[0].passage for hits in index.search_dense(vectors, 1)] == passages
    if index.has_bm25:
        assert sorted(index._bm25.keys.tolist()) == keys.tolist()
    return index


@pytest.fixture(params=["flat", "hnsw"])
def built(request: pytest.FixtureRequest, corpus: Path, embedder: Embedder, tmp_path: Path) -> Path:
    build_index([corpus], tmp_path / "index", embedder, index_type=request.param)
    return tmp_path / "index"


def test_add_new_documents(built: Path, embedder: Embedder, tmp_path: Path) -> None:
    new = write_jsonl(
        tmp_path / "new.jsonl", [{"id": "p-fuji", "title": "富士山", "text": "富士山は日本一高い山である。"}]
    )
    manifest = add_passages(built, [new], embedder)
    assert (manifest.count, manifest.documents) == (7, 7)
    assert [source.path for source in manifest.sources][-1] == str(new)
    assert manifest.updated_at > manifest.built_at
    index = assert_consistent(built, embedder)
    assert index.search_bm25(["富士山の高さ"], 1)[0][0].passage.id == "p-fuji"


def test_a_document_added_again_replaces_all_its_passages(
    built: Path, embedder: Embedder, tmp_path: Path
) -> None:
    longer = {"id": "p-kurumi", "title": "くるみ山", "text": "くるみ山は標高900メートルに改められた。" * 25}
    manifest = add_passages(built, [write_jsonl(tmp_path / "kurumi.jsonl", [longer])], embedder)
    index = assert_consistent(built, embedder)
    assert index.passage("p-kurumi") is None  # one passage became two chunks
    assert index.passage("p-kurumi#1").text.startswith("くるみ山は標高900メートル")
    assert (manifest.count, manifest.documents) == (7, 6)
    assert all(hit.passage.id.startswith("p-kurumi#") for hit in index.search_bm25(["900メートル"], 5)[0])
    assert index.search_bm25(["512"], 5) == [[]]


def test_remove_by_passage_or_document_id(built: Path, embedder: Embedder, tmp_path: Path) -> None:
    long = {"id": "long", "title": "長文", "text": "長い文である。" * 80}
    add_passages(built, [write_jsonl(tmp_path / "long.jsonl", [long])], embedder)
    manifest = remove_passages(built, ["p-mikan", "long"])  # a passage id, and a document of two chunks
    assert (manifest.count, manifest.documents) == (5, 5)
    index = assert_consistent(built, embedder)
    assert index.passage("p-mikan") is None and index.passage("long#1") is None
    assert "p-mikan" not in {hit.passage.id for hit in index.search_bm25(["みかん島の人口"], 6)[0]}


def test_unknown_ids_and_emptying_are_refused(built: Path) -> None:
    with pytest.raises(KotaeError, match="no passage or document with id 'nope'"):
        remove_passages(built, ["p-mikan", "nope"])
    with pytest.raises(KotaeError, match=r"would leave index .* empty"):
        remove_passages(built, [row["id"] for row in CORPUS])
    assert len(Index.open(built)) == 6


def test_a_failed_update_leaves_the_previous_index(built: Path, embedder: Embedder, tmp_path: Path) -> None:
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "p-new", "title": "新", "text": "新しい文。"}])
    with pytest.raises(RuntimeError, match="embedding failed"):
        add_passages(built, [new], FailingEmbedder(embedder))
    index = assert_consistent(built, embedder)
    assert len(index) == 6 and index.passage("p-new") is None
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".index.") and p.is_dir()]


def test_another_embedder_is_refused(built: Path, embedder: Embedder, tmp_path: Path) -> None:
    other = copy.copy(embedder)
    other.name = "other-e5"
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "p-new", "title": "新", "text": "新しい文。"}])
    with pytest.raises(
        KotaeError, match=f"index {built} was built with embedder tiny-e5 .* configured with other-e5"
    ):
        add_passages(built, [new], other)


def test_ivfpq_keeps_its_training_across_updates(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    build_index([corpus], tmp_path / "index", embedder, index_type="ivfpq", params={"nbits": 2})
    manifest = remove_passages(tmp_path / "index", ["p-ramen"])
    assert manifest.dense.type == "ivfpq" and manifest.count == 5
    index = Index.open(tmp_path / "index")
    [hits] = index.search_dense(embedder.embed_queries(["ラーメン"]), 10)
    assert len(hits) == 5 and "p-ramen" not in {hit.passage.id for hit in hits}
