"""The embedded default's demo index follows the shipped corpus: built on first use, kept while the corpus is
the same, rebuilt when a new kotae ships another one."""

from pathlib import Path

from jsonl_files import write_jsonl

from kotae import runtime
from kotae.core.config import Settings
from kotae.indexer.manifest import read_manifest


def write_corpus(path: Path, texts: list[str]) -> Path:
    rows = [{"id": f"d{i}", "title": f"題{i}", "text": text} for i, text in enumerate(texts)]
    return write_jsonl(path, rows)


def test_demo_index_is_rebuilt_only_when_the_shipped_corpus_changes(tmp_path, monkeypatch, embedder):
    texts = ["富士山は日本で最も高い山である。", "琵琶湖は滋賀県にある。"]
    corpus = write_corpus(tmp_path / "corpus.jsonl", texts)
    monkeypatch.setattr(runtime, "corpus_path", lambda: corpus)
    settings = Settings(home=tmp_path / "home")

    first = runtime.index_path(settings, embedder)
    built = read_manifest(first)
    assert built.count == 2
    assert runtime.index_path(settings, embedder) == first
    assert read_manifest(first).built_at == built.built_at, "an unchanged corpus must not be re-indexed"

    write_corpus(corpus, [*texts, "信濃川は日本一長い川である。"])
    assert read_manifest(runtime.index_path(settings, embedder)).count == 3


def test_a_configured_index_is_used_as_it_is(tmp_path, embedder):
    settings = Settings(home=tmp_path / "home", index=tmp_path / "mine")
    assert runtime.index_path(settings, embedder) == tmp_path / "mine"
    assert not settings.demo_index.exists()
