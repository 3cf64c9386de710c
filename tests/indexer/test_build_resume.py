"""A build as a pipeline of shards: killed and resumed it equals an uninterrupted one; arguments that differ
from the staged build's are refused; Parquet input; worker processes give the same index as none."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from indexer_fixtures import CORPUS
from jsonl_files import write_jsonl

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.build import build_index, staging_path
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.layout import STORE_FILE

QUERIES = ["くるみ山の標高は何メートル？", "新幹線が開業した年", "みかん島の人口", "灯台守は何人"]
SHARD = 7


def many_documents(count: int) -> list[dict]:
    """`count` documents, each a variation of one of CORPUS's, some long enough for several passages."""
    rows = []
    for number in range(count):
        base = CORPUS[number % len(CORPUS)]
        text = base["text"] + f"第{number}版の記述である。" * (1 + number % 4) * 8
        rows.append({"id": f"{base['id']}-{number}", "title": f"{base['title']}{number}", "text": text})
    return rows


def snapshot(directory: Path, embedder: Embedder) -> dict:
    """What two builds must agree on: passages and keys, vectors, BM25 rankings and scores."""
    index = Index.open(directory)
    try:
        store = index._store
        keys = store.keys()
        passages = store.passages(keys)
        dense = index._dense
        vectors = dense._stored_vectors()
        return {
            "keys": keys.tolist(),
            "passages": passages,
            "vector_keys": vectors[0].tolist(),
            "vectors": vectors[1],
            "bm25": index.view().rank_bm25(QUERIES, 10),
            "dense": index.view().rank_dense(embedder.embed_queries(QUERIES), 5),
            "count": index.manifest.count,
            "documents": index.manifest.documents,
            "sources": [(s.documents, s.passages) for s in index.manifest.sources],
        }
    finally:
        index.close()


def assert_same_index(first: dict, second: dict) -> None:
    for name in ("keys", "passages", "vector_keys", "count", "documents", "sources"):
        assert first[name] == second[name], name
    np.testing.assert_allclose(first["vectors"], second["vectors"], atol=1e-5)
    for ours, theirs in zip(first["bm25"], second["bm25"], strict=True):
        assert [key for key, _ in ours] == [key for key, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-6)
    assert [[k for k, _ in r] for r in first["dense"]] == [[k for k, _ in r] for r in second["dense"]]


# The child embeds with the real tiny model and hangs at its fourth shard: three are stored by then.
KILLED_BUILD = """
import sys, time
from pathlib import Path
from kotae.indexer.build import build_index
from kotae.indexer.embedder import Embedder

class HangsAtFourthShard(Embedder):
    calls = 0

    def embed_passages(self, texts, batch_size=32, progress=False, **options):
        HangsAtFourthShard.calls += 1
        if HangsAtFourthShard.calls == 4:
            print("hanging", flush=True)
            time.sleep(600)
        return super().embed_passages(texts, batch_size, progress, **options)

source, out, model, workers, shard = sys.argv[1:]
embedder = HangsAtFourthShard(Path(model))
build_index([Path(source)], Path(out), embedder, workers=int(workers), shard_records=int(shard))
"""


class CountingEmbedder(Embedder):
    """The real embedder, counting the passages it embeds."""

    def __init__(self, real: Embedder) -> None:
        self.__dict__.update(real.__dict__)
        self.embedded = 0

    def embed_passages(self, texts, batch_size=32, progress=False, **options):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return super().embed_passages(texts, batch_size, progress, **options)


