"""Shared fixtures of the indexer tests: a tiny random E5 embedder, a small hand-written corpus."""

from pathlib import Path

import pytest
from indexer_fixtures import CORPUS, write_jsonl

from kotae.indexer.embedder import Embedder
from kotae.models.testing import build_tiny_e5


@pytest.fixture(scope="session")
def tiny_e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_e5(tmp_path_factory.mktemp("models") / "tiny-e5")


@pytest.fixture(scope="session")
def embedder(tiny_e5_dir: Path) -> Embedder:
    return Embedder(tiny_e5_dir)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
