"""What the server tests build: tiny models, LoRA adapters (good and bad), settings, a server in a thread,
`kotae serve` in a process of its own."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from kotae.core.config import Settings
from kotae.models.testing import build_random_lora

ADMIN_TOKEN = "test-admin-token-0123456789"
MANUALS = [
    {"id": "vpn", "title": "VPN接続手順", "text": "社外からはVPNで接続する。接続先はvpn.example.jpである。"},
    {"id": "leave", "title": "休暇規程", "text": "有給休暇は入社半年後に10日付与される。"},
    {"id": "wifi", "title": "無線LAN", "text": "会議室の無線LANの名前はkaigi-5gである。"},
]
"""The documents of the `manuals` collection the session's server serves beside the demo index."""
ALL_KEY, MANUALS_KEY = "key-for-everything-01", "key-for-manuals-0001"
"""The API keys of the `keyed` server: every collection, and `manuals` only."""
READY_TIMEOUT_S = 900
BASE_MODEL = "tiny-gemma"


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    settings: Settings
    adapter_root: Path
    outside: Path
    """A folder beside the adapter root (for escapes)."""
    private_paths: tuple[str, ...]
    """Server-side paths that must never appear in a response."""

    def client(self, token: str | None = None, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def admin(self) -> httpx.Client:
        return self.client(ADMIN_TOKEN)


def edit_config(folder: Path, **changes: object) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def write_kotae_metadata(folder: Path, base_hash: str, **changes: object) -> None:
    from kotae.adapters.config import LoraSpec
    from kotae.adapters.metadata import AdapterMetadata, DataRef, ModelRef, write_metadata
    from kotae.rag.prompt import PROMPT_VERSION

    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "kind": "sft",
        "base_model": ModelRef(name=BASE_MODEL, path="/trained/on/" + BASE_MODEL, hash=base_hash),
        "prompt_version": PROMPT_VERSION,
        "data": DataRef(path="qa.jsonl", sha256="0" * 64, rows=1),
        "lora": LoraSpec(r=8, alpha=16, dropout=0.0, target_modules=("q_proj",)),
        "hyperparameters": {},
        "eval_metrics": {"loss": 1.5},
        "servable": True,
        "kotae_version": "test",
        "started_at": now,
        "finished_at": now,
    }
    fields.update(changes)
    write_metadata(folder, AdapterMetadata.model_validate(fields))


