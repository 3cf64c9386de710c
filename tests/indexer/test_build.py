"""Building an index: what it writes, each faiss type, errors, and atomic replacement of an old index."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from indexer_fixtures import CORPUS, FailingEmbedder
from jsonl_files import write_jsonl

from kotae import __version__
from kotae.core.errors import InputError, KotaeError
from kotae.indexer.build import build_index
from kotae.indexer.chunking import indexed_text
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.layout import BM25_DIR, DENSE_FILE, MANIFEST_FILE, STORE_FILE


def staging_leftovers(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.is_dir()]


def test_build_writes_every_part_and_the_manifest(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    out = tmp_path / "index"
    manifest = build_index([corpus], out, embedder)
    assert {p.name for p in out.iterdir()} == {MANIFEST_FILE, STORE_FILE, DENSE_FILE, BM25_DIR}
    assert (manifest.count, manifest.documents, manifest.chunk_chars) == (6, 6, 400)
    assert (manifest.embedder.name, manifest.embedder.hash) == (embedder.name, embedder.hash)
    assert manifest.embedder.dimension == embedder.dimension
    assert manifest.embedder.passage_prompt == "passage: " and manifest.embedder.query_prompt == "query: "
    assert manifest.dense.type == "flat" and manifest.kotae_version == __version__
    assert manifest.bm25 is not None and manifest.bm25.tokenizer.split_mode == "C"
    [source] = manifest.sources
    assert (source.path, source.format, source.documents, source.passages) == (str(corpus), "passages", 6, 6)
    assert manifest.built_at == manifest.updated_at and manifest.build_seconds > 0
    assert not staging_leftovers(out)

    index = Index.open(out)
    assert len(index) == 6 and index.manifest == manifest
    # Served mapped: the server and its search process share the vectors' pages.
    assert not faiss.downcast_index(index._dense._index.index).codes.is_owned
    assert index.passage("p-kurumi").text == CORPUS[1]["text"]
    assert index.passage("missing") is None
    [hits] = index.search_bm25(["くるみ山の標高は何メートル？"], 3)
    assert hits[0].passage.id == "p-kurumi"
    passages = [index.passage(row["id"]) for row in CORPUS]
    vectors = embedder.embed_passages([indexed_text(p) for p in passages])
    assert [hits[0].passage for hits in index.search_dense(vectors, 1)] == passages
    index.close()


@pytest.mark.parametrize(("index_type", "params"), [("hnsw", {"M": 8}), ("ivfpq", {"nbits": 2})])
def test_approximate_types_build_and_search(
    corpus: Path, embedder: Embedder, tmp_path: Path, index_type: str, params: dict
) -> None:
    manifest = build_index([corpus], tmp_path / "index", embedder, index_type=index_type, params=params)
    assert manifest.dense.type == index_type
    index = Index.open(tmp_path / "index")
    [hits] = index.search_dense(embedder.embed_queries(["灯台"]), 3)
    assert len(hits) == 3


def test_without_bm25(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    manifest = build_index([corpus], tmp_path / "index", embedder, bm25=False)
    assert manifest.bm25 is None and not (tmp_path / "index" / BM25_DIR).exists()
    index = Index.open(tmp_path / "index")
    with pytest.raises(KotaeError, match="no BM25 index"):
        index.search_bm25(["灯台"], 3)


def test_long_passages_are_chunked(embedder: Embedder, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "long.jsonl", [{"id": "long", "title": "長文", "text": "文である。" * 30}]
    )
    manifest = build_index([source], tmp_path / "index", embedder, chunk_chars=50)
    index = Index.open(tmp_path / "index")
    assert (manifest.count, manifest.documents) == (3, 1)
    assert index.passage("long#2").text == "文である。" * 10 and index.passage("long") is None


def test_empty_corpus_is_an_error(embedder: Embedder, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "empty.jsonl", [{"id": "a", "title": "t", "text": " "}])
    with pytest.raises(KotaeError, match="corpus is empty"):
        build_index([source], tmp_path / "index", embedder)
    assert not (tmp_path / "index").exists() and not staging_leftovers(tmp_path / "index")


def test_the_same_document_twice_is_an_error(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    with pytest.raises(KotaeError, match=f"document id 'p-mikan' already came from {corpus}:1"):
        build_index([corpus, corpus], tmp_path / "index", embedder)


def test_a_failed_build_leaves_the_previous_index(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build_index([corpus], out, embedder)
    bigger = write_jsonl(
        tmp_path / "bigger.jsonl", [*CORPUS, {"id": "new", "title": "新", "text": "新しい。"}]
    )
    with pytest.raises(RuntimeError, match="embedding failed"):
        build_index([bigger], out, FailingEmbedder(embedder))
    assert len(Index.open(out)) == 6
    assert not staging_leftovers(out)
    assert build_index([bigger], out, embedder).count == 7  # and a good build replaces it
    assert len(Index.open(out)) == 7 and not staging_leftovers(out)


# The child stands in for the embedder without loading a model (faster): it only has to hang mid-build.
KILLED_BUILD = """
import sys, time
from pathlib import Path
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder

