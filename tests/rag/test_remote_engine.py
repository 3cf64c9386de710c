"""`RemoteEngine`'s health probes, against replicas played by an `httpx.MockTransport`: a replica leaves
rotation after `PROBE_FAILURES` failed probes in a row, and a replica too busy to answer `/health` in time
while it streams an answer is not failing. (tests/server/test_replicas.py runs the whole engine against real
vLLM servers.)"""

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from kotae.core.config import Settings
from kotae.rag.engine_protocol import Sampling
from kotae.rag.remote_engine import PROBE_FAILURES, RemoteEngine, Replica

BUSY, FROZEN = "http://127.0.0.1:9001", "http://127.0.0.1:9002"
CHUNK = {"choices": [{"text": "姫路市", "token_ids": [5], "prompt_token_ids": [1], "finish_reason": "stop"}]}
STREAM = f"data: {json.dumps(CHUNK)}\n\ndata: [DONE]\n\n".encode()


def test_a_busy_replica_stays_and_a_frozen_one_leaves_after_probes_in_a_row(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed, answered = asyncio.Event(), asyncio.Event()

    async def replicas(request: httpx.Request) -> httpx.Response:
        replica = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        if request.url.path == "/v1/completions" and replica == BUSY:
            return httpx.Response(200, content=STREAM)
        if request.url.path == "/health" and replica == BUSY:
            probed.set()
            await answered.wait()  # its /health is stuck behind the answer it is streaming
        raise httpx.ReadTimeout("no answer in time", request=request)

    class Mocked(httpx.AsyncClient):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(transport=httpx.MockTransport(replicas), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "AsyncClient", Mocked)
    # The frozen replica took the last turn: answers go to the busy one.
    pair = [Replica(BUSY, healthy=True), Replica(FROZEN, healthy=True, last_turn=1)]
    engine = RemoteEngine(pair, "tiny", tiny_llama, Settings(replica_health_interval_s=3600))

    async def probes_while_answering() -> list[list[bool]]:
        healthy = []
        for _ in range(PROBE_FAILURES):
            probed.clear()
            answered.clear()
            probe = asyncio.create_task(engine.check_health())
            await probed.wait()
            assert (await engine.complete("質問", Sampling(max_tokens=4))).text == "姫路市"
            answered.set()
            await probe
            healthy.append([replica.healthy for replica in pair])
        return healthy

    try:
        rounds = asyncio.run(probes_while_answering())
    finally:
        engine.shutdown()
    assert rounds[0] == [True, True], "one failed probe is not enough"
    assert rounds[-1] == [True, False], "the busy replica stays; the silent one is out"
