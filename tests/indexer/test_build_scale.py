"""Builds from a synthetic jawiki-style multistream dump (benchmarks/jawiki_dump.py): its bz2 streams are read
by worker processes into the same passages as a plain sequential read, and a build's memory does not grow
with the corpus."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kotae.indexer.build import build_index
from kotae.indexer.chunking import chunk_document
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.sources import bz2_streams, read_documents

ROOT = Path(__file__).resolve().parents[2]
DUMP_SCRIPT = ROOT / "benchmarks" / "jawiki_dump.py"
PARAGRAPHS = ROOT / ".." / "shared" / "data" / "jawiki-paragraphs.jsonl"
pytestmark = pytest.mark.skipif(not PARAGRAPHS.exists(), reason="../shared/data is not here")


def write_dump(out: Path, articles: int, block_articles: int, *options: str) -> Path:
    arguments = ["--out", str(out), "--articles", str(articles), "--block-articles", str(block_articles)]
    subprocess.run(
        [sys.executable, str(DUMP_SCRIPT), *arguments, *options, "--workers", "1"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dump(tmp_path_factory.mktemp("dump") / "jawiki.xml.bz2", 240, 40)


def test_a_multistream_dump_is_read_by_workers_as_a_sequential_read_would(
    small_dump: Path, embedder: Embedder, tmp_path: Path
) -> None:
    streams = bz2_streams(small_dump)
    assert streams is not None and len(streams) - 1 == 240 // 40 + 2  # header, six blocks, footer
    manifest = build_index([small_dump], tmp_path / "index", embedder, workers=2, shard_stream_bytes=1)
    expected = [p for document in read_documents(small_dump) for p in chunk_document(document)]
    index = Index.open(tmp_path / "index")
    try:
        assert index._store.passages(index._store.keys()) == expected
        assert manifest.sources[0].documents == len(list(read_documents(small_dump)))
        assert manifest.sources[0].format == "mediawiki-xml"
    finally:
        index.close()


# The child reports how much its memory grew over the build: the most it held while building (sampled)
# less what it held just before, once the embedder was loaded and had run (a first run may convert it).
MEASURED_BUILD = """
import json, sys, threading
from pathlib import Path
import psutil
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder

embedder = Embedder(Path(sys.argv[2]))
embedder.embed_passages(["暖機"] * 64)
process, peak, done = psutil.Process(), [0], threading.Event()
before = process.memory_info().rss

def sample():
    while not done.wait(0.05):
        peak[0] = max(peak[0], process.memory_info().rss)

sampler = threading.Thread(target=sample)
sampler.start()
build_index([Path(sys.argv[1])], Path(sys.argv[3]), embedder, workers=0)
done.set()
sampler.join()
print(json.dumps({"grew_kib": (max(peak[0], process.memory_info().rss) - before) // 1024}))
"""


def build_growth_kib(dump: Path, model: Path, out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_BUILD, str(dump), str(model), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["grew_kib"]


@pytest.mark.slow  # builds 2,000- and 20,000-article dumps in processes of their own
def test_memory_does_not_grow_with_the_corpus(tiny_e5: Path, tmp_path: Path) -> None:
    # Shared topics: one vocabulary however many articles, so that the BM25 vocabulary, which rightly grows
    # with a corpus of new names, does not hide what the pipeline holds.
    small = write_dump(tmp_path / "small.xml.bz2", 2_000, 5_000, "--shared-topics")
    large = write_dump(tmp_path / "large.xml.bz2", 20_000, 5_000, "--shared-topics")
    small_growth = build_growth_kib(small, tiny_e5, tmp_path / "small-index")
    large_growth = build_growth_kib(large, tiny_e5, tmp_path / "large-index")
    # Ten times the passages: the shards in flight are the same size, only the final indexes grow (a few
    # MB here). A build that held the corpus's tokens and vectors would grow about tenfold.
    assert large_growth < 2 * small_growth + 96 * 1024, (small_growth, large_growth)