class Hanging(Embedder):
    def __init__(self):
        self.name, self.hash, self.dimension = "hanging", "0" * 64, 32
        self.passage_prompt = self.query_prompt = None

    def embed_passages(self, texts, batch_size=32, progress=False, **options):
        print("embedding", flush=True)
        time.sleep(600)

build_index([Path(sys.argv[1])], Path(sys.argv[2]), Hanging())
"""


def test_a_killed_build_leaves_the_previous_index(corpus: Path, embedder: Embedder, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build_index([corpus], out, embedder)
    bigger = write_jsonl(
        tmp_path / "bigger.jsonl", [*CORPUS, {"id": "new", "title": "新", "text": "新しい。"}]
    )
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(bigger), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "embedding"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert len(Index.open(out)) == 6  # the half-built directory sits beside it, never in its place
    assert len(staging_leftovers(out)) == 1


@pytest.fixture
def built(corpus: Path, embedder: Embedder, tmp_path: Path) -> Path:
    build_index([corpus], tmp_path / "index", embedder)
    return tmp_path / "index"


@pytest.mark.parametrize("name", [MANIFEST_FILE, STORE_FILE, DENSE_FILE, f"{BM25_DIR}/keys.npy"])
def test_a_missing_file_is_named(built: Path, name: str) -> None:
    (built / name).unlink()
    with pytest.raises(InputError) as caught:
        Index.open(built)
    assert caught.value.path == built / name and "missing" in str(caught.value)


@pytest.mark.parametrize("name", [MANIFEST_FILE, STORE_FILE, DENSE_FILE])
def test_a_damaged_file_is_named(built: Path, name: str) -> None:
    path = built / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(KotaeError) as caught:
        Index.open(built)
    assert str(path) in str(caught.value)


def test_parts_of_different_builds_are_detected(built: Path, embedder: Embedder, tmp_path: Path) -> None:
    other = write_jsonl(tmp_path / "other.jsonl", CORPUS[:3])
    build_index([other], tmp_path / "other", embedder)
    (built / DENSE_FILE).write_bytes((tmp_path / "other" / DENSE_FILE).read_bytes())
    with pytest.raises(InputError, match="holds 3 passages, the manifest says 6") as caught:
        Index.open(built)
    assert caught.value.path == built / DENSE_FILE


def test_a_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(KotaeError, match="not found: build it with `kotae index build"):
        Index.open(tmp_path / "nowhere")


def test_a_rebuild_replaces_an_index_that_is_open(corpus: Path, embedder: Embedder, built: Path) -> None:
    served = Index.open(built)
    build_index([corpus], built, embedder, bm25=False)
    # The open index keeps reading its own (now unlinked) files; a fresh open sees the new build.
    assert served.passage("p-mikan") is not None and served.has_bm25
    assert not Index.open(built).has_bm25
    assert np.isfinite(served.search_bm25(["灯台"], 1)[0][0].score)
