"""Abstention on the embedded default: the demo corpus searched with the real multilingual-e5-small and the
default gate (`KOTAE_ABSTAIN_MIN_COSINE`), answered by the session server's engine, which a second app
borrows (as `keyed` does)."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_marker import engine_fixture
from server_fixtures import BorrowedEngine, LiveServer, run_in_thread, server_settings, wait_ready

from kotae.core.config import Settings
from kotae.rag.abstention import NO_ANSWER

NOT_IN_THE_DEMO = "東京タワーの高さは？"
IN_THE_DEMO = "日本で最も高い山は何ですか？"


# Session-scoped, as `keyed` is: stopped before the session's other tests, this app left the borrowed
# engine stopped for them.
@engine_fixture(scope="session")
def embedded_default(
    live: LiveServer, workspace: Path, e5_small: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    from kotae.demo import corpus_path
    from kotae.indexer.build import build_index
    from kotae.indexer.embedder import Embedder
    from kotae.indexer.index import Index
    from kotae.rag.collections import Collections
    from kotae.rag.pipeline import Pipeline
    from kotae.rag.retriever import Retriever
    from kotae.server.app import create_app

    embedder = Embedder(e5_small)
    root = tmp_path_factory.mktemp("embedded-default")
    build_index([corpus_path()], root / "index", embedder)
    settings = server_settings(
        workspace,
        index=root / "index",
        embedder=str(e5_small),
        adapter_dir=tmp_path_factory.mktemp("no-adapters"),
        index_watch_s=0,
        abstain_min_cosine=Settings.model_fields["abstain_min_cosine"].default,
    )
    shared = live.app.state.kotae.ready().pipeline

    def demo_pipeline(settings: Settings) -> Pipeline:
        retriever = Retriever(Index.open(root / "index"), embedder, settings)
        return Pipeline(Collections.of(retriever), BorrowedEngine(shared.engine), settings)  # type: ignore[arg-type]

    app = create_app(settings, pipeline_factory=demo_pipeline)
    server, thread, url = run_in_thread(app)
    wait_ready(app, url)
    with httpx.Client(base_url=url, timeout=120) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=60)


def test_the_default_gate_is_on() -> None:
    assert Settings.model_fields["abstain_min_cosine"].default > 0


def test_a_question_the_demo_corpus_cannot_answer_is_not_answerable(embedded_default: httpx.Client) -> None:
    reply = embedded_default.post("/v1/qa", json={"question": NOT_IN_THE_DEMO})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["answerable"], body["answer"]) == (False, NO_ANSWER)
    assert body["usage"]["completion_tokens"] == 0, "the gate answers without asking the model"
    assert body["sources"], "the closest passages are still listed"


def test_a_question_the_demo_corpus_answers_is_answerable(embedded_default: httpx.Client) -> None:
    body = embedded_default.post("/v1/qa", json={"question": IN_THE_DEMO}).json()
    assert body["answerable"] is True and body["answer"] != NO_ANSWER
    assert body["sources"][0]["id"] == "demo-001"
    assert body["usage"]["completion_tokens"] > 0


def test_chat_answers_the_same_text(embedded_default: httpx.Client) -> None:
    request = {"model": "tiny-gemma", "messages": [{"role": "user", "content": NOT_IN_THE_DEMO}]}
    whole = embedded_default.post("/v1/chat/completions", json=request).json()
    assert whole["choices"][0]["message"]["content"] == NO_ANSWER
    with embedded_default.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as events:
        lines = [line.removeprefix("data: ") for line in events.iter_lines() if line.startswith("data: {")]
    chunks = [json.loads(line) for line in lines]
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == NO_ANSWER
    answered = {**request, "messages": [{"role": "user", "content": IN_THE_DEMO}]}
    reply = embedded_default.post("/v1/chat/completions", json=answered).json()
    assert reply["choices"][0]["message"]["content"] != NO_ANSWER
