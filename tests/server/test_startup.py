"""Start-up: probes answer while the pipeline is built, every other route says 503 with a reason, and a
missing or corrupt index stops `kotae serve` with a message naming the file."""

import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest
from server_fixtures import SERVE_COMMAND, run_in_thread, serve_environment, server_settings

from kotae.core.errors import KotaeError
from kotae.server.app import create_app


def test_routes_answer_503_until_ready_and_a_failed_start_is_reported(tmp_path):
    release = threading.Event()
    fatal = threading.Event()

    def slow_then_broken_pipeline(settings):
        release.wait(timeout=60)
        raise KotaeError(f"{tmp_path}/index/manifest.json: not found")

    settings = server_settings(tmp_path, admin_token=None)
    app = create_app(settings, pipeline_factory=slow_then_broken_pipeline, on_fatal=fatal.set)
    server, thread, url = run_in_thread(app)
    try:
        with httpx.Client(base_url=url) as http:
            assert http.get("/healthz").json() == {"status": "alive"}
            assert http.get("/metrics").status_code == 200
            readiness = http.get("/readyz")
            assert readiness.status_code == 503 and readiness.json()["status"] == "starting"
            for method, path, body in (
                ("POST", "/v1/qa", {"question": "富士山は？"}),
                ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                ("GET", "/v1/models", None),
            ):
                response = http.request(method, path, json=body)
                assert response.status_code == 503, path
                assert response.json()["error"]["code"] == "not_ready"
            disabled = http.get("/admin/adapters", headers={"Authorization": "Bearer anything"})
            assert disabled.status_code == 403 and disabled.json()["error"]["code"] == "admin_disabled"

            release.set()
            assert fatal.wait(timeout=30), "on_fatal was not called"
            failed = http.get("/readyz")
            assert failed.status_code == 503 and failed.json()["status"] == "failed"
            assert str(tmp_path) not in failed.text, "the reason stays in the log"
            assert http.post("/v1/qa", json={"question": "富士山は？"}).status_code == 503
        assert app.state.kotae.failure.endswith("manifest.json: not found")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_server_runs_at_its_switch_interval_and_puts_pythons_back_when_it_stops(tmp_path):
    before = sys.getswitchinterval()
    seen: list[float] = []

    def pipeline_seeing_the_interval(settings):
        seen.append(sys.getswitchinterval())
        raise KotaeError("no index here")

    settings = server_settings(tmp_path, serve_switch_interval_ms=0.5)
    server, thread, _ = run_in_thread(create_app(settings, pipeline_factory=pipeline_seeing_the_interval))
    try:
        while not seen:
            time.sleep(0.01)
        assert seen == [0.0005] and sys.getswitchinterval() == 0.0005
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert sys.getswitchinterval() == before


def serve(workspace, index) -> subprocess.CompletedProcess:
    return subprocess.run(
        SERVE_COMMAND,
        env=serve_environment(workspace, index),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.engine  # a `kotae serve` process
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_index_stops_serve_naming_the_file(workspace, tmp_path, damage):
    for module in ("kotae.cli", "kotae.runtime"):
        pytest.importorskip(module, reason="`kotae serve` needs the whole CLI and kotae.runtime")
    index = tmp_path / "index"
    if damage == "corrupt":
        shutil.copytree(workspace / "index", index)
        (index / "manifest.json").write_text("{not json")
    result = serve(workspace, index)
    assert result.returncode == 2, result.stderr[-2000:]
    named = str(index / "manifest.json") if damage == "corrupt" else str(index)
    assert named in result.stderr
    assert "Traceback" not in result.stderr
