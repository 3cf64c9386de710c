"""The server's retrieval in a process of its own: it ranks as the server's own collections do, follows
every write to them before the write returns, and says why it failed in the error the server would have
raised itself."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonl_files import write_jsonl

from kotae.core.config import Settings
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.rag.collections import Collections, UnknownCollection
from kotae.rag.documents import DocumentInput
from kotae.rag.search_process import SearchProcess
from kotae.rag.stage_times import StageTimes
from kotae.runtime import open_collections

WIKI = [
    {"id": "kurumi", "title": "くるみ山", "text": "くるみ山は標高512メートルの山である。"},
    {"id": "biwa", "title": "琵琶湖", "text": "琵琶湖は滋賀県にある日本最大の湖である。"},
]
MANUALS = [
    {"id": "vpn", "title": "VPN手順", "text": "社外からはVPNで接続する。接続先はvpn.example.jpである。"}
]


@pytest.fixture
def settings(tmp_path: Path, tiny_e5: Path, embedder: Embedder) -> Settings:
    build_index([write_jsonl(tmp_path / "wiki.jsonl", WIKI)], tmp_path / "wiki", embedder, workers=0)
    root = tmp_path / "collections"
    build_index([write_jsonl(tmp_path / "manuals.jsonl", MANUALS)], root / "manuals", embedder, workers=0)
    return Settings(
        home=tmp_path / "home", embedder=str(tiny_e5), index=tmp_path / "wiki", collections_dir=root
    )


@pytest.fixture
def server_and_process(settings: Settings) -> Iterator[tuple[Collections, SearchProcess]]:
    process = SearchProcess.start(open_collections, settings)
    served = open_collections(settings)
    process.wait_ready()
    served.changed = process.refresh
    try:
        yield served, process
    finally:
        process.close()


def ranked(process: SearchProcess, question: str, collection: str | None = None) -> list[tuple[str, float]]:
    (found,) = process.search_many(collection, [question], 3, None, StageTimes())
    return [(hit.passage.id, round(hit.score, 6)) for hit in found.hits]


def test_the_process_ranks_as_the_servers_own_collections_do(
    server_and_process: tuple[Collections, SearchProcess],
) -> None:
    served, process = server_and_process
    questions = ["くるみ山の標高は？", "日本最大の湖は？"]
    times = StageTimes()
    found = process.search_many(None, questions, 2, "hybrid", times)
    here = served.get(None).search_many(questions, 2, "hybrid")
    assert [[hit.passage for hit in r.hits] for r in found] == [[hit.passage for hit in r.hits] for r in here]
    assert [r.best_cosine for r in found] == pytest.approx([r.best_cosine for r in here])
    assert {"embed", "dense", "tokenize", "bm25", "fuse", "read"} <= set(times.ms), "its stages come back"
    assert ranked(process, "VPNの接続先は？", "manuals")[0][0] == "vpn"


def test_a_write_is_searched_by_the_process_once_it_returns(
    server_and_process: tuple[Collections, SearchProcess],
) -> None:
    served, process = server_and_process
    question = "三階のプリンターの型番は？"
    assert "printer" not in {doc for doc, _ in ranked(process, question, "manuals")}
    served.upsert("manuals", [DocumentInput("printer", "プリンター", "三階のプリンターはPX-9である。", {})])
    assert ranked(process, question, "manuals")[0][0].startswith("printer")
    served.upsert(
        "manuals", [DocumentInput("printer", "プリンター", "三階のプリンターはPX-10になった。", {})]
    )
    assert ranked(process, question, "manuals") == [
        (hit.passage.id, round(hit.score, 6)) for hit in served.get("manuals").retrieve(question, 3)
    ], "the second version, as the server's own index has it"
    served.delete("manuals", "vpn")
    assert "vpn" not in {doc for doc, _ in ranked(process, "VPNの接続先は？", "manuals")}


def test_a_collection_built_while_serving_is_searched_once_the_server_picks_it_up(
    server_and_process: tuple[Collections, SearchProcess],
    settings: Settings,
    embedder: Embedder,
    tmp_path: Path,
) -> None:
    served, process = server_and_process
    with pytest.raises(UnknownCollection):
        process.search_many("hr", ["有給休暇は？"], 3, None, StageTimes())
    leave = [{"id": "leave", "title": "休暇規程", "text": "有給休暇は入社半年後に10日付与される。"}]
    build_index(
        [write_jsonl(tmp_path / "hr.jsonl", leave)], settings.collections_root / "hr", embedder, workers=0
    )
    assert served.reload_changed() == ["hr"]
    assert ranked(process, "有給休暇は何日？", "hr")[0][0] == "leave"


def test_a_process_that_cannot_open_the_index_says_so(settings: Settings, tmp_path: Path) -> None:
    broken = settings.model_copy(update={"index": tmp_path / "nowhere"})
    process = SearchProcess.start(open_collections, broken)
    try:
        with pytest.raises(Exception, match="could not start"):
            process.wait_ready()
    finally:
        process.close()
