"""SIGTERM to `kotae serve`: it stops accepting connections at once, lets the answer being streamed finish,
shuts the engine down and exits with status 0."""

import json
import signal
import threading
import time

import httpx
from server_fixtures import LONG_STREAM, SHUTDOWN_GRACE_S, SharedServe


def test_sigterm_finishes_the_request_in_flight_then_exits_0(serve: SharedServe) -> None:
    server = serve.take()
    streaming, refused, events, outcome = threading.Event(), threading.Event(), [], {}

    def stream_in_flight() -> None:
        with (
            httpx.Client(base_url=server.url, timeout=120) as http,
            http.stream("POST", "/v1/chat/completions", json=LONG_STREAM) as response,
        ):
            outcome["status"] = response.status_code
            for line in filter(None, response.iter_lines()):
                if not streaming.is_set():
                    streaming.set()
                    # Read on only once new connections are refused: however late a loaded machine acts on
                    # SIGTERM, the answer is still in flight when it does (the tiny model may end it early).
                    refused.wait(timeout=60)
                events.append(line)
        outcome["ended_at"] = time.monotonic()

    reader = threading.Thread(target=stream_in_flight)
    try:
        reader.start()
        assert streaming.wait(timeout=120)
        server.process.send_signal(signal.SIGTERM)
        signalled_at, refused_at = time.monotonic(), None
        while refused_at is None and reader.is_alive():
            try:
                httpx.get(f"{server.url}/healthz", timeout=2)
            # Refused, or accepted from the backlog just before the listening socket closed and then reset:
            # either way the new request is not served.
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                refused_at = time.monotonic()
            time.sleep(0.05)
        refused.set()
        reader.join(timeout=SHUTDOWN_GRACE_S)
        exit_status = server.process.wait(timeout=120)  # the engine's shutdown, once the answer is out
    finally:
        refused.set()
        server.stop()
    refused_after = refused_at and round(refused_at - signalled_at, 2)
    said = f"refused {refused_after} s after SIGTERM; the server said:\n{server.output()[-3000:]}"
    assert outcome["status"] == 200 and events[-1] == "data: [DONE]", said
    assert not any("stream_failed" in event for event in events)
    assert refused_at is not None, "new connections were still accepted while the stream ran"
    assert refused_at < outcome["ended_at"]
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["usage"]["completion_tokens"] > 0
    assert exit_status == 0, server.output()[-3000:]
