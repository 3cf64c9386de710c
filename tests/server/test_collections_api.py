"""Collections over HTTP: `/v1/qa` and chat read the collection they name, `/v1/collections` lists and
reloads them, a collection built while kotae serves is picked up, and API keys keep collections apart."""

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_marker import engine_fixture
from pydantic import SecretStr
from server_fixtures import (
    ADMIN_TOKEN,
    MANUALS,
    LiveServer,
    run_in_thread,
    server_settings,
    wait_ready,
    write_jsonl,
)

from kotae.core.config import Settings

MANUAL_IDS = {row["id"] for row in MANUALS}
ALL_KEY, MANUALS_KEY = "key-for-everything-01", "key-for-manuals-0001"


def qa(client: httpx.Client, question: str, **fields: object) -> httpx.Response:
    return client.post("/v1/qa", json={"question": question, "max_tokens": 4, **fields})


def source_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {source["id"] for source in response.json()["sources"]}


def test_qa_answers_from_the_collection_it_names(client: httpx.Client) -> None:
    manuals = qa(client, "VPNの接続先は？", collection="manuals", retrieval="bm25")
    assert source_ids(manuals) <= MANUAL_IDS and "vpn" in source_ids(manuals)
    assert manuals.json()["collection"] == "manuals"
    default = qa(client, "VPNの接続先は？")
    assert not source_ids(default) & MANUAL_IDS and default.json()["collection"] == "default"
    missing = qa(client, "VPNの接続先は？", collection="hr")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"


def test_chat_retrieves_from_its_kotae_collection(client: httpx.Client) -> None:
    body = {
        "messages": [{"role": "user", "content": "無線LANの名前は？"}],
        "max_tokens": 4,
        "kotae": {"collection": "manuals", "mode": "bm25"},
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert {source["id"] for source in response.json()["kotae_sources"]} <= MANUAL_IDS


def test_sources_are_the_passages_the_prompt_held(client: httpx.Client, live: LiveServer) -> None:
    sources = qa(client, "富士山の高さは？", top_k=50).json()["sources"]
    assert 0 < len(sources) < 50, "a 512-token budget holds a handful of the demo passages, not 50"
    assert not any(source["cut"] for source in sources[:-1])


def test_collections_are_listed_and_reloaded_by_the_admin(live: LiveServer) -> None:
    with live.client() as anonymous:
        assert anonymous.get("/v1/collections").status_code == 401
    with live.admin() as admin:
        listed = {card["name"]: card for card in admin.get("/v1/collections").json()["data"]}
        assert listed["manuals"]["passages"] == len(MANUALS) and "default" in listed
        reloaded = admin.post("/v1/collections/manuals/reload")
        assert reloaded.status_code == 200 and reloaded.json()["documents"] == len(MANUALS)
        assert admin.post("/v1/collections/hr/reload").status_code == 404
        assert admin.post("/v1/collections/..%2Fetc/reload").status_code in (404, 422)


def test_a_collection_built_while_serving_is_served_without_a_restart(
    live: LiveServer, tmp_path: Path
) -> None:
    from kotae.indexer.build import build_index
    from kotae.rag.embedder import Embedder

    rows = [{"id": "bus", "title": "送迎バス", "text": "送迎バスは駅北口から毎時15分に出る。"}]
    build_index(
        [write_jsonl(tmp_path / "facilities.jsonl", rows)],
        live.settings.collections_root / "facilities",
        Embedder(Path(live.settings.embedder)),
        workers=0,
    )
    with live.admin() as admin:
        assert admin.post("/v1/collections/facilities/reload").status_code == 200
    with live.client() as client:
        assert source_ids(qa(client, "送迎バスはどこから出る？", collection="facilities")) == {"bus"}


def test_a_reload_fails_no_request_in_flight(live: LiveServer) -> None:
    failures: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        with live.client() as client:
            while not stop.is_set():
                response = qa(client, "有給休暇は何日？", collection="manuals", retrieval="bm25")
                if response.status_code != 200:
                    failures.append(response.text)

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for asker in askers:
        asker.start()
    try:
        with live.admin() as admin:
            for _ in range(5):
                assert admin.post("/v1/collections/manuals/reload").status_code == 200
    finally:
        stop.set()
        for asker in askers:
            asker.join(timeout=120)
    assert failures == []


class BorrowedEngine:
    """The session server's engine, lent to a second app: everything passes through but `shutdown`, which
    stays with its owner."""

    def __init__(self, engine: object) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def shutdown(self) -> None:
        pass


@engine_fixture(scope="module")
def keyed(live: LiveServer, workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second app on the session server's engine and collections, with API keys configured."""
    from kotae.rag.pipeline import Pipeline
    from kotae.server.app import create_app

    shared = live.app.state.kotae.ready().pipeline
    settings = server_settings(
        workspace,
        api_keys=SecretStr(f"{ALL_KEY}:*,{MANUALS_KEY}:manuals"),
        adapter_dir=tmp_path_factory.mktemp("no-adapters"),
        index_watch_s=0,
    )

    def borrowed(settings: Settings) -> Pipeline:
        return Pipeline(shared.collections, BorrowedEngine(shared.engine), settings)  # type: ignore[arg-type]

    app = create_app(settings, pipeline_factory=borrowed)
    server, thread, url = run_in_thread(app)
    wait_ready(app, url)
    yield url
    server.should_exit = True
    thread.join(timeout=60)


def keyed_client(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=120)


def test_api_keys_keep_collections_apart(keyed: str) -> None:
    for key in (None, "key-nobody-has-01", ADMIN_TOKEN):
        with keyed_client(keyed, key) as client:
            refused = qa(client, "VPNの接続先は？", collection="manuals")
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    with keyed_client(keyed, MANUALS_KEY) as client:
        assert "vpn" in source_ids(qa(client, "VPNの接続先は？", collection="manuals", retrieval="bm25"))
        for other in (None, "default", "facilities", "no-such-collection"):
            refused = qa(client, "VPNの接続先は？", collection=other)
            assert refused.status_code == 403, refused.text
            assert "manuals" not in refused.text  # nothing about what else the key may read
        chat = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "VPNは？"}], "kotae": {"collection": "default"}},
        )
        assert chat.status_code == 403
    with keyed_client(keyed, ALL_KEY) as client:
        assert source_ids(qa(client, "VPNの接続先は？")).isdisjoint(MANUAL_IDS)
        assert qa(client, "VPNの接続先は？", collection="no-such-collection").status_code == 404
