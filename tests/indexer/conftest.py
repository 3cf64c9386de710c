"""Shared fixtures of the indexer tests: a small hand-written corpus (the tiny E5 and its embedder are the
root conftest's)."""

from pathlib import Path

import pytest
from indexer_fixtures import CORPUS
from jsonl_files import write_jsonl


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