@pytest.mark.slow  # a build in a process of its own, killed, then resumed: tens of seconds on 2 cores
@pytest.mark.parametrize("workers", [0, 2])
def test_a_killed_build_resumes_to_the_same_index(
    embedder: Embedder, tiny_e5: Path, tmp_path: Path, workers: int
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", many_documents(40))
    whole = tmp_path / "whole"
    build_index([corpus], whole, embedder, shard_records=SHARD, workers=workers)

    resumed = tmp_path / "resumed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_BUILD,
            str(corpus),
            str(resumed),
            str(tiny_e5),
            str(workers),
            str(SHARD),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "hanging"
        children = psutil.Process(child.pid).children()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive  # the killed build's worker processes end with it
    staging = staging_path(resumed)
    assert staging.is_dir() and not resumed.exists()

    # Three shards were embedded before the kill; the writer stores them in order while the next ones embed,
    # up to two behind (one being written, one queued) on a slow machine. Only the passages of unstored
    # shards are embedded again.
    with closing(sqlite3.connect(staging / STORE_FILE)) as connection:
        stored = sorted(number for (number,) in connection.execute("SELECT number FROM build_shards"))
    assert stored in ([0], [0, 1], [0, 1, 2])
    counting = CountingEmbedder(embedder)
    manifest = build_index([corpus], resumed, counting, shard_records=SHARD, workers=workers)
    stored_ids = [row["id"] for row in many_documents(40)[: len(stored) * SHARD]]
    whole_index = Index.open(whole)
    stored_passages = len(whole_index._store.keys_of_documents(stored_ids))
    whole_index.close()
    assert counting.embedded == manifest.count - stored_passages > 0
    assert_same_index(snapshot(whole, embedder), snapshot(resumed, embedder))
    assert not staging.exists()  # a finished build leaves no staging behind
    assert {p.name for p in resumed.parent.iterdir() if p.name.startswith(".resumed")} == {".resumed.lock"}


def test_a_staged_build_with_other_arguments_is_named_with_how_to_remove_it(
    embedder: Embedder, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    out = tmp_path / "index"
    staging = staging_path(out)
    staging.mkdir()
    (staging / "build.json").write_text("{}")
    with pytest.raises(KotaeError, match=f"unfinished build .* \\(rm -rf {re.escape(str(staging))}\\)"):
        build_index([corpus], out, embedder)
    assert staging.is_dir()  # not ours to remove


def test_parquet_builds_the_same_index_as_jsonl(embedder: Embedder, tmp_path: Path) -> None:
    rows = many_documents(12)
    jsonl = write_jsonl(tmp_path / "corpus.jsonl", rows)
    parquet = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=5)
    build_index([jsonl], tmp_path / "from-jsonl", embedder)
    manifest = build_index([parquet], tmp_path / "from-parquet", embedder)
    assert manifest.sources[0].format == "passages"
    first, second = snapshot(tmp_path / "from-jsonl", embedder), snapshot(tmp_path / "from-parquet", embedder)
    assert_same_index(first, second)


def test_wikitext_parquet_is_cleaned(embedder: Embedder, tmp_path: Path) -> None:
    parquet = tmp_path / "wiki.parquet"
    rows = [{"title": "白浜灯台", "text": "'''白浜灯台'''は[[1890年]]に建てられた。<ref>出典</ref>"}]
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    manifest = build_index([parquet], tmp_path / "index", embedder)
    assert manifest.sources[0].format == "wikitext"
    assert Index.open(tmp_path / "index").passage("白浜灯台").text == "白浜灯台は1890年に建てられた。"


def test_a_bad_parquet_record_names_the_file_and_row(embedder: Embedder, tmp_path: Path) -> None:
    parquet = tmp_path / "bad.parquet"
    rows = [{"id": "a", "title": "t", "text": "本文。"}, {"id": "b", "title": "t", "text": None}]
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    with pytest.raises(InputError, match=r"bad.parquet:2: field 'text' must be a string") as caught:
        build_index([parquet], tmp_path / "index", embedder)
    assert caught.value.path == parquet
    assert not staging_path(tmp_path / "index").exists()  # a failed build leaves nothing behind


def test_a_parquet_file_without_the_columns_is_refused(embedder: Embedder, tmp_path: Path) -> None:
    parquet = tmp_path / "other.parquet"
    pq.write_table(pa.Table.from_pylist([{"body": "x"}]), parquet)
    with pytest.raises(InputError, match=r"record has keys \['body'\]"):
        build_index([parquet], tmp_path / "index", embedder)


class FailsAtThirdShard(CountingEmbedder):
    """Embeds two shards, then fails as a GPU out of memory would."""

    calls = 0

    def embed_passages(self, texts, batch_size=32, progress=False, **options):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("CUDA out of memory")
        return super().embed_passages(texts, batch_size, progress, **options)


def test_a_build_that_failed_after_storing_shards_resumes(embedder: Embedder, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", many_documents(30))
    build_index([corpus], tmp_path / "whole", embedder, shard_records=SHARD)
    out = tmp_path / "resumed"
    failing = FailsAtThirdShard(embedder)
    with pytest.raises(RuntimeError, match="out of memory"):
        build_index([corpus], out, failing, shard_records=SHARD)
    assert staging_path(out).is_dir()  # two shards are stored: kept for the same command
    build_index([corpus], out, embedder, shard_records=SHARD)
    assert_same_index(snapshot(tmp_path / "whole", embedder), snapshot(out, embedder))
