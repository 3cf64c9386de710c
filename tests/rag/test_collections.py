"""Collections: several indexes by name, each swapped for a newer build while requests finish on the old."""

import json
from pathlib import Path

import pytest

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.indexer.build import build_index
from kotae.indexer.index import Index
from kotae.indexer.layout import MANIFEST_FILE, collection_directory
from kotae.models.tiny import build_tiny_e5
from kotae.rag.collections import DEFAULT_COLLECTION, Collections, UnknownCollection
from kotae.rag.embedder import Embedder
from kotae.rag.retriever import Retriever

WIKI = [{"id": "kurumi", "title": "くるみ山", "text": "くるみ山は標高512メートルの山である。"}]
MANUALS = [
    {"id": "vpn", "title": "VPN手順", "text": "社外からはVPNで接続する。接続先はvpn.example.jpである。"},
    {"id": "leave", "title": "休暇規程", "text": "有給休暇は入社半年後に10日付与される。"},
]
SETTINGS = Settings(retrieval="bm25")


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    return Embedder(build_tiny_e5(tmp_path_factory.mktemp("models") / "tiny-e5"))


@pytest.fixture
def served(tmp_path: Path, embedder: Embedder) -> Collections:
    build_index([write(tmp_path / "wiki.jsonl", WIKI)], tmp_path / "wiki", embedder, workers=0)
    root = tmp_path / "collections"
    build_index([write(tmp_path / "manuals.jsonl", MANUALS)], root / "manuals", embedder, workers=0)
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
    build_index([write(tmp_path / "manuals2.jsonl", rebuilt)], served.root / "manuals", embedder, workers=0)
    build_index([write(tmp_path / "hr.jsonl", MANUALS[1:])], served.root / "hr", embedder, workers=0)

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
