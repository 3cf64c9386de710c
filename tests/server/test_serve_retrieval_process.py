"""A server whose retrieval batches are ranked in a process of its own (`KOTAE_SERVE_RETRIEVAL_PROCESS`):
it answers as the in-thread server does, and a document written through the API is searched as soon as the
write has answered, deleted ones no more."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_marker import engine_fixture
from jsonl_files import write_jsonl
from server_fixtures import ADMIN_TOKEN, BorrowedEngine, LiveServer, app_serving, server_settings

from kotae.core.config import Settings
from kotae.rag.pipeline import Pipeline
from kotae.runtime import open_collections_for, searching


@engine_fixture(scope="module")
def apart(live: LiveServer, workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second app on the session server's engine, with collections of its own opened twice: here for the
    writes, in the search process for the batches; its URL."""
    from kotae.indexer.build import build_index
    from kotae.indexer.embedder import Embedder
    from kotae.server.app import create_app

    shared = live.app.state.kotae.ready().pipeline
    with live.client() as http:  # vLLM handles outputs on the loop of its first request: the session server's
        assert http.post("/v1/qa", json={"question": "富士山は？", "max_tokens": 1}).status_code == 200
    root = tmp_path_factory.mktemp("apart-collections")
    rows = [{"id": "lunch", "title": "社員食堂", "text": "社員食堂は11時半から14時まで開いている。"}]
    embedder = Embedder(Path(live.settings.embedder))
    build_index([write_jsonl(root.parent / "notes.jsonl", rows)], root / "notes", embedder, workers=0)
    settings = server_settings(
        workspace,
        adapter_dir=tmp_path_factory.mktemp("no-adapters"),
        collections_dir=root,
        index_watch_s=0,
        serve_retrieval_process=True,
    )

    def in_a_process(settings: Settings) -> Pipeline:
        collections, search = open_collections_for(settings, apart=True)
        return searching(Pipeline(collections, BorrowedEngine(shared.engine), settings), search)  # type: ignore[arg-type]

    with app_serving(create_app(settings, pipeline_factory=in_a_process)) as url:
        yield url


def sources(client: httpx.Client, question: str, collection: str) -> set[str]:
    response = client.post(
        "/v1/qa", json={"question": question, "max_tokens": 4, "collection": collection, "retrieval": "bm25"}
    )
    assert response.status_code == 200, response.text
    return {source["id"] for source in response.json()["sources"]}


def test_documents_written_through_the_api_are_searched_once_the_write_answers(apart: str) -> None:
    with httpx.Client(base_url=apart, timeout=120) as client:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert "lunch" in sources(client, "社員食堂はいつ開いている？", "notes")
        written = client.post(
            "/v1/collections/notes/documents",
            json={"id": "parking", "title": "駐車場", "text": "来客用の駐車場は地下二階にある。"},
            headers=admin,
        )
        assert written.status_code == 200, written.text
        assert "parking" in sources(client, "来客用の駐車場はどこ？", "notes")
        assert client.delete("/v1/collections/notes/documents/parking", headers=admin).status_code == 200
        assert "parking" not in sources(client, "来客用の駐車場はどこ？", "notes")
        missing = client.post("/v1/qa", json={"question": "VPNは？", "collection": "hr"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
        answered = client.post("/v1/qa", json={"question": "富士山の高さは？", "max_tokens": 4})
        assert answered.status_code == 200 and answered.json()["collection"] == "default"
