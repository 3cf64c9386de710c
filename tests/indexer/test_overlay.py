"""The document overlay on its own: durable, all-or-nothing writes, and a snapshot that follows them."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from kotae.core.passage import Passage
from kotae.indexer.overlay import DocumentOverlay, NewDocument

DIMENSION = 4


def document(doc_id: str, words: list[list[str]]) -> NewDocument:
    passages = [Passage(f"{doc_id}#{n}", doc_id, " ".join(w)) for n, w in enumerate(words, 1)]
    vectors = np.eye(DIMENSION, dtype=np.float32)[[hash(doc_id) % DIMENSION] * len(words)]
    return NewDocument(doc_id, doc_id, {}, passages, words, vectors)


def test_the_snapshot_follows_upserts_and_deletes(tmp_path: Path) -> None:
    overlay = DocumentOverlay(tmp_path / "o.documents.sqlite", DIMENSION)
    overlay.upsert([document("a", [["山", "川"], ["山"]]), document("b", [["海"]])])
    first = overlay.snapshot
    overlay.upsert([document("a", [["空"]])])
    overlay.delete("b")
    overlay.delete("from-the-index")
    now = overlay.snapshot
    assert set(now.documents) == {"a"} and now.decided == {"a", "b", "from-the-index"}
    assert set(now.postings) == {"空"} and len(now.keys) == len(now.vectors) == len(now.passages) == 1
    # The earlier snapshot is untouched: a query that took it reads the collection as it was.
    assert set(first.postings) == {"山", "川", "海"} and len(first.keys) == 3
    reopened = DocumentOverlay(tmp_path / "o.documents.sqlite", DIMENSION).snapshot
    assert (reopened.decided, set(reopened.postings)) == (now.decided, {"空"})
    assert reopened.documents["a"].passages == now.documents["a"].passages


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from kotae.indexer.overlay import DocumentOverlay, NewDocument
    from kotae.core.passage import Passage

    overlay = DocumentOverlay(sys.argv[1], 4)
    for number in range(100_000):
        batch = []
        for doc in range(20):
            doc_id = f"d{number}-{doc}"
            passages = [Passage(f"{doc_id}#{n}", doc_id, "本文 " * 50) for n in range(5)]
            vectors = np.ones((5, 4), np.float32)
            batch.append(NewDocument(doc_id, doc_id, {}, passages, [["本文"] * 50] * 5, vectors))
        overlay.upsert(batch)
        print(number, flush=True)
    """
)


def test_kill_9_mid_write_keeps_every_acknowledged_write_whole(tmp_path: Path) -> None:
    path = tmp_path / "o.documents.sqlite"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(5)]
    time.sleep(0.05 * (os.getpid() % 7))  # somewhere inside a later write
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()
    snapshot = DocumentOverlay(path, DIMENSION).snapshot
    batches = {doc_id.split("-")[0] for doc_id in snapshot.documents}
    assert {f"d{number}" for number in acknowledged} <= batches
    for doc_id, stored in snapshot.documents.items():
        assert len(stored.passages) == 5, f"{doc_id}: a write was stored in part"
    sizes = {batch: sum(d.startswith(f"{batch}-") for d in snapshot.documents) for batch in batches}
    assert set(sizes.values()) == {20}, f"a batch is all there or not at all: {sizes}"
