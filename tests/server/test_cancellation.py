"""A client that hangs up before its non-streamed answer is ready cancels the generation: vLLM stops
running the request within seconds instead of finishing an answer nobody reads."""

import re
import threading
import time

import httpx
import pytest
from server_fixtures import BASE_MODEL, ServeProcess, start_serve

MAX_TOKENS = 3500
"""Sampled tokens of the tiny model: far longer than the few seconds the test waits."""
LONG_REQUESTS = {
    "/v1/qa": {"question": "富士山は？", "max_tokens": MAX_TOKENS, "temperature": 1.0},
    "/v1/chat/completions": {
        "model": BASE_MODEL,
        "messages": [{"role": "user", "content": "富士山は？"}],
        "max_tokens": MAX_TOKENS,
        "temperature": 1.0,
        "seed": 0,
    },
}


@pytest.fixture(scope="module")
def server(workspace, tmp_path_factory) -> ServeProcess:
    log = tmp_path_factory.mktemp("cancel") / "serve.log"
    process = start_serve(
        workspace,
        workspace / "index",
        log,
        KOTAE_MAX_MODEL_LEN="4096",
        KOTAE_MAX_TOKENS_CAP=str(MAX_TOKENS),
        KOTAE_CONTEXT_TOKEN_BUDGET="256",
    )
    yield process
    process.stop()


def vllm_requests(url: str) -> float:
    """Requests vLLM is running or has queued, from its own metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(r"^vllm:num_requests_(?:running|waiting)\{[^}]*\} (\S+)$", text, re.MULTILINE)
    assert found, "vLLM's request gauges are missing from /metrics"
    return sum(float(value) for value in found)


def cancelled_requests(url: str) -> float:
    """kotae's count of requests whose client went away, over all adapters."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(
        r'^kotae_adapter_requests_total\{[^}]*outcome="cancelled"[^}]*\} (\S+)$', text, re.MULTILINE
    )
    return sum(float(value) for value in found)


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("path", LONG_REQUESTS)
def test_hanging_up_aborts_the_generation(server: ServeProcess, path: str) -> None:
    assert wait_for(lambda: vllm_requests(server.url) == 0, 60), "an earlier request is still running"
    cancelled_before = cancelled_requests(server.url)
    outcome: list[BaseException] = []

    def ask_then_give_up() -> None:
        # The client stops waiting after 3 s; leaving the `with` closes its connection.
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, read=3)) as http:
            try:
                http.post(path, json=LONG_REQUESTS[path])
            except httpx.ReadTimeout as error:
                outcome.append(error)

    client = threading.Thread(target=ask_then_give_up)
    client.start()
    assert wait_for(lambda: vllm_requests(server.url) > 0, 3), "the request never reached vLLM"
    client.join(timeout=60)
    assert outcome, "the answer came before the client gave up: the request is too short to test"
    hung_up = time.monotonic()
    assert wait_for(lambda: vllm_requests(server.url) == 0, 5), (
        f"vLLM still runs the abandoned request {time.monotonic() - hung_up:.0f} s after the client left"
    )
    assert wait_for(lambda: cancelled_requests(server.url) == cancelled_before + 1, 5), (
        "not counted as cancelled"
    )
