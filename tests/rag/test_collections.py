"""Collections: several indexes by name, each swapped for a newer build while requests finish on the old."""

from collections.abc import Sequence
from pathlib import Path

import pytest
from jsonl_files import write_jsonl

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.layout import MANIFEST_FILE, collection_directory
from kotae.rag.collections import DEFAULT_COLLECTION, Collections, UnknownCollection, UnknownDocument
from kotae.rag.documents import DocumentInput
from kotae.rag.retriever import Retriever

WIKI = [{"id": "kurumi", "title": "くるみ山", "text": "くるみ山は標高512メートルの山である。"}]
MANUALS = [
    {"id": "vpn", "title": "VPN手順", "text": "社外からはVPNで接続する。接続先はvpn.example.jpである。"},
    {"id": "leave", "title": "休暇規程", "text": "有給休暇は入社半年後に10日付与される。"},
]
SETTINGS = Settings(retrieval="bm25")


@pytest.fixture
def served(tmp_path: Path, embedder: Embedder) -> Collections:
    build_index([write_jsonl(tmp_path / "wiki.jsonl", WIKI)], tmp_path / "wiki", embedder, workers=0)
    root = tmp_path / "collections"
    build_index([write_jsonl(tmp_path / "manuals.jsonl", MANUALS)], root / "manuals", embedder, workers=0)
    (root / "not-an-index").mkdir()
    default = Retriever(Index.open(tmp_path / "wiki"), embedder, SETTINGS)
    return Collections.open(default, root)


def ids(retriever: Retriever, question: str) -> list[str]:
    return [hit.passage.id for hit in retriever.retrieve(question, 5)]


def test_each_collection_answers_from_its_own_index(served: Collections) -> None:
    assert served.names() == [DEFAULT_COLLECTION, "manuals"]
    assert ids(served.get(None), "くるみ山の標高は？") == ["kurumi"]
    assert ids(served.get("manuals"), "VPNの接続先は？")[0] == "vpn"
    assert "kurumi" not in ids(served.get("manuals"), "くるみ山の標高は？")
    info = served.info("manuals")
    assert (info.passages, info.documents) == (2, 2)
    for unknown in ("hr", "not-an-index", "../wiki"):
        with pytest.raises(UnknownCollection):
            served.get(unknown)
        with pytest.raises(UnknownCollection):
            served.reload(unknown)


def test_a_rebuild_is_served_after_reload_and_requests_on_the_old_index_finish(
    served: Collections, embedder: Embedder, tmp_path: Path
) -> None:
    before = served.get("manuals")
    assert served.reload_changed() == []
    rebuilt = [*MANUALS, {"id": "wifi", "title": "無線LAN", "text": "会議室の無線LANはkaigi-5gである。"}]
    build_index(
        [write_jsonl(tmp_path / "manuals2.jsonl", rebuilt)], served.root / "manuals", embedder, workers=0
    )
    build_index([write_jsonl(tmp_path / "hr.jsonl", MANUALS[1:])], served.root / "hr", embedder, workers=0)

    assert served.reload_changed() == ["hr", "manuals"]
    assert ids(served.get("manuals"), "無線LANの名前は？")[0] == "wifi"
    assert served.names() == [DEFAULT_COLLECTION, "hr", "manuals"]
    # A request that took the old retriever before the swap still reads the old index, whole.
    assert "wifi" not in ids(before, "無線LANの名前は？")
    assert ids(before, "VPNの接続先は？")[0] == "vpn"


def test_an_index_that_does_not_open_leaves_the_collection_as_it_was(served: Collections) -> None:
    manifest = served.root / "manuals" / MANIFEST_FILE
    manifest.write_text("{", encoding="utf-8")
    with pytest.raises(KotaeError, match="manifest unreadable"):
        served.reload("manuals")
    assert served.reload_changed() == []  # logged, once
    assert ids(served.get("manuals"), "VPNの接続先は？")[0] == "vpn"


def test_collection_names_are_plain_folder_names(tmp_path: Path) -> None:
    assert collection_directory(tmp_path, "hr-2026.v1") == tmp_path / "hr-2026.v1"
    for bad in ("", ".hidden", "a/b", "..", "x" * 65, "日本語"):
        with pytest.raises(KotaeError, match="collection name"):
            collection_directory(tmp_path, bad)


