"""What `kotae serve`, `kotae ask` and `kotae eval` retrieve with: the configured index and reranker."""

import json
from pathlib import Path

import pytest

from kotae import runtime
from kotae.core.config import Settings
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