def build_adapters(base: Path, root: Path, outside: Path) -> None:
    """Adapters loaded at start (`default`, `b`), one kept for run-time loads (`pool/c`), and folders
    that every validation step must refuse."""
    from kotae.adapters.metadata import model_hash

    build_random_lora(base, root / "default", seed=1)
    build_random_lora(base, root / "b", seed=2)
    build_random_lora(base, root / "pool" / "c", seed=3)
    for name in (
        "broken-json",
        "big-rank",
        "other-base",
        "no-weights",
        "not-lora",
        "stale-prompt",
        "kotae-ok",
    ):
        shutil.copytree(root / "b", root / "bad" / name)
    bad = root / "bad"
    (bad / "broken-json" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8,')
    edit_config(bad / "big-rank", r=64)
    edit_config(bad / "other-base", base_model_name_or_path="google/gemma-3-1b-it")
    (bad / "no-weights" / "adapter_model.safetensors").unlink()
    edit_config(bad / "not-lora", peft_type="PREFIX_TUNING")
    write_kotae_metadata(bad / "stale-prompt", model_hash(base), prompt_version="old-template")
    write_kotae_metadata(bad / "kotae-ok", model_hash(base))
    shutil.copytree(root / "b", bad / "other-build")
    write_kotae_metadata(bad / "other-build", "f" * 64)
    build_random_lora(base, outside / "evil", seed=4)
    (root / "escape").symlink_to(outside / "evil", target_is_directory=True)


def tiny_pipeline(settings: Settings):
    """The pipeline `kotae.runtime.build_pipeline` assembles (vLLM in process, or `settings.replicas`),
    from folders given by path."""
    from kotae.indexer.embedder import Embedder
    from kotae.indexer.index import Index
    from kotae.rag.collections import Collections
    from kotae.rag.pipeline import Pipeline
    from kotae.rag.retriever import Retriever
    from kotae.runtime import start_engine

    retriever = Retriever(Index.open(settings.index), Embedder(Path(settings.embedder)), settings)
    collections = Collections.open(retriever, settings.collections_root)
    engine = start_engine(Path(settings.generator), settings)
    return Pipeline(collections, engine, settings)


class BorrowedEngine:
    """The session server's engine, lent to a second app: everything passes through but `shutdown`, which
    stays with its owner."""

    def __init__(self, engine: object) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def shutdown(self) -> None:
        pass


def free_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def server_settings(root: Path, **changes: object) -> Settings:
    fields: dict[str, object] = {
        "home": root / "home",
        "generator": str(root / BASE_MODEL),
        "embedder": str(root / "tiny-e5"),
        "index": root / "index",
        "adapter_dir": root / "adapters",
        "default_adapter": "default",
        "admin_token": SecretStr(ADMIN_TOKEN),
        "max_model_len": 1024,
        "max_loras": 4,
        "max_lora_rank": 16,
        "max_tokens": 8,
        "max_tokens_cap": 64,
        "max_question_chars": 200,
        "max_body_bytes": 16_384,
        "context_token_budget": 512,
        # The tiny embedder's cosines mean nothing: the abstention gate is off (test_abstention_api.py turns
        # it on with the real embedder).
        "abstain_min_cosine": 0,
    }
    fields.update(changes)
    return Settings.model_validate(fields)


def run_in_thread(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = free_port()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def wait_ready(app: FastAPI, url: str) -> None:
    """Until the app in `run_in_thread` answers /readyz with 200; fails at once if start-up failed."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    # While the engine starts in the server's thread, a loaded machine can keep /readyz waiting for
    # longer than httpx's default 5 s, or starve the server's loop until it drops a kept-alive
    # connection: both mean "ask again".
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            state = app.state.kotae
            assert state.failure is None, state.failure
            assert time.monotonic() < deadline, "server not ready in time"
            time.sleep(0.5)


@contextlib.contextmanager
def app_serving(app: FastAPI) -> Iterator[str]:
    """The app on a free loopback port, once ready: its URL. The server stops on leaving."""
    server, thread, url = run_in_thread(app)
    try:
        wait_ready(app, url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


LONG_STREAM = {
    "model": BASE_MODEL,
    "messages": [{"role": "user", "content": "富士山は？"}],
    "max_tokens": 512,
    "temperature": 1.0,
    "seed": 0,
    "stream": True,
    "stream_options": {"include_usage": True},
}
"""A chat stream that keeps the tiny model busy for seconds: sampled (no loop guard stop), 512 tokens."""

LONG_ANSWER_TOKENS = 3500
"""The sampled tokens `serve`'s process allows an answer: the tiny model's answer runs for far longer than
cancelling it or shutting the server down takes."""
SHUTDOWN_GRACE_S = 300
"""How long `serve`'s process lets a request in flight finish after SIGTERM: longer than `LONG_STREAM`'s
answer takes on a loaded machine; the SIGTERM test waits as long for it."""
SERVE_COMMAND = (sys.executable, "-c", "from kotae.cli import main; main()", "serve")
SERVING_AT = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


def serve_environment(workspace: Path, index: Path, **variables: str) -> dict[str, str]:
    """`kotae serve` on the workspace's tiny models, configured the way users do it: KOTAE_* variables."""
    return {
        **os.environ,
        "KOTAE_HOME": str(workspace / "home"),
        "KOTAE_GENERATOR": str(workspace / BASE_MODEL),
        "KOTAE_EMBEDDER": str(workspace / "tiny-e5"),
        "KOTAE_INDEX": str(index),
        "KOTAE_ADAPTER_DIR": str(workspace / "adapters"),
        "KOTAE_PORT": "0",
        "KOTAE_MAX_MODEL_LEN": "1024",
        "KOTAE_ABSTAIN_MIN_COSINE": "0",
        **variables,
    }


@dataclass
class ServeProcess:
    """A ready `kotae serve` process; its engine core is a child in the same process group."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group (engine core included) if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


def ready(url: str) -> bool:
    """/readyz says 200; a busy server starting up may be slow to answer at all."""
    try:
        return httpx.get(f"{url}/readyz", timeout=30).status_code == 200
    except httpx.TimeoutException:
        return False


def start_serve(workspace: Path, index: Path, log: Path, **variables: str) -> ServeProcess:
    """`kotae serve` on a free port (KOTAE_PORT=0; the port is read from uvicorn's log), once ready."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            SERVE_COMMAND,
            env=serve_environment(workspace, index, **variables),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServeProcess(process, "", log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if not server.url and (found := SERVING_AT.search(server.output())):
            server.url = found.group(1)
        if server.url and ready(server.url):
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"kotae serve did not get ready:\n{server.output()[-3000:]}")
        time.sleep(0.5)


class SharedServe:
    """One `kotae serve` process shared by the tests that need a real one (a start costs a minute on 2
    cores), started on first use. A test that ends the process takes it, so that whatever the order of the
    tests, a later user gets a fresh one."""

    def __init__(self, start: Callable[[], ServeProcess]) -> None:
        self._start = start
        self._current: ServeProcess | None = None

    def get(self) -> ServeProcess:
        if self._current is None:
            self._current = self._start()
        return self._current

    def take(self) -> ServeProcess:
        """The process, now the caller's to stop: no other test gets it."""
        taken = self.get()
        self._current = None
        return taken

    def stop(self) -> None:
        if self._current is not None:
            self._current.stop()


@dataclass
class ReplicaProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def send_signal(self, sent: signal.Signals) -> None:
        """To the API server and its engine-core process alike (they share a session)."""
        os.killpg(self.process.pid, sent)

    def served_adapters(self) -> set[str]:
        listing = httpx.get(f"{self.url}/v1/models", timeout=30).json()["data"]
        return {card["id"] for card in listing if card.get("parent") == BASE_MODEL}

    def completions_served(self) -> float:
        """`/v1/completions` calls answered, from the replica's own `/metrics` (vLLM's finished-request
        counter leaves out requests that kotae's loop guard cut short)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('http_requests_total{handler="/v1/completions"')
        )


def start_replica(model: Path, log: Path) -> ReplicaProcess:
    sock = free_port()
    port = sock.getsockname()[1]
    sock.close()
    env = os.environ | {
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
        "HF_HUB_OFFLINE": "1",
    }
    # Whole GiB only, and it would override --kv-cache-memory-bytes: 64 MiB holds ~250k tokens of the
    # tiny model, and two replicas already take ~3.5 GB each.
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", BASE_MODEL,
        "--host", "127.0.0.1", "--port", str(port),
        "--enable-lora", "--max-lora-rank", "16", "--max-loras", "4", "--max-model-len", "1024",
        "--kv-cache-memory-bytes", str(64 << 20),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ReplicaProcess(f"http://127.0.0.1:{port}", process, log)


def wait_healthy(replica: ReplicaProcess, deadline: float) -> None:
    while True:
        if replica.process.poll() is not None:
            pytest.fail(f"replica exited ({replica.process.returncode}):\n{replica.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"replica not up in time:\n{replica.log.read_text()[-3000:]}"
        time.sleep(1)
