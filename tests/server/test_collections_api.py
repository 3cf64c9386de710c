"""Collections over HTTP: `/v1/qa` and chat read the collection they name, `/v1/collections` lists and
reloads them, a collection built while kotae serves is picked up, and API keys keep collections apart."""

import json
import threading
from pathlib import Path

import httpx
import pytest
from jsonl_files import write_jsonl
from server_fixtures import ADMIN_TOKEN, ALL_KEY, MANUALS, MANUALS_KEY, LiveServer

MANUAL_IDS = {row["id"] for row in MANUALS}


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
    from kotae.indexer.embedder import Embedder

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


@pytest.fixture(scope="module")
def notes(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collection of its own for the document writes, so that the other tests' collections stay as built."""
    from kotae.indexer.build import build_index
    from kotae.indexer.embedder import Embedder

    rows = [{"id": "lunch", "title": "社員食堂", "text": "社員食堂は11時半から14時まで開いている。"}]
    build_index(
        [write_jsonl(tmp_path_factory.mktemp("notes") / "notes.jsonl", rows)],
        live.settings.collections_root / "notes",
        Embedder(Path(live.settings.embedder)),
        workers=0,
    )
    with live.admin() as admin:
        assert admin.post("/v1/collections/notes/reload").status_code == 200
    return "notes"


def test_documents_are_upserted_read_and_deleted(live: LiveServer, notes: str) -> None:
    rows = [
        {
            "id": "parking",
            "title": "駐車場",
            "text": "来客用の駐車場は地下二階にある。",
            "metadata": {"owner": "総務"},
        },
        {"id": "lunch", "title": "社員食堂", "text": "社員食堂は改装のため3月まで閉まっている。"},
    ]
    jsonl = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    with live.admin() as admin, live.client() as client:
        one = admin.post(
            f"/v1/collections/{notes}/documents",
            json={"id": "badge", "title": "入館証", "text": "入館証は受付で貸し出す。"},
        )
        assert one.status_code == 200 and one.json() == {"collection": notes, "documents": 1, "passages": 1}
        many = admin.post(
            f"/v1/collections/{notes}/documents",
            content=jsonl,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert many.status_code == 200 and many.json()["documents"] == 2
        # Searchable as soon as the write answered.
        assert "parking" in source_ids(
            qa(client, "来客用の駐車場はどこ？", collection=notes, retrieval="bm25")
        )
        lunch = qa(
            client, "社員食堂はいつ開いている？", collection=notes, retrieval="bm25", include_text=True
        )
        assert [source["text"] for source in lunch.json()["sources"]].count(
            "社員食堂は11時半から14時まで開いている。"
        ) == 0
        document = admin.get(f"/v1/collections/{notes}/documents/parking").json()
        assert document["source"] == "api" and document["metadata"] == {"owner": "総務"}
        assert document["passages"][0]["text"] == "来客用の駐車場は地下二階にある。"
        assert admin.delete(f"/v1/collections/{notes}/documents/parking").json() == {
            "id": "parking",
            "deleted": True,
        }
        assert admin.get(f"/v1/collections/{notes}/documents/parking").status_code == 404
        assert admin.delete(f"/v1/collections/{notes}/documents/parking").status_code == 404
        assert "parking" not in source_ids(
            qa(client, "来客用の駐車場はどこ？", collection=notes, retrieval="bm25")
        )
        listed = {card["name"]: card for card in admin.get("/v1/collections").json()["data"]}
        assert (listed[notes]["documents"], listed[notes]["passages"]) == (2, 2)  # lunch (rewritten), badge


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            '{"id": "a", "title": "t", "text": "x"}\n{"id": "b", "title": "t"}',
            422,
            "line 2: text: Field required",
        ),
        ('{"id": "a", "title": "t", "text": "x"}\nnot json', 422, "line 2: not a JSON object"),
        (
            '{"id": "a", "title": "t", "text": "x"}\n{"id": "a", "title": "t", "text": "y"}',
            422,
            "already came on line 1",
        ),
        ('{"id": "", "title": "t", "text": "x"}', 422, "body: id: String should have at least 1 character"),
        (
            '{"id": "a", "title": "t", "text": "x", "extra": 1}',
            422,
            "body: extra: Extra inputs are not permitted",
        ),
        ("\n\n", 422, "no documents"),
        ("x" * 20_000, 413, "larger than"),
    ],
)
def test_bad_document_bodies_are_refused_with_the_line_and_the_reason(
    live: LiveServer, notes: str, body: str, status: int, message: str
) -> None:
    with live.admin() as admin:
        response = admin.post(f"/v1/collections/{notes}/documents", content=body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
        assert admin.get(f"/v1/collections/{notes}/documents/a").status_code == 404, "nothing was written"


def test_document_routes_need_the_admin_token_and_a_served_collection(live: LiveServer, notes: str) -> None:
    body = {"id": "x", "title": "t", "text": "本文"}
    with live.client() as anonymous:
        assert anonymous.post(f"/v1/collections/{notes}/documents", json=body).status_code == 401
        assert anonymous.get(f"/v1/collections/{notes}/documents/lunch").status_code == 401
    with live.client("wrong-token") as wrong:
        assert wrong.delete(f"/v1/collections/{notes}/documents/lunch").status_code == 401
    with live.admin() as admin:
        missing = admin.post("/v1/collections/no-such/documents", json=body)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "collection_not_found"
        assert admin.get(f"/v1/collections/{notes}/documents/lunch").json()["source"] in ("index", "api")
