"""A client that hangs up before its non-streamed answer is ready cancels the generation: vLLM stops
running the request instead of finishing an answer nobody reads."""

import asyncio
import contextlib
import re
import time

import httpx
import pytest
from server_fixtures import BASE_MODEL, LONG_ANSWER_TOKENS, ServeProcess, SharedServe

REACH_VLLM_S = 120
"""How long the request may take to get through retrieval to vLLM on a busy machine."""
SETTLE_S = 60
"""How long vLLM and kotae's metrics may take to show the abort on a busy machine."""
LONG_REQUESTS = {
    "/v1/qa": {"question": "富士山は？", "max_tokens": LONG_ANSWER_TOKENS, "temperature": 1.0, "seed": 0},
    "/v1/chat/completions": {
        "model": BASE_MODEL,
        "messages": [{"role": "user", "content": "富士山は？"}],
        "max_tokens": LONG_ANSWER_TOKENS,
        "temperature": 1.0,
        "seed": 0,
    },
}


@pytest.fixture(scope="module")
def server(serve: SharedServe) -> ServeProcess:
    return serve.get()


def metric_samples(url: str, series: str) -> list[float]:
    """The values of the /metrics samples whose name and labels match the regex `series`."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return [float(value) for value in re.findall(rf"^{series} (\S+)$", text, re.MULTILINE)]


def vllm_requests(url: str) -> float:
    """Requests vLLM is running or has queued, from its own metrics."""
    found = metric_samples(url, r"vllm:num_requests_(?:running|waiting)\{[^}]*\}")
    assert found, "vLLM's request gauges are missing from /metrics"
    return sum(found)


def generated_tokens(url: str) -> float:
    """Tokens vLLM has generated since the server started."""
    found = metric_samples(url, r"vllm:generation_tokens_total\{[^}]*\}")
    assert found, "vLLM's generation token counter is missing from /metrics"
    return sum(found)


def cancelled_requests(url: str) -> float:
    """kotae's count of requests whose client went away, over all adapters."""
    return sum(metric_samples(url, r'kotae_adapter_requests_total\{[^}]*outcome="cancelled"[^}]*\}'))


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


async def ask_then_hang_up(url: str, path: str) -> None:
    """Sends the request and closes its connection as soon as vLLM runs it, however long that takes."""
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=None)) as http:
        answer = asyncio.create_task(http.post(path, json=LONG_REQUESTS[path]))
        deadline = time.monotonic() + REACH_VLLM_S
        while await asyncio.to_thread(vllm_requests, url) == 0:
            assert not answer.done(), f"the request ended before vLLM ran it: {answer.result()}"
            assert time.monotonic() < deadline, "the request never reached vLLM"
            await asyncio.sleep(0.2)
        assert not answer.done(), (
            "the answer came before the client hung up: the request is too short to test"
        )
        # Cancelling the request closes its connection, which is what a client that gives up does.
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer


@pytest.mark.parametrize("path", LONG_REQUESTS)
def test_hanging_up_aborts_the_generation(server: ServeProcess, path: str) -> None:
    assert wait_for(lambda: vllm_requests(server.url) == 0, 60), "an earlier request is still running"
    cancelled_before = cancelled_requests(server.url)
    generated_before = generated_tokens(server.url)
    asyncio.run(ask_then_hang_up(server.url, path))
    hung_up = time.monotonic()
    assert wait_for(lambda: vllm_requests(server.url) == 0, SETTLE_S), (
        f"vLLM still runs the abandoned request {time.monotonic() - hung_up:.0f} s after the client left"
    )
    # Stopped, not finished: however slow the machine, the abandoned answer never got all its tokens.
    generated = generated_tokens(server.url) - generated_before
    assert generated < LONG_ANSWER_TOKENS, f"vLLM finished the abandoned answer ({generated:.0f} tokens)"
    assert wait_for(lambda: cancelled_requests(server.url) == cancelled_before + 1, SETTLE_S), (
        "not counted as cancelled"
    )
