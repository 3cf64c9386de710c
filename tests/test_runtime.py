"""What `kotae serve`, `kotae ask` and `kotae eval` retrieve with: the configured index and reranker."""

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from kotae import runtime
from kotae.core.config import Settings
from kotae.core.errors import KotaeError
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder
from kotae.rag.reranker import Reranker


def test_the_configured_reranker_comes_with_the_retriever(
    tmp_path: Path, embedder: Embedder, tiny_e5: Path, tiny_reranker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "Embedder", lambda folder: embedder)  # the session's, loaded once
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"id": "a", "title": "富士山", "text": "富士山は高い。"}, ensure_ascii=False)
    )
    build_index([corpus], tmp_path / "index", embedder, workers=0)
    settings = Settings(
        home=tmp_path / "home", index=tmp_path / "index", embedder=str(tiny_e5), reranker=str(tiny_reranker)
    )

    retriever = runtime.open_retriever(settings)

    assert isinstance(retriever.reranker, Reranker) and retriever.reranker.folder == tiny_reranker
    assert retriever.describe() == "hybrid weighted 0.4 reranked top 50"
    assert Settings().reranker is None  # off by default


class StubEngine:
    def __init__(self) -> None:
        self.stopped = False

    def shutdown(self) -> None:
        self.stopped = True


@pytest.fixture
def stub_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A model store that finds the generator without pulling it; its engine (vLLM, say) builds the model in
    a process of its own."""
    monkeypatch.setattr(runtime, "ModelStore", lambda home: SimpleNamespace(generator=lambda name: tmp_path))
    monkeypatch.setattr(runtime, "builds_model_here", lambda model, settings: False)


@pytest.mark.usefixtures("stub_models")
def test_the_collections_open_after_the_engines_configuration_while_it_launches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configured, opening, launching = threading.Event(), threading.Event(), threading.Event()
    saw: dict[str, bool] = {}

    def open_collections(settings: Settings) -> str:
        saw["the engine configured before the collections open"] = configured.is_set()
        opening.set()
        saw["engine launching while the collections open"] = launching.wait(timeout=30)
        return "collections"

    def launch() -> StubEngine:
        launching.set()
        saw["collections opening while the engine launches"] = opening.wait(timeout=30)
        return StubEngine()

    def configure_engine(model: Path, settings: Settings, workload: str) -> Callable[[], StubEngine]:
        configured.set()
        return launch

    monkeypatch.setattr(runtime, "open_collections", open_collections)
    monkeypatch.setattr(runtime, "configure_engine", configure_engine)
    pipeline = runtime.build_pipeline(Settings(home=tmp_path / "home"))
    assert saw == dict.fromkeys(saw, True) and len(saw) == 3
    assert pipeline.collections == "collections" and isinstance(pipeline.engine, StubEngine)


@pytest.mark.usefixtures("stub_models")
def test_an_engine_that_builds_its_model_here_starts_after_the_collections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    order: list[str] = []

    def open_collections(settings: Settings) -> str:
        time.sleep(0.5)  # long enough for an engine started beside it to come first
        order.append("collections")
        return "collections"

    def start_engine(model: Path, settings: Settings, workload: str) -> StubEngine:
        order.append("engine")
        return StubEngine()

    monkeypatch.setattr(runtime, "builds_model_here", lambda model, settings: True)
    monkeypatch.setattr(runtime, "open_collections", open_collections)
    monkeypatch.setattr(runtime, "start_engine", start_engine)
    runtime.build_pipeline(Settings(home=tmp_path / "home"))
    assert order == ["collections", "engine"]


def test_only_transformers_builds_its_model_in_this_process(
    tiny_gpt_neox_japanese: Path, tmp_path: Path
) -> None:
    from kotae.models.testing import build_tiny_gemma

    settings = Settings(home=tmp_path / "home")
    assert not runtime.builds_model_here(build_tiny_gemma(tmp_path / "tiny-gemma"), settings)
    assert runtime.builds_model_here(tiny_gpt_neox_japanese, settings)
    assert not runtime.builds_model_here(tiny_gpt_neox_japanese, Settings(replicas=["http://127.0.0.1:1"]))


@pytest.mark.usefixtures("stub_models")
def test_a_missing_index_fails_before_the_engine_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[StubEngine] = []
    monkeypatch.setattr(runtime, "configure_engine", lambda *args: started.append(StubEngine()))
    with pytest.raises(KotaeError, match=r"index .*nowhere not found: build it with `kotae index build"):
        runtime.build_pipeline(Settings(home=tmp_path / "home", index=tmp_path / "nowhere"))
    assert started == []


@pytest.mark.usefixtures("stub_models")
def test_collections_that_fail_to_open_stop_the_started_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = StubEngine()

    def open_collections(settings: Settings) -> None:
        raise KotaeError("damaged index")

    monkeypatch.setattr(runtime, "open_collections", open_collections)
    monkeypatch.setattr(runtime, "configure_engine", lambda *args: lambda: engine)
    with pytest.raises(KotaeError, match="damaged index"):
        runtime.build_pipeline(Settings(home=tmp_path / "home"))
    assert engine.stopped
