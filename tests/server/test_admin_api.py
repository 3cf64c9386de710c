"""Adapter admin: authentication, validation before the engine, visibility, and no stale weights."""

import httpx
import pytest
from server_fixtures import ADMIN_TOKEN

QUESTION = {"question": "姫路城はどこにありますか？", "max_tokens": 16, "temperature": 0}


def answer(client, adapter: str) -> str:
    response = client.post("/v1/qa", json={**QUESTION, "adapter": adapter})
    assert response.status_code == 200, response.text
    return response.json()["answer"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"X-Admin-Token": ADMIN_TOKEN},
    ],
)
def test_admin_routes_need_the_token(live, headers):
    with httpx.Client(base_url=live.url, headers=headers) as http:
        for method, path, body in (
            ("GET", "/admin/adapters", None),
            ("POST", "/admin/adapters", {"name": "x", "path": "b"}),
            ("DELETE", "/admin/adapters/b", None),
        ):
            response = http.request(method, path, json=body)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "invalid_token"
        # The token is checked before the body is read: a malformed one tells a stranger nothing either.
        json_type = {"content-type": "application/json"}
        malformed = http.post("/admin/adapters", content=b"{not json", headers=json_type)
        assert malformed.status_code == 401, malformed.text
    with live.client() as http:
        assert "b" in {m["id"] for m in http.get("/v1/models").json()["data"]}, "nothing was unloaded"


def test_list_adapters_with_metadata(live):
    with live.admin() as admin:
        body = admin.get("/admin/adapters").json()
    names = {adapter["name"]: adapter for adapter in body["data"]}
    assert {"default", "b"} <= set(names)
    assert body["default_adapter"] == "default"
    assert names["b"]["rank"] == 8 and names["b"]["path"] == "b" and names["b"]["base_model"] == "tiny-gemma"
    assert not {"escape", "bad"} & set(names), "invalid folders under the root were not loaded at start"


def test_load_is_visible_when_the_call_returns_and_unload_removes_it(live, client):
    with live.admin() as admin:
        response = admin.post("/admin/adapters", json={"name": "fresh.1", "path": "pool/c"})
        assert response.status_code == 200, response.text
        assert response.json()["path"] == "pool/c"
        assert "fresh.1" in {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert client.post("/v1/qa", json={**QUESTION, "adapter": "fresh.1"}).status_code == 200
        assert admin.delete("/admin/adapters/fresh.1").json() == {"name": "fresh.1", "unloaded": True}
        assert "fresh.1" not in {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert client.post("/v1/qa", json={**QUESTION, "adapter": "fresh.1"}).status_code == 404
        assert admin.delete("/admin/adapters/fresh.1").status_code == 404


def test_reloading_a_name_never_serves_the_old_weights(live, client):
    """Greedy decoding: after reloading "x" with other weights, "x" answers exactly as those weights do."""
    from_b, from_c = answer(client, "b"), None
    with live.admin() as admin:
        admin.post("/admin/adapters", json={"name": "c-ref", "path": "pool/c"}).raise_for_status()
        from_c = answer(client, "c-ref")
        assert from_b != from_c, "the two adapters must differ for this test to mean anything"
        admin.post("/admin/adapters", json={"name": "x", "path": "b"}).raise_for_status()
        assert answer(client, "x") == from_b
        admin.post("/admin/adapters", json={"name": "x", "path": "pool/c"}).raise_for_status()
        assert answer(client, "x") == from_c
        admin.post("/admin/adapters", json={"name": "x", "path": "b"}).raise_for_status()
        assert answer(client, "x") == from_b
        for name in ("x", "c-ref"):
            admin.delete(f"/admin/adapters/{name}").raise_for_status()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("../outside/evil", 400, "adapter_path_outside_root"),
        ("escape", 400, "adapter_path_outside_root"),
        ("/etc", 400, "adapter_path_outside_root"),
        ("pool/../../outside/evil", 400, "adapter_path_outside_root"),
        ("missing", 404, "adapter_not_found"),
        ("pool", 422, "adapter_invalid"),
        ("bad/broken-json", 422, "adapter_invalid"),
        ("bad/not-lora", 422, "adapter_invalid"),
        ("bad/no-weights", 422, "adapter_invalid"),
        ("bad/big-rank", 422, "adapter_rank_too_large"),
        ("bad/other-base", 422, "adapter_base_mismatch"),
        ("bad/other-build", 422, "adapter_base_mismatch"),
        ("bad/stale-prompt", 422, "adapter_prompt_mismatch"),
    ],
)
def test_bad_adapters_are_refused_before_the_engine(live, client, path, status, code):
    with live.admin() as admin:
        response = admin.post("/admin/adapters", json={"name": "candidate", "path": path})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert not any(private in response.text for private in live.private_paths)
    assert "candidate" not in {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert client.post("/v1/qa", json=QUESTION).status_code == 200, "the server keeps serving"


def test_kotae_metadata_is_reported(live):
    with live.admin() as admin:
        info = admin.post("/admin/adapters", json={"name": "trained", "path": "bad/kotae-ok"}).json()
        assert info["kind"] == "sft" and info["eval_metrics"] == {"loss": 1.5}
        admin.delete("/admin/adapters/trained").raise_for_status()


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 65, "名前"])
def test_adapter_names_are_restricted(live, name):
    with live.admin() as admin:
        response = admin.post("/admin/adapters", json={"name": name, "path": "b"})
    assert response.status_code == 422
