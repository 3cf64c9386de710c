"""Who gets in: the admin token is compared in constant time, adapter files cannot lead out of the adapter
root, the server binds loopback and sends no CORS headers unless told to."""

import hmac
import shutil

import httpx
import pytest
from fastapi.testclient import TestClient
from server_fixtures import ADMIN_TOKEN, server_settings

from kotae.core.config import Settings
from kotae.server.app import create_app


def test_the_admin_token_is_compared_in_constant_time(live, monkeypatch):
    compared, compare_digest = [], hmac.compare_digest

    def recording_compare_digest(given, expected):
        compared.append((given, expected))
        return compare_digest(given, expected)

    monkeypatch.setattr(hmac, "compare_digest", recording_compare_digest)
    with live.client("wrong-token") as wrong, live.admin() as admin:
        assert wrong.get("/admin/adapters").status_code == 401
        assert admin.get("/admin/adapters").status_code == 200
    token = ADMIN_TOKEN.encode()
    assert (b"wrong-token", token) in compared and (token, token) in compared


def test_a_symlinked_file_leading_out_of_the_root_is_refused(live, client):
    """The folder is inside the root, but its weights are a link to an adapter outside it."""
    folder = live.adapter_root / "linked-weights"
    folder.mkdir()
    shutil.copy(live.outside / "evil" / "adapter_config.json", folder)
    (folder / "adapter_model.safetensors").symlink_to(live.outside / "evil" / "adapter_model.safetensors")
    try:
        with live.admin() as admin:
            response = admin.post("/admin/adapters", json={"name": "linked", "path": "linked-weights"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "adapter_path_outside_root"
        assert not any(private in response.text for private in live.private_paths)
        assert "linked" not in {m["id"] for m in client.get("/v1/models").json()["data"]}
    finally:
        shutil.rmtree(folder)


def test_a_symlink_loop_is_a_4xx(live):
    loop = live.adapter_root / "loop"
    loop.symlink_to(loop)
    try:
        with live.admin() as admin:
            response = admin.post("/admin/adapters", json={"name": "loop", "path": "loop"})
        assert response.status_code == 422 and response.json()["error"]["code"] == "adapter_path_invalid"
    finally:
        loop.unlink()


def test_serve_binds_loopback_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("KOTAE_HOST", raising=False)
    assert Settings(_env_file=None).host == "127.0.0.1"
    monkeypatch.setenv("KOTAE_HOST", "0.0.0.0")
    assert Settings(_env_file=None).host == "0.0.0.0"


def preflight(http: httpx.Client | TestClient, origin: str) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    return http.options("/v1/qa", headers=headers)


def test_cors_is_off_by_default(client):
    assert "access-control-allow-origin" not in preflight(client, "https://evil.example").headers
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("origin", "allowed"), [("https://app.example", True), ("https://evil.example", False)]
)
def test_cors_allows_only_the_listed_origins(tmp_path, origin, allowed):
    settings = server_settings(tmp_path, cors_origins=["https://app.example"])
    # No `with`: the app's start-up (models, engine) is not run; CORS answers before any route.
    http = TestClient(create_app(settings))
    answer = preflight(http, origin)
    assert (answer.headers.get("access-control-allow-origin") == origin) is allowed
    simple = http.get("/healthz", headers={"Origin": origin})
    assert (simple.headers.get("access-control-allow-origin") == origin) is allowed
