"""Faults the service survives, on real processes: `kotae index build` (over an existing index) and `kotae
index add`, each killed with SIGKILL while writing, leave the previous index whole, and `kotae serve` serves
it; then the engine dies (its EngineCore process is killed) and /readyz turns 503 while requests fail fast
with 503 instead of hanging.

A missing or corrupt index at start-up is test_startup.py's; an adapter with a broken config is
test_admin_api.py's."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from engine_marker import engine_fixture
from server_fixtures import LONG_STREAM, ServeProcess, serve_environment, start_serve

from kotae.indexer.build import STAGING_SUFFIX
from kotae.indexer.index import Index
from kotae.indexer.layout import MANIFEST_FILE, STORE_FILE

INDEX_COMMAND = (sys.executable, "-c", "from kotae.cli import main; main()", "index")
SYNTHETIC_PASSAGES = 3000
"""Enough that a build or an update runs for seconds after it has started writing."""
FAIL_FAST_S = 5.0
QUESTION = {"question": "日本で最も高い山は何ですか？", "retrieval": "bm25", "top_k": 3, "max_tokens": 4}


def write_synthetic_corpus(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for number in range(SYNTHETIC_PASSAGES):
            town = f"架空の町{number % 97}"
            text = f"合成文書{number}は試験のために書かれた。第{number}段落は{town}の歴史を述べる。"
            out.write(json.dumps({"id": f"synth-{number}", "title": f"合成{number}", "text": text}) + "\n")
    return path


def staged_stores(index: Path) -> set[Path]:
    """Passage stores being written beside `index`: an update's copy, or a build's (resumable) staging."""
    patterns = (f".{index.name}.new-*/{STORE_FILE}", f".{index.name}{STAGING_SUFFIX}/{STORE_FILE}")
    return {store for pattern in patterns for store in index.parent.glob(pattern)}


def is_writing(store: Path, served_size: int) -> bool:
    """An update's copy is writing once it is as big as the served store; a build's store is written from
    its creation on (shard by shard)."""
    return store.parent.name.endswith(STAGING_SUFFIX) or store.stat().st_size >= served_size


def kill_while_writing(arguments: list[str], index: Path, environment: dict[str, str]) -> None:
    """Runs `kotae index ARGUMENTS` and SIGKILLs it once it is writing its staged passage store, before it
    has finished."""
    served_size = (index / STORE_FILE).stat().st_size
    earlier = staged_stores(index)
    process = subprocess.Popen([*INDEX_COMMAND, *arguments], env=environment, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not any(is_writing(store, served_size) for store in staged_stores(index) - earlier):
            assert process.poll() is None, (
                f"it ended before it could be killed: {process.stderr.read()[-2000:]}"
            )
            assert time.monotonic() < deadline, "it never started writing"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def battered_index(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test index, over which a build and an update were killed mid-write."""
    root = tmp_path_factory.mktemp("faults")
    index = root / "index"
    shutil.copytree(workspace / "index", index)
    corpus = write_synthetic_corpus(root / "synthetic.jsonl")
    environment = serve_environment(workspace, index)
    embedder = ["--embedder", str(workspace / "tiny-e5")]
    kill_while_writing(["build", str(corpus), "--out", str(index), *embedder], index, environment)
    kill_while_writing(["add", str(corpus), "--index", str(index), *embedder], index, environment)
    return index


@engine_fixture(scope="module")
def serving(
    workspace: Path, battered_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("faults-serve") / "serve.log"
    # The engine in a process of its own (vLLM's default), so that it can die apart from the server.
    server = start_serve(workspace, battered_index, log, VLLM_ENABLE_V1_MULTIPROCESSING="1")
    yield server
    server.stop()


@pytest.mark.slow  # two `kotae index` processes, each killed while it writes
def test_killed_build_and_add_leave_the_previous_index(workspace, battered_index):
    original = workspace / "index"
    assert (battered_index / MANIFEST_FILE).read_bytes() == (original / MANIFEST_FILE).read_bytes()
    assert (battered_index / STORE_FILE).read_bytes() == (original / STORE_FILE).read_bytes()
    assert len(Index.open(battered_index)) == len(Index.open(original))
    assert len(staged_stores(battered_index)) == 2, (
        "the half-written copies sit beside it, never in its place"
    )


def test_the_previous_index_is_served(serving, workspace):
    with httpx.Client(base_url=serving.url, timeout=120) as http:
        response = http.post("/v1/qa", json=QUESTION)
    assert response.status_code == 200, response.text
    sources = [source["id"] for source in response.json()["sources"]]
    assert sources and not any(source.startswith("synth-") for source in sources)
    assert "demo-001" in sources


def engine_core(server: ServeProcess) -> psutil.Process:
    children = psutil.Process(server.process.pid).children(recursive=True)
    cores = [child for child in children if "EngineCore" in command_line(child)]
    assert len(cores) == 1, [command_line(child) for child in children]
    return cores[0]


def command_line(process: psutil.Process) -> str:
    """Empty for a child that has ended meanwhile (a zombie until the server reaps it)."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:  # ZombieProcess is one
        return ""


def test_a_dead_engine_turns_readyz_503_and_requests_fail_fast(serving, workspace):
    streaming, events = threading.Event(), []

    def stream_in_flight() -> None:
        with (
            httpx.Client(base_url=serving.url, timeout=60) as http,
            http.stream("POST", "/v1/chat/completions", json=LONG_STREAM) as response,
        ):
            for line in filter(None, response.iter_lines()):
                streaming.set()
                events.append(line)

    reader = threading.Thread(target=stream_in_flight)
    reader.start()
    assert streaming.wait(timeout=120)
    engine_core(serving).kill()
    killed_at = time.monotonic()
    reader.join(timeout=30)
    assert not reader.is_alive(), "the request in flight hangs"
    assert events[-1] == "data: [DONE]" and any("stream_failed" in event for event in events), events[-3:]

    with httpx.Client(base_url=serving.url, timeout=30) as http:
        while (readiness := http.get("/readyz")).status_code == 200:
            assert time.monotonic() - killed_at < 30, "/readyz still says ready"
            time.sleep(0.2)
        assert readiness.status_code == 503 and readiness.json()["status"] == "engine_dead"
        assert http.get("/healthz").status_code == 200, "the process itself is alive"
        for path, body in (
            ("/v1/qa", QUESTION),
            ("/v1/chat/completions", {**LONG_STREAM, "stream": False}),
            ("/v1/chat/completions", LONG_STREAM),
        ):
            started = time.monotonic()
            response = http.post(path, json=body)
            assert time.monotonic() - started < FAIL_FAST_S
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "engine_dead"
            assert str(workspace) not in response.text and "Traceback" not in response.text