def written(doc_id: str, title: str, text: str) -> DocumentInput:
    return DocumentInput(doc_id, title, text, {"source": "test"})


def test_written_documents_are_searched_at_once_and_override_the_built_ones(
    served: Collections, embedder: Embedder
) -> None:
    before = served.get("manuals").index.view()
    assert served.upsert("manuals", [written("printer", "プリンター", "三階のプリンターはPX-9である。")]) == 1
    assert served.upsert("manuals", [written("vpn", "VPN手順", "VPNは廃止された。今はZTNAで接続する。")]) == 1
    served.delete("manuals", "leave")
    for mode in ("bm25", "dense"):
        retriever = Retriever(served.get("manuals").index, embedder, Settings(retrieval=mode))
        hits = retriever.retrieve("三階のプリンターの機種は？", 5)
        assert "printer" in [hit.passage.id for hit in hits], mode
        [named] = retriever.search_many(["三階のプリンターの機種は？"], 1, ranked_depth=5)
        assert named.ranked_ids == [hit.passage.id for hit in hits], "written passages are named by id too"
        texts = [hit.passage.text for hit in retriever.retrieve("VPNで接続する", 5)]
        assert "VPNは廃止された。今はZTNAで接続する。" in texts, mode
        assert not any("接続先はvpn.example.jp" in text for text in texts), "the replaced version is gone"
        assert "leave" not in [hit.passage.id for hit in retriever.retrieve("有給休暇は何日？", 5)]
    assert served.document("manuals", "printer").written.metadata == {"source": "test"}
    assert served.document("manuals", "vpn").passages[0].text.startswith("VPNは廃止")
    with pytest.raises(UnknownDocument):
        served.document("manuals", "leave")
    with pytest.raises(UnknownDocument):
        served.delete("manuals", "never-there")
    info = served.info("manuals")
    assert (info.passages, info.documents) == (2, 2)  # vpn (new text) and printer; leave deleted
    # A view taken before the writes still reads the collection as it was then, whole.
    assert [hit.passage.id for hit in before.hits(before.rank_bm25(["有給休暇は何日？"], 1))[0]] == ["leave"]


def test_written_documents_survive_a_reopen_and_a_rebuild(
    served: Collections, embedder: Embedder, tmp_path: Path
) -> None:
    served.upsert("manuals", [written("printer", "プリンター", "三階のプリンターはPX-9である。")])
    served.delete("manuals", "leave")
    directory = served.get("manuals").index.directory
    reopened = Index.open(directory)  # a new process: the overlay is read back from its file
    assert reopened.document("printer") is not None and reopened.document("leave") is None
    build_index([write_jsonl(tmp_path / "again.jsonl", MANUALS)], directory, embedder, workers=0)
    assert served.reload_changed() == ["manuals"]
    index = served.get("manuals").index
    assert index.document("printer") is not None and index.document("leave") is None
    assert index.counts() == (2, 2)


def test_bm25_scores_of_written_passages_are_on_the_built_index_scale(served: Collections) -> None:
    """A written copy of a built passage scores about as the original does, so that fusion and top-k mix
    the two fairly."""
    original = MANUALS[0]
    served.upsert("manuals", [written("vpn-copy", original["title"], original["text"])])
    [ranking] = served.get("manuals").index.view().rank_bm25(["VPNの接続先"], 5)
    scores = dict(ranking)
    built_key = next(key for key in scores if key > 0)
    written_key = next(key for key in scores if key < 0)
    assert scores[written_key] == pytest.approx(scores[built_key], rel=1e-5)


class NoScorer:
    def score(self, pairs: Sequence[tuple[str, Passage]]) -> list[float]:
        return [0.0] * len(pairs)


def test_every_collection_reranks_with_the_default_collections_reranker(served: Collections) -> None:
    default = served.default
    reranking = Retriever(default.index, default.embedder, default.settings, reranker=NoScorer())

    collections = Collections.open(reranking, served.root)

    assert collections.get("manuals").reranker is reranking.reranker
    assert collections.reload("manuals").reranker is reranking.reranker
